"""The rating engine: pure functions from energy and tariffs to exact amounts.

Nothing here touches the database; ``payments.services`` and
``meters.derivation`` and ``payments.tariffs`` load tariffs into these value objects and store results.

Exactness. Prices have at most 4 decimals of a minor unit per kWh, standing
charges at most 4 decimals of a minor unit per day and tax rates at most 2
decimals of a percent. Every amount is therefore an integer number of
*sub-units*, ``SCALE`` of them to a minor unit, with nothing rounded:
``price x 10^4`` is an integer, a Wh is 1/1000 kWh and tax multiplies by
``(10000 + basis points) / 10000``. Amounts are rounded to whole minor units
only when they are posted, and the remainder is carried to the next posting,
so the sum of all postings equals the exactly priced total rounded (down)
once.

Time. Consumption is rated in fixed slots of ``SLOT_SECONDS`` aligned to UTC.
Time-of-use windows start and end on whole hours and tariff versions take
effect at local midnight, so in every zone whose offset is a multiple of 30
minutes (all but a handful) a slot never straddles a band or version
boundary; the band of a slot is the band of its local start time, which
makes DST days simply 46 or 50 slots long. Tier (block) boundaries fall
inside slots and split them into lines. The tier period is the local
calendar month.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

SCALE = 10**11  # sub-units per minor unit
SLOT_SECONDS = 1800
_SLOT = timedelta(seconds=SLOT_SECONDS)
ANY_BAND = ""


class Unpriceable(Exception):
    """Energy that cannot be priced; the message is the reason shown to people."""


def price_sub_per_wh(price_per_kwh_minor: Decimal) -> int:
    """Exact price of one Wh in sub-units (price has at most 4 decimals)."""
    scaled = price_per_kwh_minor * SCALE / 1000
    if scaled != scaled.to_integral_value():
        raise Unpriceable(f"price {price_per_kwh_minor} has more than 4 decimals")
    return int(scaled)


def to_sub(minor: Decimal) -> int:
    scaled = minor * SCALE
    if scaled != scaled.to_integral_value():
        raise Unpriceable(f"amount {minor} has more than 4 decimals")
    return int(scaled)


def tax_bp(percent: Decimal) -> int:
    bp = percent * 100
    if bp != bp.to_integral_value() or bp < 0:
        raise Unpriceable(f"tax rate {percent}% needs at most 2 decimals")
    return int(bp)


@dataclass(frozen=True)
class Rate:
    band: str
    tier_from_wh: int
    price_per_kwh_minor: Decimal

    @property
    def sub_per_wh(self) -> int:
        return price_sub_per_wh(self.price_per_kwh_minor)


WEEKDAYS, WEEKENDS, ALL_DAYS = "weekdays", "weekends", "all"


@dataclass(frozen=True)
class Window:
    band: str
    days: str  # "all", "weekdays" or "weekends"
    start_hour: int  # 0..23, local
    end_hour: int  # 1..24, local, exclusive

    def covers(self, local: datetime) -> bool:
        weekend = local.weekday() >= 5
        if self.days == WEEKDAYS and weekend:
            return False
        if self.days == WEEKENDS and not weekend:
            return False
        return self.start_hour <= local.hour < self.end_hour


@dataclass(frozen=True)
class Version:
    """One version of a tariff, in force from local midnight of ``valid_from``."""

    id: int
    valid_from: date
    rates: tuple[Rate, ...]
    windows: tuple[Window, ...] = ()
    standing_per_day_minor: Decimal = Decimal(0)
    tax_percent: Decimal = Decimal(0)
    tax_inclusive: bool = True
    name: str = ""

    def band_at(self, local: datetime) -> str:
        for window in self.windows:
            if window.covers(local):
                return window.band
        return ANY_BAND

    def rates_for(self, band: str) -> list[Rate]:
        rates = sorted((r for r in self.rates if r.band == band), key=lambda r: r.tier_from_wh)
        if not rates and band != ANY_BAND:
            rates = sorted(
                (r for r in self.rates if r.band == ANY_BAND), key=lambda r: r.tier_from_wh
            )
        if not rates or rates[0].tier_from_wh != 0:
            label = band or "any time"
            raise Unpriceable(f"tariff version {self.label} has no price for {label} from 0 kWh")
        return rates

    @property
    def label(self) -> str:
        return f"{self.name + ' ' if self.name else ''}from {self.valid_from:%d %b %Y}"

    def gross(self, net_sub: int) -> tuple[int, int]:
        """(gross, tax) in sub-units for a net amount; inclusive prices are already gross."""
        bp = tax_bp(self.tax_percent)
        if self.tax_inclusive:
            return net_sub, 0
        tax, rem = divmod(net_sub * bp, 10000)
        if rem:
            raise Unpriceable("tax does not divide exactly")  # cannot happen with 4-decimal prices
        return net_sub + tax, tax


@dataclass(frozen=True)
class Schedule:
    """A tariff's versions as seen from one property: its time zone and currency."""

    versions: tuple[Version, ...]
    tz: zoneinfo.ZoneInfo
    currency: str
    tariff_currency: str
    tariff_name: str = ""

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.tz)

    def version_at(self, instant: datetime) -> Version:
        if self.currency.upper() != self.tariff_currency.upper():
            raise Unpriceable(
                f"tariff {self.tariff_name!r} is in {self.tariff_currency}, "
                f"the property bills in {self.currency}"
            )
        day = self.local(instant).date()
        found: Version | None = None
        for version in self.versions:
            if version.valid_from <= day and (
                found is None or version.valid_from > found.valid_from
            ):
                found = version
        if found is None:
            raise Unpriceable(f"no tariff version in force on {day:%d %b %Y}")
        return found

    def period_start(self, instant: datetime) -> datetime:
        """Start (UTC) of the tier period (local calendar month) holding ``instant``."""
        local = self.local(instant)
        first = datetime.combine(local.date().replace(day=1), time(0), self.tz)
        return first.astimezone(UTC)


