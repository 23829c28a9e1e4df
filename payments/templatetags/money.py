from datetime import datetime

from django import template

from config.formats import clock as clock_format
from config.formats import format_money

register = template.Library()


@register.filter
def money(minor: int | None, currency: str = "GBP") -> str:
    """Integer minor units as a display amount: 1234, 'GBP' -> '£12.34'."""
    return format_money(minor, currency)


@register.filter
def clock(when: datetime | None, tz: str) -> str:
    """A time in the property's time zone: 'Mon 11:00'."""
    if when is None:
        return "—"
    return clock_format(when, tz)


@register.filter
def kwh(wh: int | None) -> str:
    if wh is None:
        return "—"
    return f"{wh / 1000:,.3f} kWh"


@register.filter
def major(minor: int) -> str:
    """Minor units as a plain decimal for form values: 500 -> '5.00'."""
    whole, cents = divmod(int(minor), 100)
    return f"{whole}.{cents:02d}"


@register.filter
def kw(watts: int | None) -> str:
    """Average power for people: 850 -> '850 W', 60060 -> '60.1 kW'."""
    if watts is None:
        return "—"
    if watts < 1000:
        return f"{watts} W"
    return f"{watts / 1000:,.1f} kW"
