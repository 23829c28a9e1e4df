"""Readings into half-hour slots: the validation steps applied, intervals and
held energy stored, slots priced."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from django.db import connection
from django.db.models import Sum

from landlord.models import Unit
from payments import pricing, rating, tariffs

from . import vee
from .models import (
    Interval,
    Meter,
    Reading,
)

logger = logging.getLogger(__name__)


@dataclass
class Derivation:
    """Changes to one meter's slots from one batch of readings."""

    slots: dict[datetime, int] = field(default_factory=dict)
    estimated: set[datetime] = field(default_factory=set)
    gaps: list[Interval] = field(default_factory=list)

    def add(self, pieces: list[tuple[datetime, int]], *, estimated: bool, sign: int = 1) -> None:
        for start, wh in pieces:
            self.slots[start] = self.slots.get(start, 0) + sign * wh
            if estimated:
                self.estimated.add(start)


@dataclass(slots=True)
class Row:
    """A new reading on its way into the table (cheaper than a model instance)."""

    landlord_id: int
    device_id: int
    meter_id: int
    seq: int
    taken_at: datetime
    register_wh: int
    received_at: datetime
    quality: str = Reading.Quality.ACTUAL
    rule: str = ""
    note: str = ""

    def as_model(self) -> Reading:
        return Reading(
            landlord_id=self.landlord_id,
            device_id=self.device_id,
            meter_id=self.meter_id,
            seq=self.seq,
            taken_at=self.taken_at,
            register_wh=self.register_wh,
            received_at=self.received_at,
            quality=self.quality,
            rule=self.rule,
            note=self.note,
        )


def apply_step(row: Row, step: vee.Step, meter: Meter, prev_at: datetime, d: Derivation) -> None:
    row.rule, row.note = step.rule.value, step.note[:200]
    if step.flagged:
        row.quality = Reading.Quality.FLAGGED
    if step.billed:
        d.add(
            rating.spread(start=prev_at, end=row.taken_at, start_wh=0, end_wh=step.energy_wh),
            estimated=step.estimated,
        )
    elif step.held:
        d.gaps.append(
            Interval(
                landlord_id=meter.landlord_id,
                meter=meter,
                kind=Interval.Kind.GAP,
                start=prev_at,
                end=row.taken_at,
                energy_wh=step.energy_wh,
                quality=Interval.Quality.HELD,
                rule=step.rule.value,
                note=step.note[:200],
                held_reason=step.note[:200],
            )
        )


_BILLED_STEPS = (vee.Rule.ACTUAL, vee.Rule.GAP_ESTIMATED, vee.Rule.OUT_OF_ORDER)
_SPLITTABLE = (vee.Rule.ACTUAL, vee.Rule.GAP_ESTIMATED, vee.Rule.LONG_GAP, vee.Rule.SPIKE)


def _add_step(d: Derivation, meter: Meter, start: datetime, end: datetime, step: vee.Step) -> None:
    """Derive one step found late: spread it, or hold it in a gap interval at once
    (a later late reading of the same frame may need to find it)."""
    if step.billed:
        d.add(
            rating.spread(start=start, end=end, start_wh=0, end_wh=step.energy_wh),
            estimated=step.estimated,
        )
    elif step.held:
        Interval.objects.create(
            landlord_id=meter.landlord_id,
            meter=meter,
            kind=Interval.Kind.GAP,
            start=start,
            end=end,
            energy_wh=step.energy_wh,
            quality=Interval.Quality.HELD,
            rule=step.rule.value,
            note=step.note[:200],
            held_reason=step.note[:200],
        )


def _step_rule_update(reading: Reading, step: vee.Step) -> None:
    """The step ending at ``reading`` changed: record how it is derived now."""
    rule = (
        vee.Rule.OUT_OF_ORDER
        if reading.rule == vee.Rule.OUT_OF_ORDER and step.billed
        else step.rule
    )
    quality = Reading.Quality.FLAGGED if step.flagged else Reading.Quality.ACTUAL
    Reading.objects.filter(pk=reading.pk).update(
        rule=rule.value, quality=quality, note=(step.note or reading.note)[:200]
    )


