"""Device authentication, reading intake (validation, derivation, rating), relay control."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.module_loading import import_string

from config import ratelimit
from config.cache import shared as shared_cache
from config.live import broadcast_on_commit, device_group, landlord_group, tenancy_group
from landlord.models import AuditEvent, Tenancy, Unit
from payments import billing, rating
from payments.ledger import tenant_account

from . import vee
from .models import (
    CutoffNotice,
    Device,
    IncomingReading,
    Interval,
    Meter,
    MeterEvent,
    Reading,
    RelayCommand,
    RelayState,
)
from .protections import Protections, automatic_supply, earliest_cutoff, next_window_start
from .simulator import SimDevice

logger = logging.getLogger(__name__)

# Registers beyond this (10 TWh) are not a real submeter: a corrupt frame.
MAX_REGISTER_WH = 10**13
MAX_SEQ = 2**62
# No real reading is taken outside these times; outside them a time may not
# even convert to UTC, and a stored one could not be read back.
EARLIEST_TAKEN_AT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TAKEN_AT = datetime(2100, 1, 1, tzinfo=UTC)


class ReadingRejected(Exception):
    """The whole frame is refused; nothing of it is stored."""

    def __init__(self, code: str, message: str, seq: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq


@dataclass(frozen=True)
class ReadingInput:
    seq: int
    taken_at: datetime
    register_wh: int


@dataclass
class ReadingsResult:
    accepted: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    flagged: list[int] = field(default_factory=list)


def device_authenticate(*, ident: str, secret: str) -> Device | None:
    device = Device.objects.filter(ident=ident).first()
    if device is None:
        # Same work as a real check, so timing does not reveal which idents exist.
        Device(secret_hash="sha256$0000$" + "0" * 64).check_secret(secret)
        return None
    return device if device.check_secret(secret) else None


class DeviceLoginLimited(Exception):
    """This device name has failed to log in too often from this address."""


def _login_key(address: str, ident: str) -> str:
    # Per address *and* device name: the meters of a building often share one
    # public address, and one misconfigured meter must not lock the others out
    # (they could not reconnect, nor receive a command to restore supply).
    return f"{address}|{ident}"


def device_login(*, address: str, ident: str, secret: str | None) -> Device | None:
    """A device's socket login: the device, or None (counted as a failure).

    Raises ``DeviceLoginLimited`` while ``ident`` has failed
    ``DEVICE_AUTH_MAX_FAILURES`` times from ``address`` within the window.
    """
    limit = int(settings.SUBMETER["DEVICE_AUTH_MAX_FAILURES"])
    if ratelimit.is_limited(scope="device-auth", ident=_login_key(address, ident), limit=limit):
        raise DeviceLoginLimited
    device = None
    if secret is not None:
        device = device_authenticate(ident=ident, secret=secret)
    if device is None:
        device_login_failed(address=address, ident=ident)
    return device


def device_login_failed(*, address: str, ident: str) -> None:
    ratelimit.hit(
        scope="device-auth",
        ident=_login_key(address, ident),
        window_seconds=int(settings.SUBMETER["DEVICE_AUTH_WINDOW_SECONDS"]),
    )


def _notify_unit(unit: Unit) -> None:
    msg = {"type": "unit.changed", "unit_id": unit.pk}
    broadcast_on_commit(landlord_group(unit.landlord_id), msg)
    for tenancy_id in Tenancy.objects.active().filter(unit=unit).values_list("pk", flat=True):
        broadcast_on_commit(tenancy_group(tenancy_id), msg)


def readings_oldest(*, now: datetime) -> datetime:
    """The earliest time a reading arriving now may have been taken."""
    max_age = timedelta(days=settings.SUBMETER["READING_MAX_AGE_DAYS"])
    return max(EARLIEST_TAKEN_AT, now - max_age)


def readings_validate(*, readings: list[ReadingInput], now: datetime) -> None:
    tolerance = timedelta(seconds=settings.SUBMETER["FUTURE_TOLERANCE_SECONDS"])
    oldest = readings_oldest(now=now)
    if not readings:
        raise ReadingRejected("FormatViolation", "No readings in the frame.")
    if len(readings) > settings.SUBMETER["MAX_READINGS_PER_FRAME"]:
        raise ReadingRejected("FormatViolation", "Too many readings in one frame.")
    for r in readings:
        if not 0 <= r.seq <= MAX_SEQ:
            raise ReadingRejected("PropertyConstraintViolation", "seq out of range.", r.seq)
        if not 0 <= r.register_wh <= MAX_REGISTER_WH:
            raise ReadingRejected("PropertyConstraintViolation", "register_wh out of range.", r.seq)
        if timezone.is_naive(r.taken_at):
            raise ReadingRejected("FormatViolation", "taken_at needs a UTC offset.", r.seq)
        try:
            taken_at = r.taken_at.astimezone(UTC)
        except OverflowError:
            raise ReadingRejected(
                "PropertyConstraintViolation", "taken_at is out of range.", r.seq
            ) from None
        if taken_at > now + tolerance:
            raise ReadingRejected(
                "PropertyConstraintViolation", "taken_at is in the future.", r.seq
            )
        if taken_at < oldest:
            raise ReadingRejected(
                "PropertyConstraintViolation", "taken_at is too far in the past.", r.seq
            )


@dataclass
class _Derivation:
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
class _Row:
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


def _apply_step(row: _Row, step: vee.Step, meter: Meter, prev_at: datetime, d: _Derivation) -> None:
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


def _add_step(d: _Derivation, meter: Meter, start: datetime, end: datetime, step: vee.Step) -> None:
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


def _late_reading(row: _Row, meter: Meter, limits: vee.Limits, d: _Derivation) -> None:
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


def _slots_apply(meter: Meter, unit: Unit, d: _Derivation) -> int:
    """Write slot energy changes and re-rate from the earliest changed slot; returns Δ sub-units."""
    if d.gaps:
        Interval.objects.bulk_create(d.gaps)
    starts = [s for s, wh in d.slots.items() if wh or s in d.estimated]
    if not starts and meter.held_from is None:
        return 0
    try:
        schedule: rating.Schedule | None = billing.unit_schedule(unit=unit)
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


def _readings_insert(rows: list[_Row]) -> None:
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


@dataclass
class StageRequest:
    """One frame's readings from one device, already checked by ``readings_validate``."""

    device_id: int
    landlord_id: int
    readings: list[ReadingInput]


