from django import template

register = template.Library()

SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}


@register.filter
def money(minor: int | None, currency: str = "GBP") -> str:
    """Integer minor units as a display amount: 1234, 'GBP' -> '£12.34'."""
    if minor is None:
        return "—"
    sign = "\u2212" if minor < 0 else ""  # a typographic minus
    whole, cents = divmod(abs(int(minor)), 100)
    symbol = SYMBOLS.get(currency.upper())
    if symbol:
        return f"{sign}{symbol}{whole:,}.{cents:02d}"
    return f"{sign}{whole:,}.{cents:02d} {currency.upper()}"


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
