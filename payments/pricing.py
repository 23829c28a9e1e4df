"""Slots priced: a pure function from a meter's stored half-hour slots and its
tariff schedule to what each slot is priced at now and how that changed.

Nothing here touches the database; ``meters.derivation.slots_apply`` loads
the slots from the earliest one a batch of readings changed (with the energy
of the batch already added), calls :func:`slots_price` and stores the slots
it says to rewrite. The rating rules themselves (bands, tiers, versions,
tax) are in ``payments.rating``.

Slots are priced in time order from the first one given, the tier position
carried from ``period_wh_before`` (the energy of the tier period before the
first slot). A slot that cannot be priced is held with the reason, never
priced at zero; once priced again it says again how its energy is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from . import rating

# Slot qualities, the values of ``meters.models.Interval.Quality``.
ACTUAL = "actual"
ESTIMATED = "estimated"
HELD = "held"

REASON_MAX = 200  # the stored reason's length
UNPRICED_REASON = "cannot be priced"


@dataclass(frozen=True)
class Slot:
    """A slot as stored, with this batch's energy added: what it was priced at last."""

    start: datetime
    energy_wh: int
    quality: str = ACTUAL
    estimated: bool = False  # its energy was spread over a gap between readings
    gross_sub: int | None = None
    held_reason: str = ""
    stored: bool = True  # False: a new slot, written whatever its price
    touched: bool = False  # the batch changed its energy: rewritten whatever its price


@dataclass(frozen=True)
class PricedSlot:
    """What one slot is priced at now; ``rewrite`` says whether it must be stored again."""

    start: datetime
    quality: str
    gross_sub: int | None
    net_sub: int | None
    version_id: int | None
    lines: tuple[rating.Line, ...]
    held_reason: str
    rewrite: bool
    delta_sub: int  # the change of its gross amount


@dataclass(frozen=True)
class Pricing:
    """A run of slots priced: each slot, and what the run adds up to."""

    slots: tuple[PricedSlot, ...] = ()

    @property
    def delta_sub(self) -> int:
        return sum(slot.delta_sub for slot in self.slots)

    @property
    def changes(self) -> tuple[tuple[datetime, int], ...]:
        """(slot start, change in sub-units) of every slot whose amount changed."""
        return tuple((slot.start, slot.delta_sub) for slot in self.slots if slot.delta_sub)

    @property
    def held_from(self) -> datetime | None:
        return next((slot.start for slot in self.slots if slot.gross_sub is None), None)

    @property
    def first_reason(self) -> str:
        return next((slot.held_reason for slot in self.slots if slot.held_reason), UNPRICED_REASON)


def slots_price(
    *,
    slots: Sequence[Slot],
    schedule: rating.Schedule | None,
    hold: str = "",
    period_wh_before: int = 0,
) -> Pricing:
    """Price ``slots`` (in time order) with ``schedule``; without one, hold them all
    with the reason ``hold`` (why the unit's tariff cannot price anything)."""
    if schedule is None or not slots:
        return Pricing(tuple(_held(slot, hold) for slot in slots))
    run = rating.RatingRun(
        schedule=schedule,
        period_start=schedule.period_start(slots[0].start),
        period_wh=period_wh_before,
    )
    return Pricing(tuple(_priced(slot, run.add(slot.start, slot.energy_wh)) for slot in slots))


def _priced(slot: Slot, rated: rating.RatedSlot) -> PricedSlot:
    price = rated.price
    if price is None:
        return _held(slot, rated.held_reason)
    # Once priced, a held slot says again how its energy is known.
    quality = slot.quality
    if quality == HELD:
        quality = ESTIMATED if slot.estimated else ACTUAL
    return _result(
        slot,
        quality=quality,
        gross_sub=price.gross_sub,
        net_sub=price.net_sub,
        version_id=price.version_id,
        lines=price.lines,
        reason="",
    )


def _held(slot: Slot, reason: str) -> PricedSlot:
    return _result(
        slot, quality=HELD, gross_sub=None, net_sub=None, version_id=None, lines=(), reason=reason
    )


def _result(
    slot: Slot,
    *,
    quality: str,
    gross_sub: int | None,
    net_sub: int | None,
    version_id: int | None,
    lines: tuple[rating.Line, ...],
    reason: str,
) -> PricedSlot:
    rewrite = (
        not slot.stored or slot.touched or gross_sub != slot.gross_sub or reason != slot.held_reason
    )
    if not rewrite:
        # Stored as it is: what it was priced at stays.
        quality, reason = slot.quality, slot.held_reason
    return PricedSlot(
        start=slot.start,
        quality=quality,
        gross_sub=gross_sub,
        net_sub=net_sub,
        version_id=version_id,
        lines=lines,
        held_reason=reason[:REASON_MAX],
        rewrite=rewrite,
        delta_sub=(gross_sub or 0) - (slot.gross_sub or 0),
    )
