"""Reading intake in two steps: durable staging of many frames at once, then rating.

The device socket answers once a batch is committed (``readings_stage``);
rating (``readings_rate``) runs in the background. Whatever the batching and
whenever rating runs, the result must be the same as rating each frame on
arrival.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import OperationalError, connection, connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters import readings
from meters.meter_events import meter_event_record
from meters.models import Device, IncomingReading, Interval, Meter, Reading
from meters.readings import (
    RATE_QUEUED_KEY,
    ReadingInput,
    ReadingRejected,
    ReadingsResult,
    StageRequest,
    readings_rate,
    readings_rate_pending,
    readings_rate_soon,
    readings_record,
    readings_stage,
)
from tests.wsutil import FakeDevice, device_communicator

BASE = datetime(2026, 1, 14, 10, 0, tzinfo=UTC)


def _inputs(*items: tuple[int, int, int]) -> list[ReadingInput]:
    return [
        ReadingInput(seq=seq, taken_at=BASE + timedelta(minutes=m), register_wh=wh)
        for seq, m, wh in items
    ]


def _request(device: Device, *items: tuple[int, int, int]) -> StageRequest:
    return StageRequest(device.pk, device.landlord_id, _inputs(*items))


def _ok(answer: ReadingsResult | ReadingRejected) -> ReadingsResult:
    assert isinstance(answer, ReadingsResult), answer
    return answer


@pytest.mark.django_db
def test_one_batch_answers_each_frame_on_its_own(personas):
    a = personas.a.prepaid_device.device
    b = personas.b.postpaid_device.device
    bare = personas.a.postpaid_device.device
    Meter.objects.filter(device=bare).update(removed_at=timezone.now())
    answers = readings_stage(
        requests=[
            _request(a, (1, 0, 0), (2, 1, 10)),
            _request(bare, (1, 0, 0)),
            _request(b, (7, 0, 5), (7, 0, 5)),
            _request(a, (2, 1, 10), (3, 2, 20)),  # the same device again in one batch
        ]
    )
    first, bare_answer, third, fourth = answers
    assert (_ok(first).accepted, _ok(first).duplicates) == ([1, 2], [])
    assert isinstance(bare_answer, ReadingRejected) and "No meter" in bare_answer.message
    assert (_ok(third).accepted, _ok(third).duplicates) == ([7], [7])
    assert (_ok(fourth).accepted, _ok(fourth).duplicates) == ([3], [2])
    assert IncomingReading.objects.count() == 4
    assert not IncomingReading.objects.filter(device=bare).exists()
    # Staged, not yet rated: nothing priced, nothing in the readings table.
    assert Reading.objects.count() == 0 and Interval.objects.count() == 0
    assert readings_rate_pending() == 4
    assert IncomingReading.objects.count() == 0
    assert Reading.objects.filter(device=a).count() == 3
    # Already rated readings sent again are duplicates at staging.
    [again] = readings_stage(requests=[_request(a, (1, 0, 0), (4, 3, 30))])
    assert (_ok(again).accepted, _ok(again).duplicates) == ([4], [1])


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.parametrize("copy_from", [1, 10_000], ids=["copy", "arrays"])
def test_a_batch_staged_by_copy_or_by_arrays_gets_the_same_answers(
    personas, monkeypatch, copy_from
):
    # given: the big-batch path (COPY into a batch table) or the small one
    monkeypatch.setattr(readings, "STAGE_COPY_ROWS", copy_from)
    a = personas.a.prepaid_device.device
    b = personas.b.postpaid_device.device
    bare = personas.a.postpaid_device.device
    Meter.objects.filter(device=bare).update(removed_at=timezone.now())
    readings_stage(requests=[_request(a, (1, 0, 0))])
    readings_rate_pending()  # seq 1 of a is rated: a duplicate from now on
    # when: two batches in one transaction (the batch table is emptied between)
    with transaction.atomic():
        first = readings_stage(
            requests=[
                _request(a, (1, 0, 0), (2, 1, 10)),
                _request(bare, (1, 0, 0)),
                _request(b, (7, 0, 5), (7, 0, 5)),
            ]
        )
        second = readings_stage(requests=[_request(a, (2, 1, 10), (3, 2, 20))])
    # then
    assert (_ok(first[0]).accepted, _ok(first[0]).duplicates) == ([2], [1])
    assert isinstance(first[1], ReadingRejected)
    assert (_ok(first[2]).accepted, _ok(first[2]).duplicates) == ([7], [7])
    assert (_ok(second[0]).accepted, _ok(second[0]).duplicates) == ([3], [2])
    staged = IncomingReading.objects.order_by("device_id", "seq")
    assert list(staged.values_list("device_id", "seq", "register_wh", "taken_at")) == sorted(
        [
            (a.pk, 2, 10, BASE + timedelta(minutes=1)),
            (a.pk, 3, 20, BASE + timedelta(minutes=2)),
            (b.pk, 7, 5, BASE),
        ]
    )
    assert {r.landlord_id for r in staged} == {a.landlord_id, b.landlord_id}


def _count_elsewhere() -> int:
    """Staged readings as another connection sees them: only committed ones."""
    seen: list[int] = []

    def count() -> None:
        try:
            seen.append(IncomingReading.objects.count())
        finally:
            connections.close_all()

    t = threading.Thread(target=count)
    t.start()
    t.join(30)
    return seen[0]


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_committed_when_staging_returns(tpersonas):
    # The device is answered as soon as readings_stage returns: by then the
    # batch must be committed, small (one statement) or big (COPY) alike.
    device = tpersonas.a.prepaid_device.device
    big = [(s, s, s) for s in range(1, readings.STAGE_COPY_ROWS + 1)]
    stored = 0
    for items in ([(1000, 0, 0)], big):
        [answer] = readings_stage(requests=[_request(device, *items)])
        assert len(_ok(answer).accepted) == len(items)
        stored += len(items)
        assert _count_elsewhere() == stored


@pytest.mark.django_db
def test_a_resend_that_raced_rating_is_dropped_as_a_duplicate(personas):
    device = personas.a.prepaid_device.device
    readings_record(device_id=device.pk, readings=_inputs((1, 0, 0), (2, 1, 100)))
    # As if the staging check ran before the first copy was rated.
    IncomingReading.objects.create(
        landlord_id=device.landlord_id,
        device=device,
        seq=2,
        taken_at=BASE + timedelta(minutes=1),
        register_wh=100,
        received_at=timezone.now(),
    )
    result = readings_rate(device_id=device.pk)
    assert (result.accepted, result.duplicates) == ([], [2])
    assert Reading.objects.filter(device=device).count() == 2
    assert not IncomingReading.objects.exists()


@pytest.mark.django_db
def test_a_lost_rating_task_is_covered_by_the_periodic_run(personas):
    from meters.tasks import readings_rate_periodic

    device = personas.a.prepaid_device.device
    cache.set(RATE_QUEUED_KEY, 1)  # a task is "queued" but never runs
    readings_stage(requests=[_request(device, (1, 0, 0), (2, 1, 100))])
    readings_rate_soon()
    assert IncomingReading.objects.count() == 2
    readings_rate_periodic.call_local()
    assert not IncomingReading.objects.exists()
    assert Reading.objects.filter(device=device).count() == 2
    assert cache.get(RATE_QUEUED_KEY) is None


@pytest.mark.django_db
def test_a_big_backlog_is_shared_out_in_tasks(personas, monkeypatch):
    monkeypatch.setattr(readings, "RATE_CHUNK_DEVICES", 1)
    devices = [
        personas.a.prepaid_device.device,
        personas.a.postpaid_device.device,
        personas.b.prepaid_device.device,
    ]
    readings_stage(requests=[_request(d, (1, 0, 0), (2, 1, 50)) for d in devices])
    # It rates its own share (one device) and queues a task per further device;
    # the test queue runs those at once.
    assert readings_rate_pending() == 2
    assert not IncomingReading.objects.exists()
    assert Reading.objects.count() == 6


@pytest.mark.django_db
def test_a_meter_event_rates_what_the_device_sent_before_it(personas):
    from meters.models import MeterEvent

    device = personas.a.prepaid_device.device
    meter = Meter.objects.get(device=device)
    readings_stage(requests=[_request(device, (1, 0, 1000), (2, 10, 1100))])
    meter_event_record(
        meter=meter,
        kind=MeterEvent.Kind.RESET,
        at=BASE + timedelta(minutes=11),
        old_last_wh=1100,
        new_first_wh=0,
        reason="register reset",
    )
    assert not IncomingReading.objects.exists()
    assert Reading.objects.filter(meter=meter).count() == 2
    assert Meter.objects.get(pk=meter.pk).rated_register_wh == 0


_frame = st.lists(st.tuples(st.integers(1, 40), st.integers(0, 4)), min_size=1, max_size=6)


class _Rollback(Exception):
    pass


@pytest.mark.django_db
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(_frame, min_size=1, max_size=8), cuts=st.sets(st.integers(0, 8)))
def test_batching_and_rating_later_equal_rating_each_frame_at_once(personas, frames, cuts):
    """Frames staged in any batches and rated at any points give exactly what
    rating each frame on arrival gives: the same readings, intervals and money."""
    a = personas.a.prepaid_device.device
    b = personas.b.prepaid_device.device

    def frame_inputs(frame):
        # seq s is taken s minutes after BASE on a register that only grows.
        return [ReadingInput(s, BASE + timedelta(minutes=s), s * 20 + wh) for s, wh in frame]

    def snapshot(device):
        meter = Meter.objects.get(device=device)
        # Rule labels note how a reading arrived (late, across a gap since
        # filled), which batching changes; what is billed must not change.
        readings = sorted(Reading.objects.filter(device=device).values_list("seq", "quality"))
        # An interval once estimated stays marked so after a late reading fills
        # its gap (arrival order decides that label, not the energy or price).
        intervals = sorted(
            Interval.objects.filter(meter=meter).values_list(
                "kind", "start", "energy_wh", "gross_sub"
            )
        )
        return readings, intervals, meter.posted_minor * 10**11 + meter.pending_sub

    try:
        with transaction.atomic():
            for frame in frames:  # a: each frame rated on arrival
                readings_record(device_id=a.pk, readings=frame_inputs(frame))
            pending: list[StageRequest] = []
            for i, frame in enumerate(frames):  # b: batched, rated at the cuts
                pending.append(StageRequest(b.pk, b.landlord_id, frame_inputs(frame)))
                if i in cuts:
                    readings_stage(requests=pending)
                    pending = []
                    readings_rate_pending()
            if pending:
                readings_stage(requests=pending)
            readings_rate_pending()
            assert not IncomingReading.objects.exists()
            assert snapshot(a) == snapshot(b)
            raise _Rollback
    except _Rollback:
        pass


# --- through the socket -----------------------------------------------------------


async def _connect(creds) -> FakeDevice:
    comm = device_communicator(creds.headers)
    connected, _ = await comm.connect()
    assert connected
    return FakeDevice(comm)


@database_sync_to_async
def _stored() -> tuple[int, int]:
    return Reading.objects.count(), IncomingReading.objects.count()


@pytest.mark.django_db(transaction=True)
async def test_frames_from_many_sockets_at_once_are_each_stored_once(tpersonas):
    devices = [
        tpersonas.a.prepaid_device,
        tpersonas.a.postpaid_device,
        tpersonas.b.prepaid_device,
        tpersonas.b.postpaid_device,
    ]
    socks = [await _connect(d) for d in devices]
    first = await asyncio.gather(*(s.readings((1, 100), (2, 150)) for s in socks))
    again = await asyncio.gather(*(s.readings((2, 150), (3, 180)) for s in socks))
    assert all(r[2] == {"accepted": 2, "duplicates": []} for r in first)
    assert all(r[2] == {"accepted": 1, "duplicates": [2]} for r in again)
    # The test queue runs the rating task at once, before the answers.
    assert await _stored() == (12, 0)
    for s in socks:
        await s.comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_database_failure_answers_internal_error_and_stores_nothing(tpersonas, monkeypatch):
    def broken(**kwargs):
        raise OperationalError("database unavailable")

    dev = await _connect(tpersonas.a.prepaid_device)
    monkeypatch.setattr(readings, "readings_stage", broken)
    res = await dev.readings((1, 100))
    assert res[0] == 4 and res[2] == "InternalError"
    monkeypatch.undo()
    assert await _stored() == (0, 0)
    res = await dev.readings((1, 100))  # sent again later: stored
    assert res[2] == {"accepted": 1, "duplicates": []}
    await dev.comm.disconnect()


# --- PostgreSQL: concurrent batches -----------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_concurrent_batches_with_the_same_readings_store_each_once(tpersonas):
    devices = [tpersonas.a.prepaid_device.device, tpersonas.b.prepaid_device.device]
    requests = [_request(d, *[(s, s, s * 10) for s in range(1, 201)]) for d in devices]
    barrier = threading.Barrier(4)
    answers: list[list[ReadingsResult | ReadingRejected]] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            # Opposite orders in half the threads: rows are locked in one order.
            answers.append(readings_stage(requests=requests[:: 1 if i % 2 else -1]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    accepted = sum(len(_ok(a).accepted) for batch in answers for a in batch)
    duplicates = sum(len(_ok(a).duplicates) for batch in answers for a in batch)
    assert (accepted, duplicates) == (400, 1200)
    assert IncomingReading.objects.count() == 400
    readings_rate_pending()
    assert Reading.objects.count() == 400


def _stage_unreadable(device: Device, seq: int) -> None:
    """A staged reading taken in 1 BC, as intake stored it before it checked
    the range: PostgreSQL keeps it, but it cannot be read back as a datetime."""
    table = IncomingReading._meta.db_table
    taken_at = (
        "'0001-01-01 00:00:00+14'::timestamptz"
        if connection.vendor == "postgresql"
        else "'0000-12-31 10:00:00'"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (landlord_id, device_id, seq, taken_at, register_wh, received_at)"
            f" VALUES (%s, %s, %s, {taken_at}, %s, %s)",
            [device.landlord_id, device.pk, seq, 5, timezone.now()],
        )


@pytest.mark.django_db
def test_an_unreadable_staged_reading_does_not_stop_its_meter_being_rated(personas, caplog):
    device = personas.a.prepaid_device.device
    _stage_unreadable(device, seq=1)
    readings_stage(requests=[_request(device, (2, 0, 100), (3, 1, 110))])
    readings_rate_pending()
    assert list(Reading.objects.filter(device=device).values_list("seq", flat=True)) == [2, 3]
    # The unreadable one is dropped, with an error naming it.
    assert not IncomingReading.objects.filter(device=device).exists()
    assert any(
        r.levelname == "ERROR" and f"device {device.pk} seq 1" in r.getMessage()
        for r in caplog.records
    ), caplog.text
    # Later frames are rated as usual.
    readings_stage(requests=[_request(device, (4, 2, 120))])
    readings_rate_pending()
    assert Reading.objects.filter(device=device).count() == 3


# --- the batcher: writers and order -------------------------------------------------


async def test_a_devices_frames_are_written_in_order_while_others_go_beside(monkeypatch, settings):
    # given: two writers, and batches that stay in flight until released
    settings.SUBMETER = {**settings.SUBMETER, "INTAKE_WRITERS": 2}
    from meters import intake

    written: list[list[tuple[int, int]]] = []
    release = {1: threading.Event(), 2: threading.Event()}

    def write(requests: list[StageRequest]) -> list[ReadingsResult]:
        frames = [(r.device_id, r.readings[0].seq) for r in requests]
        written.append(frames)
        if (1, 1) in frames:
            release[1].wait(10)
        if (2, 1) in frames:
            release[2].wait(10)
        return [ReadingsResult(accepted=[r.readings[0].seq]) for r in requests]

    monkeypatch.setattr(intake, "_write", write)

    def submit(device_id: int, seq: int) -> asyncio.Task[ReadingsResult]:
        readings = [ReadingInput(seq, timezone.now(), 0)]
        return asyncio.create_task(
            intake.submit(device_id=device_id, landlord_id=1, readings=readings)
        )

    async def until(cond) -> None:
        for _ in range(500):
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(written)

    # when: device 1's first frame is being written ...
    d1_first = submit(1, 1)
    await until(lambda: len(written) == 1)
    # ... its next frame and another device's frame come in
    d1_second = submit(1, 2)
    d2_first = submit(2, 1)
    # then: the other device's frame is written beside it at once, device 1's
    # second waits for its first
    await until(lambda: len(written) == 2)
    assert written == [[(1, 1)], [(2, 1)]]
    assert not d1_second.done()
    release[1].set()
    assert (await d1_first).accepted == [1]
    assert (await d1_second).accepted == [2]
    assert written[2] == [(1, 2)]
    release[2].set()
    assert (await d2_first).accepted == [1]


async def test_frames_waiting_for_a_writer_go_in_one_batch(monkeypatch, settings):
    settings.SUBMETER = {**settings.SUBMETER, "INTAKE_WRITERS": 1}
    from meters import intake

    written: list[list[int]] = []
    busy = threading.Event()

    def write(requests: list[StageRequest]) -> list[ReadingsResult]:
        written.append([r.device_id for r in requests])
        if len(written) == 1:
            busy.wait(10)
        return [ReadingsResult(accepted=[r.readings[0].seq]) for r in requests]

    monkeypatch.setattr(intake, "_write", write)
    now = timezone.now()

    def submit(device_id: int) -> asyncio.Task[ReadingsResult]:
        readings = [ReadingInput(1, now, 0)]
        return asyncio.create_task(
            intake.submit(device_id=device_id, landlord_id=1, readings=readings)
        )

    first = submit(1)
    for _ in range(500):
        if written:
            break
        await asyncio.sleep(0.01)
    rest = [submit(d) for d in (2, 3, 4)]
    await asyncio.sleep(0.05)
    busy.set()
    await asyncio.gather(first, *rest)
    assert written == [[1], [2, 3, 4]]


def _stage_plan(device: Device, seqs: list[int], *, analyzed: bool, copied: bool) -> str:
    """The plan of staging ``seqs`` for ``device``, from arrays or from a COPY's batch table."""
    n = len(seqs)
    columns = [[device.landlord_id] * n, [device.pk] * n, seqs, [BASE] * n, [0] * n]
    with readings._driver_cursor() as cursor:
        if analyzed:
            cursor.execute(f"ANALYZE {Reading._meta.db_table}")
        if copied:
            cursor.execute(readings._BATCH_TABLE_SQL)
            with cursor.copy(readings._BATCH_COPY_SQL) as copy:
                copy.set_types(readings._BATCH_TYPES)
                for row in zip(*columns, strict=True):
                    copy.write_row(row)
            sql = readings._stage_sql(readings._BATCH_SOURCE)
            params: list[object] = [[device.pk], timezone.now()]
        else:
            sql = readings._stage_sql(readings._ARRAYS)
            params = [[device.pk], timezone.now(), *columns]
        cursor.execute("EXPLAIN " + sql, params, binary=True)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
