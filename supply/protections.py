"""Protections that keep the supply on: pure rules, no database.

Every rule here can only ever *keep* a supply on. An automatic cut-off
needs all of: a prepaid tenancy out of credit, no protection blocking it
(landlord disconnection forbidden, vulnerable occupant, frozen by an open
dispute), notice given at least ``notice`` before, and a moment inside the
property's allowed window (working days and hours in the property's local
time, never on a listed holiday). Reconnection is decided before any of
this is consulted, so no protection can ever delay it.

``supply.decision.desired_supply`` feeds these functions with what it read
from the database; hypothesis tests in tests/meters/test_protections.py
check the two promises above over arbitrary inputs.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

ON, OFF = "on", "off"

# A window with start == end is open all day (the demo property uses it).
DEFAULT_DAYS = "12345"  # ISO weekdays: Monday=1 ... Sunday=7
DEFAULT_START = time(9, 0)
DEFAULT_END = time(15, 0)
DEFAULT_NOTICE = timedelta(hours=24)


@dataclass(frozen=True)
class Protections:
    """What a property, unit and tenancy say about cutting this supply."""

    tz: str = "Europe/London"
    days: str = DEFAULT_DAYS
    start: time = DEFAULT_START
    end: time = DEFAULT_END
    holidays: frozenset[date] = field(default_factory=frozenset)
    notice: timedelta = DEFAULT_NOTICE
    landlord_may_disconnect: bool = True
    vulnerable: bool = False
    freeze_reason: str = ""  # set by an open dispute (or any other freeze hook)

    def blocking_reason(self) -> str:
        """Why automatic cut-off is forbidden outright, or '' if it is not."""
        if not self.landlord_may_disconnect:
            return "protected: landlord disconnection is not allowed for this property"
        if self.vulnerable:
            return "protected: vulnerable occupant (no automatic disconnection)"
        if self.freeze_reason:
            return f"protected: disconnection frozen ({self.freeze_reason})"
        return ""


def _zone(p: Protections) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(p.tz)


def _day_open(p: Protections, day: date) -> bool:
    return str(day.isoweekday()) in p.days and day not in p.holidays


def in_window(p: Protections, when: datetime) -> bool:
    """May an automatic cut-off happen at ``when`` (aware)?"""
    local = when.astimezone(_zone(p))
    if not _day_open(p, local.date()):
        return False
    if p.start == p.end:
        return True
    t = local.time().replace(tzinfo=None)
    if p.start < p.end:
        return p.start <= t < p.end
    # A window across midnight (e.g. 22:00-02:00): each part under its own day's rules.
    return t >= p.start or t < p.end


def next_window_start(p: Protections, after: datetime, horizon_days: int = 400) -> datetime | None:
    """The first moment at or after ``after`` inside the window; None if there is none."""
    if in_window(p, after):
        return after
    zone = _zone(p)
    local = after.astimezone(zone)
    opening_time = p.start if p.start != p.end else time(0)
    for offset in range(horizon_days + 1):
        day = local.date() + timedelta(days=offset)
        if not _day_open(p, day):
            continue
        # Through UTC and back: a wall-clock time skipped by DST moves forward.
        opening = datetime.combine(day, opening_time, tzinfo=zone).astimezone(UTC)
        if opening > after and in_window(p, opening):
            return opening.astimezone(zone)
    return None


def earliest_cutoff(p: Protections, noticed_at: datetime) -> datetime | None:
    """The earliest moment a cut-off noticed at ``noticed_at`` may happen.

    None when it may never happen automatically (a blocking protection, or a
    window that never opens).
    """
    if p.blocking_reason():
        return None
    return next_window_start(p, noticed_at + p.notice)


def cutoff_due_at(
    p: Protections, *, noticed_at: datetime, told_at: datetime | None, now: datetime
) -> datetime | None:
    """When a cut-off noticed at ``noticed_at`` (and announced for ``told_at``)
    may happen, seen from ``now``: never before either, and inside the window."""
    earliest = earliest_cutoff(p, noticed_at)
    if earliest is None:
        return None
    return next_window_start(p, max(earliest, told_at or earliest, now))


def automatic_supply(
    *,
    wants_off: bool,
    wants_off_reason: str,
    on_reason: str,
    protections: Protections,
    noticed_at: datetime | None,
    now: datetime,
    not_before: datetime | None = None,
) -> tuple[str, str]:
    """Apply the protections to what billing alone would want (pure).

    ``not_before`` is the moment the tenant was told (a notice's
    ``earliest_at``): a notice period shortened since never brings a cut-off
    forward.
    """
    if not wants_off:
        # Reconnection (or staying on) is never delayed by any protection.
        return ON, on_reason
    blocked = protections.blocking_reason()
    if blocked:
        return ON, f"{blocked}; {wants_off_reason}"
    if noticed_at is None:
        return ON, f"notice of cut-off not given yet; {wants_off_reason}"
    earliest = earliest_cutoff(protections, noticed_at)
    if earliest is None:
        return ON, f"no allowed disconnection time; {wants_off_reason}"
    if not_before is not None and not_before > earliest:
        earliest = not_before
    if now < earliest:
        return ON, f"cut-off scheduled for {earliest.isoformat()}; {wants_off_reason}"
    if not in_window(protections, now):
        return ON, f"outside the allowed disconnection hours; {wants_off_reason}"
    return OFF, wants_off_reason


def parse_days(value: str) -> str:
    """Normalise an ISO-weekday string ("135" or "1,3,5") or raise ValueError."""
    digits = "".join(ch for ch in value if not ch.isspace() and ch != ",")
    if any(ch not in "1234567" for ch in digits):
        raise ValueError("Use ISO weekday digits 1 (Monday) to 7 (Sunday).")
    return "".join(sorted(set(digits)))