_STAGE_SQL = """
WITH installed AS (
    SELECT device_id FROM {meter} WHERE device_id = ANY(%s) AND removed_at IS NULL
), staged AS (
    INSERT INTO {incoming} (landlord_id, device_id, seq, taken_at, register_wh, received_at)
    SELECT u.landlord_id, u.device_id, u.seq, u.taken_at, u.register_wh, %s
    FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::bigint[])
        AS u(landlord_id, device_id, seq, taken_at, register_wh)
    WHERE u.device_id IN (SELECT device_id FROM installed)
      AND NOT EXISTS (
        SELECT 1 FROM {reading} r WHERE r.device_id = u.device_id AND r.seq = u.seq
      )
    ON CONFLICT (device_id, seq) DO NOTHING
    RETURNING device_id, seq
)
SELECT device_id, NULL FROM installed
UNION ALL
SELECT device_id, seq FROM staged
"""

_Staged = tuple[int, int, int, datetime, int]  # landlord, device, seq, taken_at, register_wh


def _stage_rows(
    rows: list[_Staged], device_ids: set[int], now: datetime
) -> tuple[set[int], set[tuple[int, int]]]:
    """Append the rows of devices that have a meter installed, skipping readings
    stored already. Returns (devices with a meter, (device, seq) pairs appended).

    On PostgreSQL one statement does it all for the whole batch. Elsewhere
    (SQLite, one writer at a time) the batch is checked, then inserted.
    """
    rows.sort(key=lambda r: (r[1], r[2]))  # one lock order for concurrent batches
    if connection.vendor == "postgresql":
        sql = _STAGE_SQL.format(
            meter=Meter._meta.db_table,
            incoming=IncomingReading._meta.db_table,
            reading=Reading._meta.db_table,
        )
        cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * 5
        connection.ensure_connection()
        # The driver's own cursor binds the arrays on the server, far cheaper
        # than inlining thousands of values into the SQL text.
        with connection.connection.cursor() as cursor:
            cursor.execute(sql, [sorted(device_ids), now, *cols])
            found = cursor.fetchall()
        return (
            {int(d) for d, q in found if q is None},
            {(int(d), int(q)) for d, q in found if q is not None},
        )
    installed = set(
        Meter.objects.installed()
        .filter(device_id__in=device_ids)
        .values_list("device_id", flat=True)
    )
    by_device: dict[int, list[int]] = {}
    for _l, device_id, seq, _t, _w in rows:
        if device_id in installed:
            by_device.setdefault(device_id, []).append(seq)
    known: set[tuple[int, int]] = set()
    for device_id, seqs in by_device.items():
        for model in (Reading, IncomingReading):
            known.update(
                model.objects.filter(
                    device_id=device_id, seq__gte=min(seqs), seq__lte=max(seqs)
                ).values_list("device_id", "seq")
            )
    fresh = [r for r in rows if r[1] in installed and (r[1], r[2]) not in known]
    IncomingReading.objects.bulk_create(
        IncomingReading(
            landlord_id=landlord_id,
            device_id=device_id,
            seq=seq,
            taken_at=taken_at,
            register_wh=register_wh,
            received_at=now,
        )
        for landlord_id, device_id, seq, taken_at, register_wh in fresh
    )
    return installed, {(r[1], r[2]) for r in fresh}


@transaction.atomic
def readings_stage(
    *, requests: list[StageRequest], now: datetime | None = None
) -> list[ReadingsResult | ReadingRejected]:
    """Store many frames' readings durably in one transaction, unrated.

    Each frame gets its own answer: which readings are new and which were
    already stored (duplicates), or a refusal when its device has no meter
    installed (nothing of that frame is stored). A reading identity
    (device, seq) is stored at most once however frames race or repeat.
    ``readings_rate`` validates, derives and prices what is staged.
    """
    now = now or timezone.now()
    results = [ReadingsResult() for _ in requests]
    owners: dict[tuple[int, int], ReadingsResult] = {}
    rows: list[_Staged] = []
    for req, result in zip(requests, results, strict=True):
        for r in req.readings:
            key = (req.device_id, r.seq)
            if key in owners:
                result.duplicates.append(r.seq)
                continue
            owners[key] = result
            rows.append((req.landlord_id, req.device_id, r.seq, r.taken_at, r.register_wh))
    installed, fresh = _stage_rows(rows, {r.device_id for r in requests}, now)
    for key, result in owners.items():
        (result.accepted if key in fresh else result.duplicates).append(key[1])
    answers: list[ReadingsResult | ReadingRejected] = []
    for req, result in zip(requests, results, strict=True):
        if req.device_id not in installed:
            answers.append(
                ReadingRejected("GenericError", "No meter is installed for this device.")
            )
            continue
        result.accepted.sort()
        result.duplicates.sort()
        answers.append(result)
    return answers


