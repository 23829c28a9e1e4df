"""Plain formatting for people: money and clock times.

Template filters (``payments/templatetags/money.py``) wrap these; emails,
alerts and device notices built in Python call them directly, so domain code
never imports the template layer.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

SYMBOLS = {"GBP": "£", "EUR": "€", "USD": "$"}
CENT = Decimal("0.01")


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


class AmountError(ValueError):
    """Typed text that is not an amount. ``places``: it has more than two decimal
    places; ``finite``: it is a number at all (not 'NaN' or 'Infinity'). Each
    form words its own message."""

    def __init__(self, *, places: bool = False, finite: bool = True) -> None:
        super().__init__("more than two decimal places" if places else "not an amount")
        self.places = places
        self.finite = finite


def parse_amount(text: str, *, bound: int = 10**15) -> int:
    """A typed amount ('12.50', '£1,000') in minor units, else :class:`AmountError`.

    The size is checked against ``bound`` before any arithmetic: quantizing a
    value like 1e30 to cents exceeds Decimal's precision and raises."""
    cleaned = text.strip().replace(",", "")
    for symbol in SYMBOLS.values():
        cleaned = cleaned.replace(symbol, "")
    try:
        value = Decimal(cleaned.strip())
    except InvalidOperation:
        raise AmountError() from None
    if not value.is_finite():
        raise AmountError(finite=False)
    if abs(value) >= bound:
        raise AmountError()
    if value != value.quantize(CENT):
        raise AmountError(places=True)
    return int(value * 100)


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
