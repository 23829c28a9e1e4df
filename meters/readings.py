"""A device's readings: a frame checked and stored durably, unrated (the socket's half of
intake), then rated in the background: validated, derived into half-hour slots, priced,
posted, and the supply brought up to date."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.tasks import task
from django.utils import timezone

from config.cache import shared as shared_cache
from config.live import unit_changed
from payments.billing import UsagePayers, usage_accrue, usage_settle
from supply.decision import supply_evaluate

from . import vee
from .derivation import (
    Derivation,
    Row,
    apply_step,
    late_reading,
    readings_insert,
    slots_apply,
)
from .models import (
    Device,
    IncomingReading,
    Interval,
    Meter,
    Reading,
)
from .retention import retention_horizon

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


def readings_oldest(*, now: datetime) -> datetime:
    """The earliest time a reading arriving now may have been taken: not before
    2000, nor older than ``READING_MAX_AGE_DAYS``, nor (while readings are
    thinned) before the retention horizon, so a thinned reading never returns."""
    max_age = timedelta(days=settings.SUBMETER["READING_MAX_AGE_DAYS"])
    oldest = max(EARLIEST_TAKEN_AT, now - max_age)
    horizon = retention_horizon(now=now)
    return oldest if horizon is None else max(oldest, horizon)


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
class StageRequest:
    """One frame's readings from one device, already checked by ``readings_validate``."""

    device_id: int
    landlord_id: int
    readings: list[ReadingInput]


# Columns of a staged row, in the order the statements below take them.
_STAGE_COLUMNS = "landlord_id, device_id, seq, taken_at, register_wh"

# One statement for the whole batch: keep only devices with a meter installed,
# skip readings rated or staged already, append the rest. Its rows come from
# ``{source}``: five arrays bound as parameters, or the batch table a COPY
# filled, emptied as it is read (``{batch}``). Answers (device, NULL) per device with a meter, (device, seq) per
# reading appended.
_STAGE_SQL = """
WITH {batch}installed AS (
    SELECT device_id FROM {meter} WHERE device_id = ANY(%s) AND removed_at IS NULL
), staged AS (
    INSERT INTO {incoming} (landlord_id, device_id, seq, taken_at, register_wh, received_at)
    SELECT u.landlord_id, u.device_id, u.seq, u.taken_at, u.register_wh, %s
    FROM {source}
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
# Bound in binary (%b): the driver's text form of an array quotes every element.
_ARRAYS = (
    "unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::timestamptz[], %b::bigint[])"
    f" AS u({_STAGE_COLUMNS})"
)
# The batch table a COPY fills: one per connection, emptied by every commit,
# and by the statement that reads it (a caller's transaction may stage again).
_BATCH_TABLE = "meters_incoming_batch"
_BATCH_SOURCE = "batch u"
_BATCH_TABLE_SQL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_BATCH_TABLE} (landlord_id bigint,"
    " device_id bigint, seq bigint, taken_at timestamptz, register_wh bigint)"
    " ON COMMIT DELETE ROWS"
)
_BATCH_COPY_SQL = f"COPY {_BATCH_TABLE} ({_STAGE_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_BATCH_TAKE_CTE = f"batch AS (DELETE FROM {_BATCH_TABLE} RETURNING {_STAGE_COLUMNS}), "  # noqa: S608 (constants only)
_BATCH_TYPES = ["int8", "int8", "int8", "timestamptz", "int8"]

#: From this many rows a batch goes to PostgreSQL by COPY: cheaper for the
#: process than binding arrays of every value, though one more round trip.
STAGE_COPY_ROWS = 200


def _stage_sql(source: str) -> str:
    return _STAGE_SQL.format(
        batch=_BATCH_TAKE_CTE if source == _BATCH_SOURCE else "",
        meter=Meter._meta.db_table,
        incoming=IncomingReading._meta.db_table,
        reading=Reading._meta.db_table,
        source=source,
    )


_Staged = tuple[int, int, int, datetime, int]  # landlord, device, seq, taken_at, register_wh


def _stage_rows(
    rows: list[_Staged], device_ids: set[int], now: datetime
) -> tuple[set[int], set[tuple[int, int]]]:
    """Append the rows of devices that have a meter installed, skipping readings
    stored already. Returns (devices with a meter, (device, seq) pairs appended).

    Durable when it returns outside a transaction: on PostgreSQL a small batch
    is one statement in its own transaction (one round trip, the commit
    included), a big one is copied into a batch table and appended from it
    in one transaction. Elsewhere (SQLite, one writer at a time) the batch is
    checked, then inserted, in one transaction.
    """
    rows.sort(key=lambda r: (r[1], r[2]))  # one lock order for concurrent batches
    if connection.vendor == "postgresql":
        if len(rows) >= STAGE_COPY_ROWS:
            # No savepoint in a caller's transaction: a failure fails it whole.
            with transaction.atomic(savepoint=False):
                found = _stage_copy(rows, device_ids, now)
        else:
            found = _stage_arrays(rows, device_ids, now)
        return (
            {int(d) for d, q in found if q is None},
            {(int(d), int(q)) for d, q in found if q is not None},
        )
    with transaction.atomic():
        return _stage_checked(rows, device_ids, now)


def _driver_cursor() -> psycopg.Cursor[Any]:
    # The driver's server-binding cursor: values travel as parameters, in
    # binary, not quoted into the SQL text as Django's client-side cursor does.
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _stage_arrays(rows: list[_Staged], device_ids: set[int], now: datetime) -> list[Any]:
    cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * 5
    with _driver_cursor() as cursor:
        cursor.execute(_stage_sql(_ARRAYS), [sorted(device_ids), now, *cols], binary=True)
        return cursor.fetchall()


def _stage_copy(rows: list[_Staged], device_ids: set[int], now: datetime) -> list[Any]:
    with _driver_cursor() as cursor:
        cursor.execute(_BATCH_TABLE_SQL)
        with cursor.copy(_BATCH_COPY_SQL) as copy:
            copy.set_types(_BATCH_TYPES)
            for row in rows:
                copy.write_row(row)
        cursor.execute(_stage_sql(_BATCH_SOURCE), [sorted(device_ids), now], binary=True)
        return cursor.fetchall()


def _stage_checked(
    rows: list[_Staged], device_ids: set[int], now: datetime
) -> tuple[set[int], set[tuple[int, int]]]:
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
    if shared_cache().add(RATE_QUEUED_KEY, 1, timeout=60):
        readings_rate_task.enqueue()


@task()
def readings_rate_task(device_ids: list[int] | None = None) -> int:
    """Rate what device sockets staged (queued by ``readings_rate_soon``)."""
    return readings_rate_pending(device_ids=device_ids)


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


def _staged(device_id: int) -> QuerySet[IncomingReading]:
    # A time outside these could not be loaded and would fail every run of
    # this device: _staged_out_of_range_drop removes it.
    return IncomingReading.objects.filter(
        device_id=device_id, taken_at__gte=EARLIEST_TAKEN_AT, taken_at__lt=LATEST_TAKEN_AT
    )


_TAKE_SQL = """
WITH taken AS (
    DELETE FROM {incoming}
    WHERE device_id = %s AND taken_at >= %s AND taken_at < %s
    RETURNING seq, taken_at, register_wh, received_at
), seen AS (
    UPDATE {device} SET last_seen_at = t.received_at
    FROM (SELECT max(received_at) AS received_at FROM taken) t
    WHERE id = %s AND t.received_at IS NOT NULL
      AND (last_seen_at IS NULL OR last_seen_at < t.received_at)
)
SELECT t.seq, t.taken_at, t.register_wh, t.received_at,
       EXISTS (SELECT 1 FROM {reading} r WHERE r.device_id = %s AND r.seq = t.seq)