def late_reading(row: Row, meter: Meter, limits: vee.Limits, d: Derivation) -> None:
    """A reading older than the cursor: re-derive the step it falls in through it.

    The step prev -> next (billed, or held as a spike or long gap) is
    replaced by prev -> late -> next, each classified by the same rules as
    in-order readings, so the result does not depend on arrival order. A
    late reading whose register is not between its neighbours' is flagged
    and not used.
    """
    chain = (
        Reading.objects.filter(meter=meter)
        .exclude(quality=Reading.Quality.UNUSED)
        .exclude(rule=vee.Rule.OUT_OF_ORDER_UNUSED)
    )
    prev = chain.filter(taken_at__lt=row.taken_at).order_by("-taken_at", "-seq").first()
    nxt = chain.filter(taken_at__gt=row.taken_at).order_by("taken_at", "seq").first()
    if nxt is None or (prev is None and nxt.rule != vee.Rule.BASELINE):
        row.quality, row.rule = Reading.Quality.UNUSED, vee.Rule.BEFORE_BASELINE.value
        row.note = "taken before the meter's billing baseline; stored, not billed"
        return

    def step(a_at: datetime, a_wh: int, b_at: datetime, b_wh: int) -> vee.Step:
        return vee.step(prev_at=a_at, prev_wh=a_wh, at=b_at, register_wh=b_wh, limits=limits)

    second = step(row.taken_at, row.register_wh, nxt.taken_at, nxt.register_wh)
    if prev is None:
        # Older than the baseline: it becomes the baseline.
        if second.rule not in _SPLITTABLE:
            row.quality, row.rule = Reading.Quality.UNUSED, vee.Rule.BEFORE_BASELINE.value
            row.note = f"taken before the baseline and does not fit ({second.rule}); not billed"
            return
        _add_step(d, meter, row.taken_at, nxt.taken_at, second)
        row.rule, row.note = vee.Rule.BASELINE.value, "arrived late, older than the baseline"
        _step_rule_update(nxt, second)
        return
    first = step(prev.taken_at, prev.register_wh, row.taken_at, row.register_wh)
    old_rule = nxt.rule or vee.Rule.ACTUAL.value
    gap = None
    if old_rule in (vee.Rule.LONG_GAP, vee.Rule.SPIKE):
        gap = Interval.objects.filter(
            meter=meter,
            kind=Interval.Kind.GAP,
            start=prev.taken_at,
            end=nxt.taken_at,
            quality=Interval.Quality.HELD,
        ).first()
    fits = first.rule in _SPLITTABLE and second.rule in _SPLITTABLE
    if not fits or (old_rule not in _BILLED_STEPS and gap is None):
        row.quality, row.rule = Reading.Quality.FLAGGED, vee.Rule.OUT_OF_ORDER_UNUSED.value
        row.note = "arrived late and does not fit between its neighbours; stored, not billed"
        return
    if gap is not None:
        gap.delete()  # derived, not raw: replaced by the two steps below
    else:
        whole = nxt.register_wh - prev.register_wh
        d.add(
            rating.spread(start=prev.taken_at, end=nxt.taken_at, start_wh=0, end_wh=whole),
            estimated=False,
            sign=-1,
        )
    _add_step(d, meter, prev.taken_at, row.taken_at, first)
    _add_step(d, meter, row.taken_at, nxt.taken_at, second)
    if first.billed:
        row.rule = vee.Rule.OUT_OF_ORDER.value
        row.note = "arrived after a later reading; the interval around it was re-derived"
    else:
        row.rule, row.note = first.rule.value, f"arrived late; {first.note}"[:200]
        if first.flagged:
            row.quality = Reading.Quality.FLAGGED
    if second.rule != old_rule:
        _step_rule_update(nxt, second)


def slots_apply(meter: Meter, unit: Unit, d: Derivation) -> pricing.Pricing:
    """Write slot energy changes and re-rate from the earliest changed slot; returns
    the slots re-priced (``.changes``: the change of each slot's amount).

    The pricing is ``payments.pricing.slots_price``; this loads the slots
    it prices, and stores what it says.
    """
    if d.gaps:
        Interval.objects.bulk_create(d.gaps)
    starts = [s for s, wh in d.slots.items() if wh or s in d.estimated]
    if not starts and meter.held_from is None:
        return pricing.Pricing()
    schedule, hold = _unit_schedule(unit)
    # Held slots are retried only when the unit has a tariff again (or when
    # nothing new came in: the periodic sweep), not re-read on every frame.
    retry = meter.held_from is not None and (schedule is not None or not starts)
    candidates = [*starts, *([meter.held_from] if retry and meter.held_from else [])]
    first = min(candidates)
    rows, new_rows = _slot_rows(meter, d, starts, first)
    priced = pricing.slots_price(
        slots=[_slot(row, d) for row in rows],
        schedule=schedule,
        hold=hold,
        period_wh_before=_period_wh_before(meter, schedule, rows),
    )
    _slots_write(rows, new_rows, priced)
    if meter.held_from is None or first <= meter.held_from:
        meter.held_from = priced.held_from
    if meter.held_from is not None:
        meter.hold_reason = (
            f"Energy from {meter.held_from:%d %b %H:%M} is held: {hold or priced.first_reason}."
        )[:200]
    else:
        meter.hold_reason = ""
    return priced


def _unit_schedule(unit: Unit) -> tuple[rating.Schedule | None, str]:
    """The unit's tariff schedule, or why it has none that can price anything."""
    try:
        return tariffs.unit_schedule(unit=unit), ""
    except rating.Unpriceable as exc:
        return None, str(exc)