@dataclass(frozen=True)
class Line:
    """One tariff line that priced (part of) a slot."""

    version_id: int
    band: str
    tier_from_wh: int
    price_per_kwh_minor: Decimal
    energy_wh: int
    net_sub: int

    def as_json(self) -> list[object]:
        return [
            self.version_id,
            self.band,
            self.tier_from_wh,
            str(self.price_per_kwh_minor),
            self.energy_wh,
            self.net_sub,
        ]

    @classmethod
    def from_json(cls, raw: Sequence[object]) -> Line:
        v, band, tier, price, wh, net = raw
        return cls(int(v), str(band), int(tier), Decimal(str(price)), int(wh), int(net))  # type: ignore[call-overload]


@dataclass(frozen=True)
class SlotPrice:
    version_id: int
    lines: tuple[Line, ...]
    net_sub: int
    tax_sub: int
    gross_sub: int


def slot_start(instant: datetime) -> datetime:
    ts = int(instant.timestamp())
    return datetime.fromtimestamp(ts - ts % SLOT_SECONDS, UTC)


def price_slot(
    *, schedule: Schedule, start: datetime, energy_wh: int, period_wh_before: int
) -> SlotPrice:
    """Price one slot's energy, splitting it at tier boundaries.

    ``period_wh_before`` is the energy already used in the slot's tier period
    before this slot. Raises :class:`Unpriceable` with the reason.
    """
    if energy_wh < 0:
        raise ValueError("negative energy is never priced")
    version = schedule.version_at(start)
    band = version.band_at(schedule.local(start))
    rates = version.rates_for(band)
    lines: list[Line] = []
    used = period_wh_before
    left = energy_wh
    for i, rate in enumerate(rates):
        upper = rates[i + 1].tier_from_wh if i + 1 < len(rates) else None
        if upper is not None and used >= upper:
            continue
        take = left if upper is None else min(left, upper - used)
        if take > 0 or (energy_wh == 0 and not lines):
            lines.append(
                Line(
                    version_id=version.id,
                    band=rate.band,
                    tier_from_wh=rate.tier_from_wh,
                    price_per_kwh_minor=rate.price_per_kwh_minor,
                    energy_wh=take,
                    net_sub=take * rate.sub_per_wh,
                )
            )
        used += take
        left -= take
        if left == 0:
            break
    net = sum(line.net_sub for line in lines)
    gross, tax = version.gross(net)
    return SlotPrice(
        version_id=version.id, lines=tuple(lines), net_sub=net, tax_sub=tax, gross_sub=gross
    )