FROM taken t
ORDER BY t.taken_at, t.seq
"""

_Taken = tuple[int, datetime, int, datetime, bool]  # seq, taken_at, register_wh, received_at, known


def _staged_take(device_id: int) -> list[_Taken]:
    """Remove a device's staged readings and return them oldest first, each saying
    whether it is stored already (a resend that raced an earlier rating).

    The device is locked by the caller. On PostgreSQL one statement takes
    them, checks each against the stored readings' (device, seq) index and
    moves the device's ``last_seen_at`` up to the newest one's arrival;
    elsewhere it is a select, a delete and a check (the caller saves
    ``last_seen_at``).
    """
    if connection.vendor == "postgresql":
        sql = _TAKE_SQL.format(
            incoming=IncomingReading._meta.db_table,
            reading=Reading._meta.db_table,
            device=Device._meta.db_table,
        )
        # Binary results: five hundred timestamps parsed from text cost more
        # than the statement.
        with _driver_cursor() as cursor:
            cursor.execute(
                sql,
                [device_id, EARLIEST_TAKEN_AT, LATEST_TAKEN_AT, device_id, device_id],
                binary=True,
            )
            return cursor.fetchall()
    rows = list(
        _staged(device_id)
        .order_by("taken_at", "seq")
        .values_list("pk", "seq", "taken_at", "register_wh", "received_at")
    )
    if not rows:
        return []
    IncomingReading.objects.filter(pk__in=[row[0] for row in rows]).delete()
    seqs = [row[1] for row in rows]
    known = set(
        Reading.objects.filter(
            device_id=device_id, seq__gte=min(seqs), seq__lte=max(seqs)
        ).values_list("seq", flat=True)
    )
    return [(seq, at, wh, received, seq in known) for _pk, seq, at, wh, received in rows]


def _device_locked(device_id: int, *, skip_locked: bool = False) -> Device | None:
    """The device, its row locked for rating, with what rating reads of its unit."""
    return (
        Device.objects.select_for_update(of=("self",), skip_locked=skip_locked)
        .select_related("unit__property", "unit__tariff", "unit__landlord")
        .filter(pk=device_id)
        .first()
    )


@transaction.atomic
def readings_rate(*, device_id: int, skip_locked: bool = False) -> ReadingsResult:
    """Validate, derive and price a device's staged readings, oldest first.

    The device row lock serialises rating per device. The rules are in
    ``meters.vee``; pricing in ``payments.rating``; posting in
    ``payments.billing.usage_settle``. Staged readings already in ``Reading``
    (a resend that raced an earlier rating) are dropped as duplicates.
    """
    device = _device_locked(device_id, skip_locked=skip_locked)
    if device is None:
        return ReadingsResult()
    return _device_rate(device)


def _device_rate(device: Device) -> ReadingsResult:
    """``readings_rate`` for a device locked in the caller's transaction."""
    now = timezone.now()
    result = ReadingsResult()
    device_id = device.pk
    meter = Meter.objects.installed().select_for_update().filter(device=device).first()
    if meter is None:
        if _staged(device_id).exists():
            logger.warning("device %s has staged readings but no meter installed", device.ident)
        return result
    staged = _staged_take(device_id)
    if not staged:
        return result
    result.duplicates.extend(sorted(row[0] for row in staged if row[4]))
    fresh = [row[:4] for row in staged if not row[4]]
    last_seen = max(row[3] for row in staged)
    if device.last_seen_at is None or last_seen > device.last_seen_at:
        device.last_seen_at = last_seen
        if connection.vendor != "postgresql":  # there the take stored it
            device.save(update_fields=["last_seen_at"])
    if not fresh:
        return result

    limits = vee.Limits.from_settings(meter.register_max_wh)
    rated_before = meter.rated_at
    d = Derivation()
    rows: list[Row] = []
    late: list[Row] = []
    # The cursor (the newest reading rated) in locals while the loop moves it.
    landlord_id, meter_id = device.landlord_id, meter.pk
    rated_at, rated_seq, rated_wh = meter.rated_at, meter.rated_seq, meter.rated_register_wh
    for seq, taken_at, register_wh, received_at in fresh:
        row = Row(landlord_id, device_id, meter_id, seq, taken_at, register_wh, received_at)
        if rated_at is None:
            row.rule, row.note = vee.Rule.BASELINE.value, "first reading: billing starts here"
        elif (taken_at, seq) <= (rated_at, rated_seq or 0):
            late.append(row)
            continue
        else:
            step = vee.step(
                prev_at=rated_at,
                prev_wh=rated_wh or 0,
                at=taken_at,
                register_wh=register_wh,
                limits=limits,
            )
            apply_step(row, step, meter, rated_at, d)
        rated_seq, rated_wh, rated_at = seq, register_wh, taken_at
        rows.append(row)
    meter.rated_seq, meter.rated_register_wh, meter.rated_at = rated_seq, rated_wh, rated_at
    readings_insert(rows)
    if d.gaps and late:
        # Late readings may split a gap held by this very batch: store it first.
        Interval.objects.bulk_create(d.gaps)
        d.gaps = []
    for row in late:
        late_reading(row, meter, limits, d)
        readings_insert([row])
    for row in [*rows, *late]:
        result.accepted.append(row.seq)
        if row.quality == Reading.Quality.FLAGGED:
            result.flagged.append(row.seq)
    result.accepted.sort()
    result.flagged.sort()

    unit = device.unit
    meter.last_register_wh, meter.last_reading_at = meter.rated_register_wh, meter.rated_at
    priced = slots_apply(meter, unit, d)
    payers = UsagePayers(unit)
    usage_accrue(
        meter=meter, unit=unit, changes=priced.changes, rated_before=rated_before, payers=payers
    )
    usage_settle(meter=meter, unit=unit, now=now, payers=payers)
    meter.save()
    supply_evaluate(unit=unit, reason="usage")
    unit_changed(unit)
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
    # Locked first: the lock rating takes anyway, and it brings the landlord.
    device = _device_locked(device_id)
    if device is None:
        raise Device.DoesNotExist(f"no device {device_id}")
    [answer] = readings_stage(requests=[StageRequest(device_id, device.landlord_id, readings)])
    if isinstance(answer, ReadingRejected):
        raise answer
    rated = _device_rate(device)
    mine = set(answer.accepted)
    late_duplicates = set(rated.duplicates) & mine
    answer.accepted = [s for s in answer.accepted if s not in late_duplicates]
    answer.duplicates = sorted([*answer.duplicates, *late_duplicates])
    answer.flagged = [s for s in rated.flagged if s in mine]
    return answer