RATE_QUEUED_KEY = "meters:readings-rate-queued"


def readings_rate_soon() -> None:
    """Ask a background worker to rate staged readings, once for many batches.

    A flag in the shared cache stands for a queued task; the task clears it
    when it starts, so readings staged while it runs queue the next one. The
    flag expires, and a periodic task rates whatever is left, so a lost task
    delays rating but loses nothing.
    """
    from .tasks import readings_rate_task

    if shared_cache().add(RATE_QUEUED_KEY, 1, timeout=60):
        readings_rate_task.enqueue()


RATE_CHUNK_DEVICES = 100


def readings_rate_pending(*, device_ids: list[int] | None = None) -> int:
    """Rate devices' staged readings; returns how many readings were rated.

    Without ``device_ids``: every device with staged readings, this task taking
    the first hundred and queueing a task per further hundred, so several
    consumers share a big backlog. Devices another worker is rating are
    skipped (it takes their new readings too, or the next run will).
    """
    if device_ids is None:
        shared_cache().delete(RATE_QUEUED_KEY)
        _staged_out_of_range_drop()
        device_ids = list(IncomingReading.objects.values_list("device_id", flat=True).distinct())
        if len(device_ids) > RATE_CHUNK_DEVICES:
            from .tasks import readings_rate_task

            for i in range(RATE_CHUNK_DEVICES, len(device_ids), RATE_CHUNK_DEVICES):
                readings_rate_task.enqueue(device_ids=device_ids[i : i + RATE_CHUNK_DEVICES])
            device_ids = device_ids[:RATE_CHUNK_DEVICES]
    rated = 0
    for device_id in device_ids:
        try:
            result = readings_rate(device_id=device_id, skip_locked=True)
        except Exception:
            logger.exception("rating staged readings of device %s failed", device_id)
            continue
        rated += len(result.accepted)
    return rated


def _staged_out_of_range_drop() -> None:
    """Drop staged readings taken outside any real time, with an error each.

    Intake refuses them; one staged before it did cannot be read back as a
    datetime, so ``readings_rate`` leaves it out, and it is dropped here.
    """
    bad = IncomingReading.objects.exclude(
        taken_at__gte=EARLIEST_TAKEN_AT, taken_at__lt=LATEST_TAKEN_AT
    )
    rows = list(bad.values_list("pk", "device_id", "seq", "register_wh"))
    for _pk, device_id, seq, register_wh in rows:
        logger.error(
            "dropped staged reading of device %s seq %s (%s Wh): taken_at out of range",
            device_id,
            seq,
            register_wh,
        )
    if rows:
        IncomingReading.objects.filter(pk__in=[row[0] for row in rows]).delete()


@transaction.atomic
def readings_rate(*, device_id: int, skip_locked: bool = False) -> ReadingsResult:
    """Validate, derive and price a device's staged readings, oldest first.

    The device row lock serialises rating per device. The rules are in
    ``meters.vee``; pricing in ``payments.rating``; posting in
    ``payments.billing.usage_settle``. Staged readings already in ``Reading``
    (a resend that raced an earlier rating) are dropped as duplicates.
    """
    now = timezone.now()
    result = ReadingsResult()
    device = (
        Device.objects.select_for_update(of=("self",), skip_locked=skip_locked)
        .select_related("unit__property", "unit__tariff", "unit__landlord")
        .filter(pk=device_id)
        .first()
    )
    if device is None:
        return result
    staged = list(
        # A time outside these could not be loaded and would fail every run
        # of this device: _staged_out_of_range_drop removes it.
        IncomingReading.objects.filter(
            device_id=device_id, taken_at__gte=EARLIEST_TAKEN_AT, taken_at__lt=LATEST_TAKEN_AT
        )
        .order_by("taken_at", "seq")
        .values_list("pk", "seq", "taken_at", "register_wh", "received_at")
    )
    if not staged:
        return result
    meter = Meter.objects.installed().select_for_update().filter(device=device).first()
    if meter is None:
        logger.warning("device %s has staged readings but no meter installed", device.ident)
        return result
    IncomingReading.objects.filter(pk__in=[row[0] for row in staged]).delete()
    seqs = [row[1] for row in staged]
    known = set(
        Reading.objects.filter(device=device, seq__gte=min(seqs), seq__lte=max(seqs)).values_list(
            "seq", flat=True
        )
    )
    result.duplicates.extend(sorted(known & set(seqs)))
    fresh = [row for row in staged if row[1] not in known]
    last_seen = max(row[4] for row in staged)
    if device.last_seen_at is None or last_seen > device.last_seen_at:
        device.last_seen_at = last_seen
        device.save(update_fields=["last_seen_at"])
    if not fresh:
        return result

    limits = vee.Limits.from_settings(meter.register_max_wh)
    d = _Derivation()
    rows: list[_Row] = []
    late: list[_Row] = []
    for _pk, seq, taken_at, register_wh, received_at in fresh:
        row = _Row(device.landlord_id, device.pk, meter.pk, seq, taken_at, register_wh, received_at)
        if meter.rated_at is None:
            row.rule, row.note = vee.Rule.BASELINE.value, "first reading: billing starts here"
        elif (taken_at, seq) <= (meter.rated_at, meter.rated_seq or 0):
            late.append(row)
            continue
        else:
            step = vee.step(
                prev_at=meter.rated_at,
                prev_wh=meter.rated_register_wh or 0,
                at=taken_at,
                register_wh=register_wh,
                limits=limits,
            )
            _apply_step(row, step, meter, meter.rated_at, d)
        meter.rated_seq, meter.rated_register_wh, meter.rated_at = seq, register_wh, taken_at
        rows.append(row)
    _readings_insert(rows)
    if d.gaps and late:
        # Late readings may split a gap held by this very batch: store it first.
        Interval.objects.bulk_create(d.gaps)
        d.gaps = []
    for row in late:
        _late_reading(row, meter, limits, d)
        _readings_insert([row])
    for row in [*rows, *late]:
        result.accepted.append(row.seq)
        if row.quality == Reading.Quality.FLAGGED:
            result.flagged.append(row.seq)
    result.accepted.sort()
    result.flagged.sort()

    unit = device.unit
    meter.last_register_wh, meter.last_reading_at = meter.rated_register_wh, meter.rated_at
    meter.pending_sub += _slots_apply(meter, unit, d)
    billing.usage_settle(meter=meter, unit=unit, now=now)
    meter.save()
    supply_evaluate(unit=unit, reason="usage")
    _notify_unit(unit)
    return result


