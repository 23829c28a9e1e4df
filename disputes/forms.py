"""Parsing what people type into the dispute forms (amounts, dates, choices)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from .services import DisputeError

AMOUNT_BOUND = Decimal(10**12)


def amount_parse(raw: str, *, required: bool = False) -> int | None:
    """A typed amount (``12.50``, ``£1,000``) in minor units; '' is None unless required."""
    text = (raw or "").strip().replace(",", "").lstrip("£$€")
    if not text:
        if required:
            raise DisputeError("Give an amount such as 10 or 12.50.")
        return None
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise DisputeError("Give an amount such as 10 or 12.50.") from exc
    if not value.is_finite() or abs(value) >= AMOUNT_BOUND:
        raise DisputeError("Give an amount such as 10 or 12.50.")
    if value != value.quantize(Decimal("0.01")):
        raise DisputeError("Use at most two decimal places.")
    return int(value * 100)


def date_parse(raw: str, what: str) -> date | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise DisputeError(f"Give the {what} as a date like 2026-01-31.") from exc


def int_parse(raw: str) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None
