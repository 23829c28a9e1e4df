"""Plain formatting for people: money and clock times.

Template filters (``payments/templatetags/money.py``) wrap these; emails,
alerts and device notices built in Python call them directly, so domain code
never imports the template layer.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta

SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}


def format_money(minor: int | None, currency: str = "GBP") -> str:
    """Integer minor units as a display amount: 1234, 'GBP' -> '£12.34'."""
    if minor is None:
        return "—"
    sign = "\u2212" if minor < 0 else ""  # a typographic minus
    whole, cents = divmod(abs(int(minor)), 100)
    symbol = SYMBOLS.get(currency.upper())
    if symbol:
        return f"{sign}{symbol}{whole:,}.{cents:02d}"
    return f"{sign}{whole:,}.{cents:02d} {currency.upper()}"


def clock(when: datetime, tz: str, *, approx: bool = False) -> str:
    """'Mon 11:00' in the property's time; '~' and a quarter hour when it is an estimate."""
    local = when.astimezone(zoneinfo.ZoneInfo(tz))
    if approx:
        local += timedelta(minutes=7, seconds=30)
        local = local.replace(minute=local.minute - local.minute % 15, second=0, microsecond=0)
        return f"{local:%a} ~{local:%H:%M}"
    return f"{local:%a %H:%M}"


def day_clock(when: datetime, tz: str) -> str:
    """'Mon 7 Dec 11:00' in the property's time: a deadline days away."""
    local = when.astimezone(zoneinfo.ZoneInfo(tz))
    return f"{local:%a} {local.day} {local:%b %H:%M}"