@transaction.atomic
def readings_record(*, device_id: int, readings: list[ReadingInput]) -> ReadingsResult:
    """Store a device's readings and rate them at once (one frame, synchronously).

    The same two steps the device socket takes, without waiting for a
    background worker: ``readings_stage`` then ``readings_rate``. The result
    says which readings were new, which were duplicates and which of the new
    ones were flagged.
    """
    readings_validate(readings=readings, now=timezone.now())
    landlord_id = Device.objects.filter(pk=device_id).values_list("landlord_id", flat=True).get()
    [answer] = readings_stage(requests=[StageRequest(device_id, landlord_id, readings)])
    if isinstance(answer, ReadingRejected):
        raise answer
    rated = readings_rate(device_id=device_id)
    mine = set(answer.accepted)
    late_duplicates = set(rated.duplicates) & mine
    answer.accepted = [s for s in answer.accepted if s not in late_duplicates]
    answer.duplicates = sorted([*answer.duplicates, *late_duplicates])
    answer.flagged = [s for s in rated.flagged if s in mine]
    return answer


@transaction.atomic
def usage_settle_meter(*, meter_id: int, now: datetime | None = None, force: bool = False) -> bool:
    """Post a meter's due usage outside intake (periodic sweep, closing a period)."""
    now = now or timezone.now()
    meter = Meter.objects.select_for_update().get(pk=meter_id)
    unit = Unit.objects.select_related("property", "tariff", "landlord").get(pk=meter.unit_id)
    if meter.held_from is not None:
        meter.pending_sub += _slots_apply(meter, unit, _Derivation())
    posted = billing.usage_settle(meter=meter, unit=unit, now=now, force=force)
    meter.save()
    if posted is not None:
        supply_evaluate(unit=unit, reason="usage")
        _notify_unit(unit)
    return posted is not None


class HeldReleaseError(Exception):
    """The held energy cannot be released; the message is for the landlord."""


@transaction.atomic
def held_interval_release(*, interval_id: int, actor_id: int | None, reason: str) -> Interval:
    """Bill held energy (a spike or a long gap) after review: spread evenly over the
    time it covers, marked estimated, priced and posted like any other usage."""
    if not reason.strip():
        raise HeldReleaseError("Say why this energy should be billed.")
    held = Interval.objects.get(pk=interval_id)
    device = (
        Device.objects.select_for_update(of=("self",))
        .select_related("unit__property", "unit__tariff", "unit__landlord")
        .get(pk=held.meter.device_id)
    )
    meter = Meter.objects.select_for_update().get(pk=held.meter_id)
    held = Interval.objects.select_for_update().get(pk=interval_id)
    if held.kind != Interval.Kind.GAP or held.quality != Interval.Quality.HELD:
        raise HeldReleaseError("Only held energy that was not released yet can be released.")
    d = _Derivation()
    d.add(
        rating.spread(start=held.start, end=held.end, start_wh=0, end_wh=held.energy_wh),
        estimated=True,
    )
    unit = device.unit
    meter.pending_sub += _slots_apply(meter, unit, d)
    held.quality = Interval.Quality.ESTIMATED
    held.note = f"released for billing: {reason.strip()}"[:200]
    held.save(update_fields=["quality", "note"])
    billing.usage_settle(meter=meter, unit=unit, now=timezone.now(), force=True)
    meter.save()
    AuditEvent.objects.create(
        landlord_id=meter.landlord_id,
        actor_id=actor_id,
        action="usage.held_released",
        subject=f"meter {meter.serial}",
        reason=reason.strip()[:300],
        data={"interval": held.pk, "energy_wh": held.energy_wh, "rule": held.rule},
    )
    supply_evaluate(unit=unit, reason="held energy billed")
    _notify_unit(unit)
    return held


