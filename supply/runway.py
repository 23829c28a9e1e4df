"""How long a prepaid balance lasts at the recent average power.

Pure arithmetic on plain numbers and datetimes, shared by the low-runway
alert and the tenant's page ("about N days left"), so the two never differ
in the maths. Which readings the average is taken over, and the price in
force, are the callers' to fetch.
"""

from __future__ import annotations

import math
import zoneinfo
from datetime import datetime, timedelta

from .protections import Protections, earliest_cutoff


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


def plural(n: int, word: str) -> str:
    """'1 hour', '2 hours'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def duration_text(hours: float, *, halves: bool = True) -> str:
    """A runway for people, rounded down (credit never lasts less than it says):
    'about 40 minutes', 'about 1 hour', 'about 47 hours', 'about 4½ days'."""
    if hours < 1:
        return f"about {plural(max(int(hours * 60), 1), 'minute')}"
    if hours < 48:
        return f"about {plural(int(hours), 'hour')}"
    if not halves:
        return f"about {plural(int(hours // 24), 'day')}"
    days, half = divmod(int(hours // 12), 2)
    return f"about {days}{'½' if half else ''} days"


def runway_text(hours: float) -> str:
    """'about N days left at current usage' for a runway of ``hours`` (> 0)."""
    return f"{duration_text(hours, halves=False)} left at current usage"


def quarter_up(when: datetime, tz: str) -> datetime:
    """``when`` rounded *up* to the quarter hour of the local clock."""
    local = when.astimezone(zoneinfo.ZoneInfo(tz))
    hour = local.replace(minute=0, second=0, microsecond=0)
    return hour + timedelta(minutes=15 * math.ceil((local - hour) / timedelta(minutes=15)))


def runway_end(*, now: datetime, hours: float, tz: str) -> datetime:
    """When the credit runs out, rounded up to the quarter hour: never before
    the estimate, so never in the past."""
    return quarter_up(now + timedelta(hours=hours), tz)


def _clock(local: datetime, *, now: datetime) -> str:
    """'22:00 today', 'Tue 22:00' within the week, 'Tue 9 Dec 22:00' beyond."""
    today = now.astimezone(local.tzinfo).date()
    if local.date() == today:
        return f"{local:%H:%M} today"
    if (local.date() - today).days < 7:
        return f"{local:%a %H:%M}"
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def runway_until_text(*, hours: float, now: datetime, protections: Protections) -> str:
    """The runway in clock time, with when the supply could go off after it.

    'Lasts until about Tue 22:00 (about 30 hours) at current usage. The supply
    could not be switched off before Wed 09:00.' The run-out moment
    is rounded up, so it is never in the past; the cut-off is the earliest
    moment after notice inside the allowed hours (or the protection that
    forbids it).
    """
    runs_out = now + timedelta(hours=hours)
    end = runway_end(now=now, hours=hours, tz=protections.tz)
    text = f"Lasts until about {_clock(end, now=now)} ({duration_text(hours)}) at current usage."
    if protections.blocking_reason():
        return f"{text} Your supply is protected from automatic disconnection."
    cut = earliest_cutoff(protections, runs_out)
    if cut is None:
        return text
    if cut - runs_out >= timedelta(minutes=30):
        local = cut.astimezone(zoneinfo.ZoneInfo(protections.tz))
        return f"{text} The supply could not be switched off before {_clock(local, now=now)}."
    return text
