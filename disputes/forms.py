"""Parsing what people type into the dispute forms (amounts, dates, choices)."""

from __future__ import annotations

from datetime import date

from config.formats import AmountError, parse_amount

from .services import DisputeError


def amount_parse(raw: str, *, required: bool = False) -> int | None:
    """A typed amount (``12.50``, ``£1,000``) in minor units; '' is None unless required."""
    if not (raw or "").strip():
        if required:
            raise DisputeError("Give an amount such as 10 or 12.50.")
        return None
    try:
        return parse_amount(raw, bound=10**12)
    except AmountError as exc:
        if exc.places:
            raise DisputeError("Use at most two decimal places.") from None
        raise DisputeError("Give an amount such as 10 or 12.50.") from None


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