@transaction.atomic
def meter_event_record(
    *,
    meter: Meter,
    kind: str,
    at: datetime,
    old_last_wh: int,
    new_first_wh: int,
    new_serial: str = "",
    actor_id: int | None = None,
    reason: str = "",
) -> MeterEvent:
    """A meter reset or replacement: bill the old register up to its last value,
    then start from the new register's first value."""
    # Readings the device already sent belong to the register before the event.
    readings_rate(device_id=meter.device_id)
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    device = (
        Device.objects.select_for_update().select_related("unit__property").get(pk=meter.device_id)
    )
    if kind not in MeterEvent.Kind.values:
        raise ValueError(f"unknown meter event {kind!r}")
    if meter.rated_at is not None and at < meter.rated_at:
        raise ReadingRejected(
            "PropertyConstraintViolation", "The event is older than the meter's latest reading."
        )
    unit = device.unit
    d = _Derivation()
    if meter.rated_at is not None:
        limits = vee.Limits.from_settings(meter.register_max_wh)
        closing = vee.step(
            prev_at=meter.rated_at,
            prev_wh=meter.rated_register_wh or 0,
            at=at,
            register_wh=old_last_wh,
            limits=limits,
        )
        if closing.billed:
            d.add(
                rating.spread(start=meter.rated_at, end=at, start_wh=0, end_wh=closing.energy_wh),
                estimated=closing.estimated,
            )
    meter.pending_sub += _slots_apply(meter, unit, d)
    event = MeterEvent(
        landlord_id=meter.landlord_id,
        meter=meter,
        kind=kind,
        at=at,
        old_last_wh=old_last_wh,
        new_first_wh=new_first_wh,
        reason=reason[:300],
        created_by_id=actor_id,
    )
    target = meter
    if kind == MeterEvent.Kind.REPLACEMENT:
        meter.removed_at = at
        billing.usage_settle(meter=meter, unit=unit, now=timezone.now(), force=True)
        meter.save()
        target = Meter.objects.create(
            landlord_id=meter.landlord_id,
            unit_id=meter.unit_id,
            device=device,
            serial=new_serial or f"{meter.serial}-r",
            installed_at=at,
            register_max_wh=meter.register_max_wh,
        )
        event.new_meter = target
    target.rated_at, target.rated_register_wh = at, new_first_wh
    target.rated_seq = meter.rated_seq
    target.last_reading_at, target.last_register_wh = at, new_first_wh
    billing.usage_settle(meter=target, unit=unit, now=timezone.now())
    target.save()
    event.save()
    AuditEvent.objects.create(
        landlord_id=meter.landlord_id,
        actor_id=actor_id,
        action=f"meter.{kind}",
        subject=f"meter {meter.serial}",
        reason=reason[:300],
        data={"old_last_wh": old_last_wh, "new_first_wh": new_first_wh},
    )
    _notify_unit(unit)
    return event


# --- Relay control -----------------------------------------------------------


def desired_supply(
    *,
    billing_mode: str,
    balance_minor: int | None,
    protections: Protections | None = None,
    noticed_at: datetime | None = None,
    now: datetime | None = None,
    override: str = "",
) -> tuple[str, str]:
    """The supply a unit should have, from its state alone (pure).

    Billing decides whether the supply *may* go off; the protections
    (meters/protections.py) can then only keep it on, never delay
    reconnection. Without ``protections`` the billing decision is returned
    as it is (a notice is taken as given). A landlord's manual override wins,
    except that "off" is refused where landlord disconnection is forbidden.
    """
    if override == RelayState.ON:
        return RelayState.ON, "manual override: on"
    if override == RelayState.OFF:
        if protections is not None and not protections.landlord_may_disconnect:
            return RelayState.ON, "manual off refused: landlord disconnection is not allowed"
        return RelayState.OFF, "manual override: off"
    if billing_mode == Unit.BillingMode.PREPAID:
        if balance_minor is None:
            return RelayState.ON, "no tenant: left on"
        wants_off = balance_minor <= 0
        on_reason = "prepaid credit available"
    else:
        wants_off, on_reason = False, "postpaid"
    if protections is None:
        return (
            (RelayState.OFF, "prepaid credit used up") if wants_off else (RelayState.ON, on_reason)
        )
    state, why = automatic_supply(
        wants_off=wants_off,
        wants_off_reason="prepaid credit used up",
        on_reason=on_reason,
        protections=protections,
        noticed_at=noticed_at,
        now=now or timezone.now(),
    )
    return (RelayState.ON if state == "on" else RelayState.OFF), why


def unit_balance(unit: Unit) -> int | None:
    tenancy = Tenancy.objects.active().filter(unit=unit).first()
    if tenancy is None:
        return None
    return tenant_account(tenancy=tenancy).balance_minor


def protections_for(*, unit: Unit, tenancy: Tenancy | None) -> Protections:
    """Read a unit's protections from its property and tenancy (and the freeze hooks)."""
    prop = unit.property
    holidays = set()
    for item in prop.cutoff_holidays or []:
        try:
            holidays.add(date.fromisoformat(str(item)))
        except ValueError:
            logger.warning("property %s: ignoring bad holiday %r", prop.pk, item)
    freeze = ""
    if tenancy is not None:
        for path in settings.SUBMETER.get("DISCONNECTION_FREEZE_HOOKS", []):
            freeze = import_string(path)(tenancy=tenancy) or ""
            if freeze:
                break
    return Protections(
        tz=prop.timezone,
        days=prop.cutoff_days,
        start=prop.cutoff_start,
        end=prop.cutoff_end,
        holidays=frozenset(holidays),
        notice=timedelta(minutes=prop.cutoff_notice_minutes),
        landlord_may_disconnect=prop.landlord_may_disconnect,
        vulnerable=bool(tenancy and tenancy.vulnerable),
        freeze_reason=freeze,
    )


def cutoff_expected_at(
    *, notice: CutoffNotice, protections: Protections, now: datetime
) -> datetime | None:
    """When the scheduled cut-off will happen if nothing changes (for screens)."""
    if notice.earliest_at is None or protections.blocking_reason():
        return None
    return next_window_start(protections, max(notice.earliest_at, now))