def _slot_rows(
    meter: Meter, d: Derivation, starts: list[datetime], first: datetime
) -> tuple[list[Interval], list[Interval]]:
    """The meter's slots from ``first`` on in time order, with the batch's energy
    added; and those of them that are new."""
    stored = Interval.objects.filter(meter=meter, kind=Interval.Kind.SLOT, start__gte=first)
    by_start = {row.start: row for row in stored.order_by("start")}
    new_rows = []
    for start in starts:
        row = by_start.get(start)
        if row is None:
            row = Interval(
                landlord_id=meter.landlord_id,
                meter=meter,
                kind=Interval.Kind.SLOT,
                start=start,
                end=start + timedelta(seconds=rating.SLOT_SECONDS),
                rule=vee.Rule.ACTUAL.value,
            )
            by_start[start] = row
            new_rows.append(row)
        row.energy_wh += d.slots[start]
        if start in d.estimated and row.quality != Interval.Quality.ESTIMATED:
            row.quality, row.rule = Interval.Quality.ESTIMATED, vee.Rule.GAP_ESTIMATED.value
            row.note = "energy spread over a gap between readings"
    return [by_start[s] for s in sorted(by_start)], new_rows


def _slot(row: Interval, d: Derivation) -> pricing.Slot:
    return pricing.Slot(
        start=row.start,
        energy_wh=row.energy_wh,
        quality=row.quality,
        estimated=row.rule == vee.Rule.GAP_ESTIMATED.value,
        gross_sub=row.gross_sub,
        held_reason=row.held_reason,
        stored=row.pk is not None,
        touched=row.start in d.slots,
    )


def _period_wh_before(meter: Meter, schedule: rating.Schedule | None, rows: list[Interval]) -> int:
    """Energy of the tier period (local month) before the first slot priced."""
    if schedule is None or not rows:
        return 0
    period = schedule.period_start(rows[0].start)
    if period >= rows[0].start:
        return 0
    before = Interval.objects.filter(
        meter=meter, kind=Interval.Kind.SLOT, start__gte=period, start__lt=rows[0].start
    ).aggregate(s=Sum("energy_wh"))["s"]
    return before or 0


_SLOT_FIELDS = [
    "energy_wh",
    "quality",
    "rule",
    "note",
    "gross_sub",
    "net_sub",
    "lines",
    "tariff_version_id",
    "held_reason",
]


def _slots_write(rows: list[Interval], new_rows: list[Interval], priced: pricing.Pricing) -> None:
    changed = []
    for row, slot in zip(rows, priced.slots, strict=True):
        if not slot.rewrite:
            continue
        row.quality, row.held_reason = slot.quality, slot.held_reason
        row.gross_sub, row.net_sub = slot.gross_sub, slot.net_sub
        row.lines = [line.as_json() for line in slot.lines]
        row.tariff_version_id = slot.version_id
        if row.pk is not None:
            changed.append(row)
    if new_rows:
        Interval.objects.bulk_create(new_rows)
    if len(changed) > 3:
        Interval.objects.bulk_update(changed, _SLOT_FIELDS)
    else:
        # In-order intake changes one slot (the one the last frame ended in).
        for row in changed:
            Interval.objects.filter(pk=row.pk).update(**{f: getattr(row, f) for f in _SLOT_FIELDS})


_READING_COLUMNS = (
    "landlord_id",
    "device_id",
    "meter_id",
    "seq",
    "taken_at",
    "register_wh",
    "received_at",
    "quality",
    "rule",
    "note",
)
_READING_TYPES = [
    "int8",
    "int8",
    "int8",
    "int8",
    "timestamptz",
    "int8",
    "timestamptz",
    "text",
    "text",
    "text",
]


def readings_insert(rows: list[Row]) -> None:
    """Insert new readings; on PostgreSQL with COPY, the fastest way in.

    The (device, seq) unique constraint still holds: a duplicate fails the
    whole COPY and with it the frame's transaction. Duplicates were already
    filtered under the device lock, so that never happens in practice.
    """
    if not rows:
        return
    if connection.vendor != "postgresql":
        Reading.objects.bulk_create([row.as_model() for row in rows])
        return
    table = Reading._meta.db_table
    connection.ensure_connection()
    # Binary: no timestamp or number formatted as text on the way in.
    with psycopg.Cursor(connection.connection) as cursor:
        sql = f"COPY {table} ({', '.join(_READING_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        with cursor.copy(sql) as copy:
            copy.set_types(_READING_TYPES)
            for r in rows:
                copy.write_row(
                    (
                        r.landlord_id,
                        r.device_id,
                        r.meter_id,
                        r.seq,
                        r.taken_at,
                        r.register_wh,
                        r.received_at,
                        r.quality,
                        r.rule,
                        r.note,
                    )
                )