def spread(
    *, start: datetime, end: datetime, start_wh: int, end_wh: int
) -> list[tuple[datetime, int]]:
    """Share the energy between two readings over the slots they span, in whole Wh.

    The register is interpolated linearly at each slot boundary (rounded
    down), so the pieces always add up to the whole and each piece depends
    only on the two readings.
    """
    energy = end_wh - start_wh
    if end <= start:
        return [(slot_start(end), energy)]
    cursor = slot_start(start)
    if cursor + _SLOT >= end:  # within one slot: readings minutes apart
        return [(cursor, energy)]
    span = _micros(end - start)
    pieces: list[tuple[datetime, int]] = []
    done = 0
    while cursor < end:
        boundary = cursor + timedelta(seconds=SLOT_SECONDS)
        upto = energy if boundary >= end else energy * _micros(boundary - start) // span
        pieces.append((cursor, upto - done))
        done = upto
        cursor = boundary
    return pieces


def _micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass
class Carry:
    """Posting whole minor units from exact sub-units, never losing the fraction."""

    pending_sub: int = 0

    def add(self, sub: int) -> None:
        self.pending_sub += sub

    def take_minor(self) -> int:
        """The whole minor units now due (negative for a correction); the rest stays."""
        minor = self.pending_sub // SCALE
        self.pending_sub -= minor * SCALE
        return minor


@dataclass
class RatedSlot:
    start: datetime
    energy_wh: int
    price: SlotPrice | None
    held_reason: str = ""


@dataclass
class RatingRun:
    """Rate an ordered run of slots, carrying the tier position across them."""

    schedule: Schedule
    period_start: datetime | None = None
    period_wh: int = 0
    slots: list[RatedSlot] = field(default_factory=list)

    def add(self, start: datetime, energy_wh: int) -> RatedSlot:
        period = self.schedule.period_start(start)
        if period != self.period_start:
            self.period_start, self.period_wh = period, 0
        try:
            price = price_slot(
                schedule=self.schedule,
                start=start,
                energy_wh=energy_wh,
                period_wh_before=self.period_wh,
            )
            rated = RatedSlot(start=start, energy_wh=energy_wh, price=price)
        except Unpriceable as exc:
            rated = RatedSlot(start=start, energy_wh=energy_wh, price=None, held_reason=str(exc))
        self.period_wh += energy_wh
        self.slots.append(rated)
        return rated


def rate_energy(
    *, schedule: Schedule, pieces: Iterable[tuple[datetime, int]], period_wh_before: int = 0
) -> list[RatedSlot]:
    """Rate (slot start, Wh) pieces in time order; pieces of one slot are merged first."""
    merged: dict[datetime, int] = {}
    for start, wh in pieces:
        merged[start] = merged.get(start, 0) + wh
    run = RatingRun(schedule=schedule)
    first = True
    for start in sorted(merged):
        if first:
            run.period_start = schedule.period_start(start)
            run.period_wh = period_wh_before
            first = False
        run.add(start, merged[start])
    return run.slots


def standing_charge_sub(*, schedule: Schedule, day: date) -> tuple[int, int, int]:
    """(version id, gross, tax) in sub-units of the standing charge for one local day."""
    noon = datetime.combine(day, time(12), schedule.tz)
    version = schedule.version_at(noon)
    net = to_sub(version.standing_per_day_minor)
    gross, tax = version.gross(net)
    return version.id, gross, tax


def round_half_up(sub: int) -> int:
    """Sub-units to the nearest minor unit (for display lines on invoices)."""
    q, r = divmod(sub, SCALE)
    return q + (1 if 2 * r >= SCALE else 0)