def cutoff_amount_to_cancel(balance_minor: int) -> int:
    """What a tenant must add to cancel a scheduled cut-off: above zero, at least a top-up."""
    return max(-balance_minor + 1, settings.SUBMETER["TOPUP_MIN_MINOR"])


@dataclass(frozen=True)
class ScheduledCutoff:
    """A scheduled cut-off as the tenant is shown it: "off Mon 11:00 unless £1.00 is added"."""

    at: datetime | None
    amount_minor: int
    text: str


def cutoff_schedule(*, tenancy: Tenancy, balance_minor: int | None) -> ScheduledCutoff | None:
    """The open cut-off notice of a tenancy, as it stands now (read-only)."""
    from .alerts import clock

    notice = (
        CutoffNotice.objects.filter(tenancy=tenancy, status=CutoffNotice.Status.SCHEDULED)
        .select_related("unit__property")
        .first()
    )
    if notice is None or notice.cut_at is not None or balance_minor is None:
        return None
    unit = notice.unit
    protections = protections_for(unit=unit, tenancy=tenancy)
    at = cutoff_expected_at(notice=notice, protections=protections, now=timezone.now())
    if at is None:
        return None
    amount = cutoff_amount_to_cancel(balance_minor)
    from payments.templatetags.money import money

    text = (
        f"off {clock(at, protections.tz)} unless {money(amount, unit.property.currency)} is added"
    )
    return ScheduledCutoff(at=at, amount_minor=amount, text=text)


@transaction.atomic
def supply_evaluate(*, unit: Unit, reason: str, now: datetime | None = None) -> list[RelayCommand]:
    """Bring a unit's desired relay state, cut-off notice and alerts up to date.

    Called after every posting that changes a balance (readings, payments),
    by the periodic reconciliation (so a scheduled cut-off happens on time
    without a new reading), and after any change to protections or overrides.
    """
    from . import alerts

    now = now or timezone.now()
    unit = Unit.objects.select_related("property").get(pk=unit.pk)
    tenancy = Tenancy.objects.active().filter(unit=unit).first()
    balance = tenant_account(tenancy=tenancy).balance_minor if tenancy is not None else None
    protections = protections_for(unit=unit, tenancy=tenancy)
    notice = None
    if tenancy is not None:
        notice = (
            CutoffNotice.objects.select_for_update()
            .filter(tenancy=tenancy, status=CutoffNotice.Status.SCHEDULED)
            .first()
        )
    wants_off = unit.is_prepaid and balance is not None and balance <= 0
    if notice is not None and not wants_off:
        notice.status = CutoffNotice.Status.CANCELLED
        notice.closed_at = now
        notice.close_reason = f"balance above zero ({reason})"[:200]
        notice.save(update_fields=["status", "closed_at", "close_reason"])
        notice = None
    if (
        notice is None
        and wants_off
        and tenancy is not None
        and balance is not None
        and not protections.blocking_reason()
    ):
        notice = CutoffNotice.objects.create(
            landlord_id=unit.landlord_id,
            unit=unit,
            tenancy=tenancy,
            noticed_at=now,
            earliest_at=earliest_cutoff(protections, now),
            balance_minor=balance,
        )
        alerts.cutoff_warning_raise(notice=notice, protections=protections, now=now)
    state, why = desired_supply(
        billing_mode=unit.billing_mode,
        balance_minor=balance,
        protections=protections,
        noticed_at=notice.noticed_at if notice else None,
        now=now,
        override=unit.override_state,
    )
    issued = []
    for device in Device.objects.select_for_update().filter(unit=unit).order_by("pk"):
        if device.desired_relay != state:
            issued.append(
                relay_command_issue(device=device, state=state, reason=f"{why} ({reason})")
            )
        elif device.desired_reason != why[:200] and not issued:
            # Same state, new reason (e.g. "scheduled" became "protected"): keep screens true.
            Device.objects.filter(pk=device.pk).update(desired_reason=why[:200])
    if notice is not None and state == RelayState.OFF and notice.cut_at is None and issued:
        notice.cut_at = now
        notice.save(update_fields=["cut_at"])
    if tenancy is not None and balance is not None:
        alerts.tenancy_alerts_evaluate(
            tenancy=tenancy, unit=unit, balance_minor=balance, protections=protections, now=now
        )
    if issued or notice is not None:
        _notify_unit(unit)
    return issued


class OverrideRefused(Exception):
    pass


@transaction.atomic
def supply_override_set(*, unit: Unit, state: str, reason: str, actor_id: int | None) -> Unit:
    """A landlord forces the supply on or off, with a reason; audit-logged."""
    reason = reason.strip()
    if state not in (RelayState.ON, RelayState.OFF):
        raise OverrideRefused("Choose on or off.")
    if not reason:
        raise OverrideRefused("Give a reason for the manual override.")
    unit = Unit.objects.select_for_update().select_related("property").get(pk=unit.pk)
    if state == RelayState.OFF and not unit.property.landlord_may_disconnect:
        raise OverrideRefused(
            "Landlord disconnection is switched off for this property; the supply cannot be "
            "turned off by hand."
        )
    unit.override_state, unit.override_reason = state, reason[:300]
    unit.override_by_id, unit.override_at = actor_id, timezone.now()
    unit.save(update_fields=["override_state", "override_reason", "override_by", "override_at"])
    AuditEvent.objects.create(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action=f"supply.override.{state}",
        subject=f"unit {unit.pk} {unit.name}",
        reason=reason[:300],
    )
    supply_evaluate(unit=unit, reason=f"manual override {state}: {reason}"[:120])
    return unit


