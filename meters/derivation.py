"""Readings into half-hour slots: the validation steps applied, intervals and
held energy stored, slots priced."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Sum

from landlord.models import Unit
from payments import rating, tariffs

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


def slots_apply(meter: Meter, unit: Unit, d: Derivation) -> int:
    """Write slot energy changes and re-rate from the earliest changed slot; returns Δ sub-units."""
    if d.gaps:
        Interval.objects.bulk_create(d.gaps)
    starts = [s for s, wh in d.slots.items() if wh or s in d.estimated]
    if not starts and meter.held_from is None:
        return 0
    try:
        schedule: rating.Schedule | None = tariffs.unit_schedule(unit=unit)
        hold = ""
    except rating.Unpriceable as exc:
        schedule, hold = None, str(exc)
    # Held slots are retried only when the unit has a tariff again (or when
    # nothing new came in: the periodic sweep), not re-read on every frame.
    retry = meter.held_from is not None and (schedule is not None or not starts)
    candidates = [*starts, *([meter.held_from] if retry and meter.held_from else [])]
    first = min(candidates)
    rows = list(
        Interval.objects.filter(meter=meter, kind=Interval.Kind.SLOT, start__gte=first).order_by(
            "start"
        )
    )
    by_start = {row.start: row for row in rows}
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
    ordered = [by_start[s] for s in sorted(by_start)]
    delta = 0
    held_from: datetime | None = None
    run: rating.RatingRun | None = None
    if schedule is not None:
        run = rating.RatingRun(schedule=schedule)
        period = schedule.period_start(ordered[0].start) if ordered else None
        if period is not None and period < ordered[0].start:
            before = Interval.objects.filter(
                meter=meter, kind=Interval.Kind.SLOT, start__gte=period, start__lt=ordered[0].start
            ).aggregate(s=Sum("energy_wh"))["s"]
            run.period_start, run.period_wh = period, before or 0
    changed = []
    for row in ordered:
        old = row.gross_sub or 0
        if run is None:
            price, reason = None, hold
        else:
            rated = run.add(row.start, row.energy_wh)
            price, reason = rated.price, rated.held_reason
        if price is None:
            new_gross, lines, vid, net = None, [], None, None
            held_from = held_from or row.start
            row.quality = Interval.Quality.HELD
        else:
            new_gross, lines, vid, net = (
                price.gross_sub,
                [line.as_json() for line in price.lines],
                price.version_id,
                price.net_sub,
            )
            if row.quality == Interval.Quality.HELD:
                # Once priced, the slot says again how its energy is known.
                estimated = row.rule == vee.Rule.GAP_ESTIMATED.value
                row.quality = Interval.Quality.ESTIMATED if estimated else Interval.Quality.ACTUAL
            reason = ""
        if (
            row.pk is None
            or new_gross != row.gross_sub
            or reason != row.held_reason
            or row.start in d.slots
        ):
            row.gross_sub, row.net_sub, row.lines, row.tariff_version_id = (
                new_gross,
                net,
                lines,
                vid,
            )
            row.held_reason = reason[:200]
            if row.pk is not None:
                changed.append(row)
        delta += (new_gross or 0) - old
    if new_rows:
        Interval.objects.bulk_create(new_rows)
    fields = [
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
    if len(changed) > 3:
        Interval.objects.bulk_update(changed, fields)
    else:
        # In-order intake changes one slot (the one the last frame ended in).
        for row in changed:
            Interval.objects.filter(pk=row.pk).update(**{f: getattr(row, f) for f in fields})
    if meter.held_from is None or first <= meter.held_from:
        meter.held_from = held_from
    if meter.held_from is not None:
        meter.hold_reason = (
            f"Energy from {meter.held_from:%d %b %H:%M} is held: {hold or _first_reason(ordered)}."
        )[:200]
    else:
        meter.hold_reason = ""
    return delta


def _first_reason(rows: list[Interval]) -> str:
    return next((row.held_reason for row in rows if row.held_reason), "cannot be priced")


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
    with connection.cursor() as cursor:
        sql = f"COPY {table} ({', '.join(_READING_COLUMNS)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
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