@pytest.mark.django_db
@pytest.mark.parametrize("copied", [False, True], ids=["arrays", "copy"])
@pytest.mark.parametrize("analyzed", [False, True], ids=["no statistics", "fresh statistics"])
def test_staging_looks_up_each_reading_by_its_key_however_long_the_history(
    personas, analyzed, copied
):
    # given: a device with a long history of stored readings
    device = personas.a.prepaid_device.device
    meter = Meter.objects.get(device=device, removed_at__isnull=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Reading._meta.db_table} (landlord_id, device_id, meter_id, seq,"
            " taken_at, register_wh, received_at, quality, rule, note)"
            " SELECT %s, %s, %s, g, %s, g, %s, 'actual', '', '' FROM generate_series(1, 50000) g",
            [device.landlord_id, device.pk, meter.pk, BASE, BASE],
        )
    # when: a batch of 500 new readings is planned, from arrays or a COPY
    plan = _stage_plan(device, list(range(50_001, 50_501)), analyzed=analyzed, copied=copied)
    # then: each reading is checked through the (device, seq) key, never by reading
    # the device's (or the table's) whole history
    assert "reading_device_seq_unique" in plan, plan
    assert f"Seq Scan on {Reading._meta.db_table}" not in plan, plan
    assert "Hash Anti Join" not in plan and "Hash Right Anti Join" not in plan, plan


@pytest.mark.django_db
def test_rating_moves_a_devices_last_seen_up_to_its_newest_arrival_never_back(personas):
    # given: two frames staged at different times, rated together
    device = personas.a.prepaid_device.device
    Device.objects.filter(pk=device.pk).update(last_seen_at=None)
    arrived = BASE + timedelta(hours=1)
    readings_stage(requests=[_request(device, (1, 0, 0))], now=arrived)
    readings_stage(requests=[_request(device, (2, 1, 10))], now=arrived + timedelta(minutes=3))
    # when
    readings_rate(device_id=device.pk)
    # then: the newest arrival
    device.refresh_from_db()
    assert device.last_seen_at == arrived + timedelta(minutes=3)
    # and a frame that arrived earlier (a delayed batch) does not move it back
    readings_stage(requests=[_request(device, (3, 2, 20))], now=arrived + timedelta(minutes=1))
    assert _ok(readings_rate(device_id=device.pk)).accepted == [3]
    device.refresh_from_db()
    assert device.last_seen_at == arrived + timedelta(minutes=3)