@transaction.atomic
def supply_override_release(*, unit: Unit, actor_id: int | None, reason: str = "") -> Unit:
    """Back to the automatic rules (and their protections); audit-logged."""
    unit = Unit.objects.select_for_update().get(pk=unit.pk)
    if not unit.override_state:
        return unit
    previous = unit.override_state
    unit.override_state, unit.override_reason = "", ""
    unit.override_by_id, unit.override_at = None, None
    unit.save(update_fields=["override_state", "override_reason", "override_by", "override_at"])
    AuditEvent.objects.create(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="supply.override.release",
        subject=f"unit {unit.pk} {unit.name}",
        reason=(reason.strip() or f"released manual {previous}")[:300],
    )
    supply_evaluate(unit=unit, reason="manual override released")
    return unit


def supply_reconcile(*, now: datetime | None = None) -> int:
    """Periodic: re-evaluate units whose scheduled cut-off is due and check device silence.

    Each unit is evaluated in its own transaction; evaluation is idempotent,
    so running this on several consumers at once is harmless.
    """
    from . import alerts

    now = now or timezone.now()
    unit_ids = set(
        CutoffNotice.objects.filter(
            status=CutoffNotice.Status.SCHEDULED, cut_at__isnull=True, earliest_at__lte=now
        ).values_list("unit_id", flat=True)
    )
    # Supplies that are off: a protection switched on since (or credit posted
    # outside the payment path) brings them back within a minute.
    unit_ids |= set(
        Device.objects.filter(desired_relay=RelayState.OFF).values_list("unit_id", flat=True)
    )
    for unit in Unit.objects.filter(pk__in=unit_ids).order_by("pk"):
        supply_evaluate(unit=unit, reason="scheduled check", now=now)
    alerts.device_offline_check(now=now)
    return len(unit_ids)


def relay_command_issue(
    *,
    device: Device,
    state: str,
    reason: str,
    source: str = RelayCommand.Source.AUTOMATIC,
    actor_id: int | None = None,
) -> RelayCommand:
    """Issue an absolute command with the next generation. ``device`` must be locked."""
    now = timezone.now()
    RelayCommand.objects.filter(
        device=device, status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT]
    ).update(status=RelayCommand.Status.SUPERSEDED)
    generation = max(device.desired_generation, device.reported_generation) + 1
    command = RelayCommand.objects.create(
        landlord_id=device.landlord_id,
        device=device,
        generation=generation,
        state=state,
        reason=reason[:200],
        source=source,
        next_attempt_at=now,
    )
    device.desired_relay, device.desired_generation = state, generation
    device.desired_reason = reason[:200]
    device.save(update_fields=["desired_relay", "desired_generation", "desired_reason"])
    AuditEvent.objects.create(
        landlord_id=device.landlord_id,
        actor_id=actor_id,
        action=f"relay.{state}",
        subject=f"device {device.ident}",
        reason=reason[:300],
        data={"generation": generation, "source": source},
    )
    broadcast_on_commit(device_group(device.pk), {"type": "relay.wake"})
    return command


def relay_command_due(*, device_id: int, now: datetime | None = None) -> RelayCommand | None:
    """The one outstanding command to (re)send now, if any."""
    now = now or timezone.now()
    return (
        RelayCommand.objects.filter(
            device_id=device_id,
            status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
            next_attempt_at__lte=now,
        )
        .order_by("-generation")
        .first()
    )


def relay_next_attempt_at(*, device_id: int) -> datetime | None:
    cmd = (
        RelayCommand.objects.filter(
            device_id=device_id,
            status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
        )
        .order_by("-generation")
        .first()
    )
    return cmd.next_attempt_at if cmd else None


@transaction.atomic
def relay_command_mark_sent(*, command_id: int) -> RelayCommand:
    cmd = RelayCommand.objects.select_for_update().get(pk=command_id)
    now = timezone.now()
    cfg = settings.SUBMETER
    delay = min(cfg["RELAY_RETRY_SECONDS"] * (2**cmd.attempts), cfg["RELAY_RETRY_MAX_SECONDS"])
    cmd.attempts += 1
    cmd.last_sent_at = now
    cmd.next_attempt_at = now + timedelta(seconds=delay)
    if cmd.status == RelayCommand.Status.PENDING:
        cmd.status = RelayCommand.Status.SENT
    cmd.save(update_fields=["attempts", "last_sent_at", "next_attempt_at", "status"])
    return cmd


@transaction.atomic
def relay_resend_now(*, device_id: int) -> int:
    """After a (re)connect or boot: the outstanding command goes out at once.
    Returns how many commands are outstanding."""
    return RelayCommand.objects.filter(
        device_id=device_id,
        status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
    ).update(next_attempt_at=timezone.now())


