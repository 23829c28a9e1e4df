"""How long a prepaid balance lasts at the recent average power.

Pure arithmetic on plain numbers and datetimes, shared by the low-runway
alert and the tenant's page ("about N days left"), so the two never differ
in the maths. Which readings the average is taken over, and the price in
force, are the callers' to fetch.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def mean_power_w(
    *, start_at: datetime, start_wh: int, end_at: datetime, end_wh: int
) -> float | None:
    """Average power between two register readings; None when no time passed
    between them or the register went backwards."""
    hours = (end_at - start_at).total_seconds() / 3600
    if hours <= 0 or end_wh < start_wh:
        return None
    return (end_wh - start_wh) / hours


def runway_hours(
    *, balance_minor: int, power_w: float | None, price_per_kwh_minor: float
) -> float | None:
    """Hours until the credit runs out at ``power_w``: 0 when none is left,
    None when it never runs out (no usage, or a free price)."""
    if balance_minor <= 0:
        return 0.0
    if not power_w or power_w <= 0 or price_per_kwh_minor <= 0:
        return None
    cost_per_hour = power_w / 1000 * price_per_kwh_minor
    return balance_minor / cost_per_hour


def runway_forecast(
    *, balance_minor: int, power_w: float | None, price_per_kwh_minor: float, now: datetime
) -> datetime | None:
    """When the credit runs out at the current power; None if it never does."""
    hours = runway_hours(
        balance_minor=balance_minor, power_w=power_w, price_per_kwh_minor=price_per_kwh_minor
    )
    return None if hours is None else now + timedelta(hours=hours)


def runway_text(hours: float) -> str:
    """'about N days left at current usage' for a runway of ``hours`` (> 0)."""
    if hours < 1:
        return f"about {max(int(hours * 60), 1)} minutes left at current usage"
    if hours < 48:
        return f"about {int(hours)} hours left at current usage"
    return f"about {int(hours // 24)} days left at current usage"