@transaction.atomic
def relay_report(*, device_id: int, state: str, generation: int) -> Device:
    """Record the relay state a device reports and reconcile it with the desired state."""
    device = Device.objects.select_for_update().select_related("unit").get(pk=device_id)
    now = timezone.now()
    if device.reported_relay == RelayState.OFF and state == RelayState.ON:
        from . import alerts

        alerts.supply_restored_raise(device=device, now=now)
    device.reported_relay = state
    device.reported_generation = generation
    device.reported_at = now
    device.last_seen_at = now
    device.save(
        update_fields=["reported_relay", "reported_generation", "reported_at", "last_seen_at"]
    )
    if device.desired_generation == 0:
        # Nothing was ever commanded: derive the first command from the unit's state.
        supply_evaluate(unit=device.unit, reason="device first seen")
        device.refresh_from_db()
    if state == device.desired_relay and generation >= device.desired_generation:
        RelayCommand.objects.filter(
            device=device,
            generation__lte=device.desired_generation,
            status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
        ).update(status=RelayCommand.Status.ACKED, acked_at=now)
    elif generation >= device.desired_generation:
        # The device is not where it should be although it has seen the newest
        # generation (rebooted, switched by hand, or never commanded): a new
        # command with a higher generation, which it cannot ignore as stale.
        relay_command_issue(
            device=device,
            state=device.desired_relay,
            reason=f"device reported {state}; restoring {device.desired_relay}",
        )
    else:
        # The device has not applied the newest command yet: send it again now.
        RelayCommand.objects.filter(device=device, generation=device.desired_generation).update(
            status=RelayCommand.Status.PENDING, next_attempt_at=now, acked_at=None
        )
        broadcast_on_commit(device_group(device.pk), {"type": "relay.wake"})
    _notify_unit(device.unit)
    return device


@transaction.atomic
def relay_report_unversioned(*, device_id: int, state: str) -> Device:
    """A report from a device without generations (Shelly), at the last confirmed one.

    If a newer command is outstanding, this only says the device has not applied
    it yet, so it is re-sent; if none is, a state that differs from the desired one
    (a button press, a reboot) is corrected with a new generation.
    """
    generation = (
        Device.objects.filter(pk=device_id).values_list("reported_generation", flat=True).get()
    )
    return relay_report(device_id=device_id, state=state, generation=generation)


@transaction.atomic
def device_presence(*, device_id: int, connected: bool, firmware: str | None = None) -> None:
    fields = {"connected": connected, "last_seen_at": timezone.now()}
    if firmware is not None:
        fields["firmware"] = firmware[:100]
    Device.objects.filter(pk=device_id).update(**fields)
    device = Device.objects.select_related("unit").get(pk=device_id)
    if connected:
        from . import alerts

        alerts.device_online(device=device)
    _notify_unit(device.unit)


@transaction.atomic
def device_attach(*, device_id: int) -> bool:
    """A device's socket is up: mark it connected, have its outstanding command
    go out at once, and say whether there is work for it (a command, or an
    alert for its display), all in one call from the socket."""
    from .alerts import alerts_for_device

    device_presence(device_id=device_id, connected=True)
    if relay_resend_now(device_id=device_id):
        return True
    return bool(alerts_for_device(device_id=device_id, now=timezone.now()))


def devices_with_work(*, device_ids: list[int]) -> set[int]:
    """Of these devices, those with a command due or an alert not yet on their display."""
    from .models import Alert

    now = timezone.now()
    due: set[int] = set()
    for start in range(0, len(device_ids), 5000):
        chunk = device_ids[start : start + 5000]
        due.update(
            RelayCommand.objects.filter(
                device_id__in=chunk,
                status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
                next_attempt_at__lte=now,
            ).values_list("device_id", flat=True)
        )
        by_unit: dict[int, list[int]] = {}
        for pk, unit_id in Device.objects.filter(pk__in=chunk).values_list("pk", "unit_id"):
            by_unit.setdefault(unit_id, []).append(pk)
        for unit_id in Alert.objects.filter(
            unit_id__in=list(by_unit),
            audience=Alert.Audience.TENANT,
            device_notified_at__isnull=True,
            created_at__gte=now - timedelta(days=1),
        ).values_list("unit_id", flat=True):
            due.update(by_unit[unit_id])
    return due


NOTIFY_LEVELS = {
    "low_credit": "warning",
    "low_runway": "warning",
    "cutoff_warning": "critical",
    "supply_restored": "info",
}


def device_notifications_due(*, device_id: int) -> list[dict[str, object]]:
    """Tenant alerts this device's display should show, as ``Notify`` payloads."""
    from .alerts import alerts_for_device

    return [
        {
            "id": a.pk,
            "kind": a.kind,
            "level": NOTIFY_LEVELS.get(a.kind, "info"),
            "message": a.message[:160],
            "beep": a.kind in ("low_credit", "cutoff_warning"),
        }
        for a in alerts_for_device(device_id=device_id, now=timezone.now())
    ]


def device_notification_acked(*, device_id: int, alert_id: int) -> None:
    """The device showed an alert; only an alert for its own unit can be marked."""
    from .alerts import alert_device_notified

    unit_id = Device.objects.filter(pk=device_id).values_list("unit_id", flat=True).first()
    if unit_id is not None:
        alert_device_notified(alert_id=alert_id, unit_id=unit_id)


def simulated_device_prepare(
    *, device: Device, power_w: float, speed: float, interval_s: float = 2.0
) -> SimDevice:
    """Give a device a fresh secret and a simulator that continues its register.

    Secrets are stored hashed, so a simulator can only take over a device by
    replacing its secret (a real device with the old one is locked out).
    """
    secret = secrets.token_urlsafe(24)
    device.set_secret(secret)
    device.save(update_fields=["secret_hash"])
    meter = Meter.objects.installed().filter(device=device).first()
    return SimDevice(
        ident=device.ident,
        secret=secret,
        power_w=power_w,
        speed=speed,
        interval_s=interval_s,
        register_wh=float(meter.last_register_wh or 0) if meter else 0.0,
        relay=device.reported_relay if device.reported_relay != RelayState.UNKNOWN else "on",
        generation=device.reported_generation,
        protocol=device.protocol,
    )
