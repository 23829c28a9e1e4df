"""Benchmark: readings validated, rated and posted per second, beside a raw bulk insert and COPY.

    .venv/bin/python bench/money.py                 # SQLite, and PostgreSQL if DATABASE_URL is set
    .venv/bin/python bench/money.py --quick         # the same in under a minute (what CI runs)
    .venv/bin/python bench/money.py --readings 20000 --devices 4 --workers 2
    BENCH_SQL=1 .venv/bin/python bench/money.py --quick   # statements per frame, by cost
    BENCH_PROFILE=cumulative .venv/bin/python bench/money.py --quick   # cProfile, one process

For each backend it builds a fresh database (a temporary SQLite file; on
PostgreSQL a database named after DATABASE_URL's with ``_bench`` appended,
dropped afterwards), a landlord with prepaid units on a time-of-use tariff
with tiers and tax, and feeds every device frames of 500 readings one
minute apart through ``meters.readings.readings_record`` -- the same call
the device socket makes: duplicate check, validation, slot derivation,
rating, the aggregated ledger debit, supply evaluation and the live
notification, first in one server process, then in two (each with its own
database connection, taking half the devices, as two uvicorn workers
would). The baselines store the same rows with nothing else, in one
process: ``bulk_create`` in the same frame-sized transactions, and on
PostgreSQL one streaming ``COPY`` of all of them; the figure is printed as
a share of each. Beside the one-process figure and the ``COPY`` it prints
the CPU time per 1,000 rows of the process and of its PostgreSQL backend
(when the server runs on the same machine): steadier than the rates on a
busy machine, where every round trip waits for a core.

Every measured stage stops at its deadline (``--deadline``) and reports how
far it got; a run that does not answer within its limit is killed and
reported as stalled (exit status 2). ``--quick`` also keeps the whole
benchmark within one minute, leaving out what no longer fits.

With ``BENCH_SQL`` set, the one-process stage counts the statements sent
through Django (``connection.execute_wrapper``) by their shape and prints
the costliest, per frame and in microseconds per reading; the statements
written straight to the driver (staging, taking the staged readings for
rating, the readings' ``COPY``) are not among them. ``BENCH_PROFILE`` (a pstats sort
key) prints a cProfile of the same stage.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project root comes first
    sys.path.insert(0, str(ROOT))
from bench.fresh import postgres_database, run_child  # noqa: E402

FRAME = 500
# A run gets this long for migrating and creating its fleet, beyond its stages' deadlines.
SETUP_SECONDS = 120.0
QUICK_BUDGET_SECONDS = 55.0


def fork_safe_close() -> None:
    """Close this process's database connections and discard its connection pools.

    A forked child inherits the parent's open sockets: one PostgreSQL
    connection used by two processes interleaves their protocol messages
    ("lost synchronization with server", a savepoint that does not exist,
    "the last operation didn't produce records"). Closing a pooled
    connection only hands it back to the pool, whose idle connections every
    child would then take as its own, so the pool goes as well; each child
    opens a new one on first use.
    """
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        close_pool = getattr(conn, "close_pool", None)
        if close_pool is not None:
            close_pool()


def in_workers[J, R](
    work: Callable[[J], R], jobs: Sequence[J], *, timeout: float
) -> tuple[list[R], float]:
    """Run ``work(job)`` for each job in a forked process of its own, all starting together.

    Returns the results in job order and the seconds from the common start
    until the last worker finished. A worker that fails raises here with its
    traceback; one still running after ``timeout`` seconds is killed and
    reported as stalled.
    """
    import multiprocessing

    fork_safe_close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(jobs) + 1)
    results = ctx.SimpleQueue()

    def run(index: int) -> None:
        try:
            barrier.wait(timeout)
            results.put((index, work(jobs[index]), None))
        except BaseException:
            results.put((index, None, traceback.format_exc()))
        finally:
            fork_safe_close()

    procs = [ctx.Process(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout)
    except Exception:
        for proc in procs:
            proc.kill()
        raise RuntimeError(f"the workers did not start within {timeout:.0f} s") from None
    started = time.perf_counter()
    end = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.0, end - time.monotonic()))
    elapsed = time.perf_counter() - started
    stalled = [i for i, proc in enumerate(procs) if proc.is_alive()]
    for i in stalled:
        procs[i].kill()
    answers: dict[int, Any] = {}
    while not results.empty():
        index, value, error = results.get()
        if error:
            raise RuntimeError(f"worker {index} failed:\n{error}")
        answers[index] = value
    if stalled:
        raise TimeoutError(f"worker(s) {stalled} still running after {timeout:.0f} s: killed")
    missing = [i for i, proc in enumerate(procs) if i not in answers]
    if missing:
        codes = [procs[i].exitcode for i in missing]
        raise RuntimeError(f"worker(s) {missing} exited without a result (exit codes {codes})")
    return [answers[i] for i in range(len(jobs))], elapsed


class QueryLog:
    """``connection.execute_wrapper`` counting statements and their time, by statement shape."""

    def __init__(self) -> None:
        self.by_shape: dict[str, list[float]] = {}

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            entry = self.by_shape.setdefault(" ".join(sql.split())[:110], [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - t0

    def report(self, *, readings: int, frames: int) -> None:
        count = sum(int(n) for n, _ in self.by_shape.values())
        spent = sum(t for _, t in self.by_shape.values())
        print(
            f"  SQL through the ORM: {count / frames:.1f} statements per frame of {FRAME},"
            f" {spent / readings * 1e6:.1f} us per reading; the most costly:"
        )
        ranked = sorted(self.by_shape.items(), key=lambda kv: -kv[1][1])
        for shape, (n, t) in ranked[:15]:
            print(f"    {n / frames:6.1f}/frame {t / readings * 1e6:7.1f} us/reading  {shape}")


class CpuClock:
    """CPU seconds of this process and of its PostgreSQL backend, far steadier than wall time.

    The backend's are read from ``/proc/<pid>/stat`` of ``pg_backend_pid()``,
    so only when the server runs on this machine (else they are left out).
    """

    def __init__(self) -> None:
        from django.db import connection

        self.backend: int | None = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend = cursor.fetchone()[0]
        self.start = self.now()

    def _backend_seconds(self) -> float | None:
        if self.backend is None:
            return None
        try:
            stat = Path(f"/proc/{self.backend}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def now(self) -> tuple[float, float | None]:
        return time.process_time(), self._backend_seconds()

    def per_thousand(self, rows: int) -> str:
        """This process's and the backend's CPU milliseconds per 1,000 rows since the start."""
        (p0, b0), (p1, b1) = self.start, self.now()
        per = 1000 / max(rows, 1) * 1000
        text = f"CPU per 1,000: process {(p1 - p0) * per:.0f} ms"
        if b0 is not None and b1 is not None:
            text += f", database backend {(b1 - b0) * per:.0f} ms"
        return text


def feed(frames: list, *, deadline: float) -> int:
    """Record frames in order until done or past ``deadline`` (monotonic); returns readings done."""
    from meters.readings import readings_record

    done = 0
    for device_id, batch in frames:
        if time.monotonic() >= deadline:
            break
        readings_record(device_id=device_id, readings=batch)
        done += len(batch)
    return done


def reached(done: int, total: int, what: str, limit: float) -> str:
    if done >= total:
        return ""
    return f"  [stopped at the {limit:.0f} s deadline after {done:,} of {total:,} {what}]"


def fleet(tag: str, devices: int) -> list[Any]:
    """A landlord with ``devices`` prepaid units on a time-of-use tariff with tiers and tax."""
    from datetime import date
    from decimal import Decimal

    from django.contrib.auth import get_user_model

    from landlord.models import Landlord, Property, Tenancy, Unit
    from meters.models import Device, Meter
    from payments import tariffs
    from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
    from payments.models import Account, Tariff

    landlord = Landlord.objects.create(name=f"Bench {tag}")
    prop = Property.objects.create(landlord=landlord, name="Bench House", timezone="Europe/London")
    tariff = Tariff.objects.create(landlord=landlord, name="TOU tiers", currency="GBP")
    tariffs.tariff_version_create(
        tariff=tariff,
        valid_from=date(2020, 1, 1),
        rates=[
            ("", 0, Decimal("24.5")),
            ("", 200_000, Decimal("29.75")),
            ("peak", 0, Decimal("38.125")),
            ("night", 0, Decimal("9.8")),
        ],
        windows=(("peak", "weekdays", 16, 19), ("night", "all", 0, 7)),
        standing_charge_per_day_minor=Decimal("45.5"),
        tax_percent=Decimal("5"),
        tax_inclusive=False,
    )
    User = get_user_model()
    devs = []
    for i in range(devices):
        unit = Unit.objects.create(landlord=landlord, property=prop, name=f"U{i}", tariff=tariff)
        tenant = User.objects.create_user(f"bench-{tag}-{i}")
        tenancy = Tenancy.objects.create(
            landlord=landlord, unit=unit, tenant=tenant, start_date=date(2020, 1, 1)
        )
        clearing = landlord_account(landlord=landlord, kind=Account.Kind.CLEARING, currency="GBP")
        ledger_post(
            landlord_id=landlord.pk,
            kind="adjustment",
            idempotency_key=f"open-{i}",
            legs=[
                Leg(
                    debit=clearing,
                    credit=tenant_account(tenancy=tenancy),
                    amount_minor=10**9,
                )
            ],
        )
        device = Device(landlord=landlord, unit=unit, ident=f"bench-{tag}-{i}")
        device.set_secret("x")
        device.save()
        Meter.objects.create(landlord=landlord, unit=unit, device=device, serial=f"B{tag}{i}")
        devs.append(device)
    return devs


def frames_for(device_ids: list[int], readings: int) -> list[tuple[int, list[Any]]]:
    """Each device's readings one minute apart, in frames, interleaved as on a live server."""
    from datetime import UTC, datetime, timedelta

    from meters.readings import ReadingInput

    per_device = readings // len(device_ids)
    start = datetime(2026, 3, 1, tzinfo=UTC)  # includes the DST change on 29 March
    frames = []
    for d_i, device_id in enumerate(device_ids):
        reg = 1000 * d_i
        batch = []
        for k in range(per_device):
            reg += 15 + (k * 7 + d_i) % 40  # 0.9-3.3 kW, varying
            batch.append(
                ReadingInput(seq=k + 1, taken_at=start + timedelta(minutes=k), register_wh=reg)
            )
            if len(batch) == FRAME:
                frames.append((device_id, batch))
                batch = []
        if batch:
            frames.append((device_id, batch))
    frames.sort(key=lambda f: (f[1][0].seq, f[0]))
    return frames


def rate(
    frames: list[tuple[int, list[Any]]], workers: int, stage_seconds: float
) -> tuple[int, float]:
    """Feed the frames through ``readings_record`` in ``workers`` processes, each
    taking whole devices; returns (readings done, seconds)."""
    if workers == 1:
        t0 = time.perf_counter()
        done = feed(frames, deadline=time.monotonic() + stage_seconds)
        return done, time.perf_counter() - t0
    device_ids = sorted({device_id for device_id, _ in frames})
    shares = [[f for f in frames if device_ids.index(f[0]) % workers == w] for w in range(workers)]
    counts, elapsed = in_workers(
        # Each worker's deadline is taken when the workers start together.
        lambda share: feed(share, deadline=time.monotonic() + stage_seconds),
        shares,
        timeout=stage_seconds + 60,
    )
    return sum(counts), elapsed


def child(readings: int, devices: int, worker_counts: list[int], stage_seconds: float) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    from datetime import UTC, datetime

    from django.core.management import call_command
    from django.db import connection, transaction

    from meters.models import Meter, Reading
    from payments.ledger import ledger_verify
    from payments.models import Account

    set_up = time.perf_counter()
    call_command("migrate", verbosity=0)
    fleets = {workers: fleet(f"w{workers}", devices) for workers in worker_counts}
    [raw_device] = fleet("raw", 1)
    print(
        f"{connection.vendor}: {readings // devices * devices:,} readings from {devices} devices"
        f" (set up in {time.perf_counter() - set_up:.1f} s)",
        flush=True,
    )

    figures = {}
    for workers, devs in fleets.items():
        frames = frames_for([d.pk for d in devs], readings)
        total = sum(len(b) for _, b in frames)
        profiler = None
        queries = QueryLog() if os.environ.get("BENCH_SQL") and workers == 1 else None
        if os.environ.get("BENCH_PROFILE") and workers == 1:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        clock = CpuClock() if workers == 1 else None
        if queries is not None:
            with connection.execute_wrapper(queries):
                done, rated = rate(frames, workers, stage_seconds)
            queries.report(readings=done, frames=-(-done // FRAME))
        else:
            done, rated = rate(frames, workers, stage_seconds)
        if profiler is not None:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(40)
        figures[workers] = done / rated
        scaling = (
            f", {figures[workers] / figures[1]:.2f}x one process"
            if workers > 1 and 1 in figures
            else ""
        )
        print(
            f"  validated+rated+posted, {workers} process{'es' if workers > 1 else '  '}"
            f" {figures[workers]:9,.0f} readings/s ({rated:.2f} s){scaling}"
            + reached(done, total, "readings", stage_seconds)
            + (f"\n    {clock.per_thousand(done)}" if clock is not None else ""),
            flush=True,
        )
    figure = figures.get(1) or max(figures.values())
    which = "1 process" if 1 in figures else f"{max(figures, key=figures.__getitem__)} processes"

    # The baselines store the same rows as one process rated, and nothing else.
    frames = frames_for([d.pk for d in fleets[next(iter(fleets))]], readings)
    total = sum(len(b) for _, b in frames)
    meter = Meter.objects.get(device=raw_device)
    t0 = time.perf_counter()
    deadline = time.monotonic() + stage_seconds
    stored = 0
    for device_id, batch in frames:
        if time.monotonic() >= deadline:
            break
        with transaction.atomic():
            Reading.objects.bulk_create(
                [
                    Reading(
                        landlord_id=raw_device.landlord_id,
                        device=raw_device,
                        meter=meter,
                        seq=r.seq + device_id * 10**7,
                        taken_at=r.taken_at,
                        register_wh=r.register_wh,
                    )
                    for r in batch
                ]
            )
        stored += len(batch)
    raw = stored / (time.perf_counter() - t0)
    print(
        f"  baseline: bulk_create, frame-sized transactions {raw:9,.0f} rows/s;"
        f" the figure ({which}) is {figure / raw:.1%} of it"
        + reached(stored, total, "rows", stage_seconds),
        flush=True,
    )
    if connection.vendor == "postgresql":
        cols = "landlord_id, device_id, meter_id, seq, taken_at, register_wh, received_at, quality, rule, note"
        now = datetime.now(UTC)
        clock = CpuClock()
        t0 = time.perf_counter()
        deadline = time.monotonic() + stage_seconds
        copied = 0
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY meters_reading ({cols}) FROM STDIN") as copy,
        ):
            for device_id, batch in frames:
                if time.monotonic() >= deadline:
                    break
                for r in batch:
                    copy.write_row(
                        (
                            raw_device.landlord_id,
                            raw_device.pk,
                            meter.pk,
                            r.seq + device_id * 10**7 + 10**12,
                            r.taken_at,
                            r.register_wh,
                            now,
                            "actual",
                            "",
                            "",
                        )
                    )
                copied += len(batch)
        streamed = copied / (time.perf_counter() - t0)
        print(
            f"  baseline: one streaming COPY of every row     {streamed:9,.0f} rows/s;"
            f" the figure ({which}) is {figure / streamed:.1%} of it (target >= 10%)"
            + reached(copied, total, "rows", stage_seconds)
            + f"\n    {clock.per_thousand(copied)}",
            flush=True,
        )
    problems = ledger_verify()
    revenue = Account.objects.filter(kind=Account.Kind.REVENUE).values_list(
        "balance_minor", flat=True
    )
    print(
        f"  ledger {'ok' if not problems else problems[:3]}; revenue per fleet"
        f" {', '.join(f'{r / 100:.2f}' for r in revenue)} GBP",
        flush=True,
    )
    if problems:
        raise SystemExit(1)


def run(env: dict[str, str], args: argparse.Namespace, limit: float | None) -> int:
    """One backend in a fresh interpreter; killed if it outlives ``limit`` seconds."""
    return run_child(
        [
            __file__,
            "--child",
            "--readings",
            str(args.readings),
            "--devices",
            str(args.devices),
            "--workers",
            str(args.workers),
            "--deadline",
            str(args.deadline),
        ],
        env,
        limit,
    )


def run_postgres(
    url: str, env: dict[str, str], args: argparse.Namespace, limit: float | None
) -> int:
    """On a fresh database next to DATABASE_URL's, dropped afterwards."""
    with postgres_database(url, "_bench") as bench_url:
        return run({**env, "DATABASE_URL": bench_url}, args, limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=None, help="default 30000 (quick: 4000)")
    parser.add_argument("--devices", type=int, default=None, help="default 6 (quick: 4)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="server processes: 1, then this many, for the ratio (default: 1, then 2)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=None,
        help="seconds each measured stage may take (default 300; quick: 8)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, the whole run within one minute"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.readings is None:
        args.readings = 4000 if args.quick else 30_000
    if args.devices is None:
        args.devices = 4 if args.quick else 6
    if args.deadline is None:
        args.deadline = 8.0 if args.quick else 300.0
    # The one-process figure is measured beside any other, so the ratio is printed.
    worker_counts = sorted({1, args.workers or 2})
    if args.child:
        child(args.readings, args.devices, worker_counts, args.deadline)
        return 0
    print(
        f"bench/money.py{' --quick' if args.quick else ''}: {args.readings} readings"
        f" from {args.devices} devices, {FRAME} per frame, in"
        f" {' and '.join(map(str, worker_counts))} process(es);"
        f" {args.deadline:.0f} s per stage at most",
        flush=True,
    )
    end = time.monotonic() + QUICK_BUDGET_SECONDS if args.quick else None
    url = os.environ.get("DATABASE_URL", "")
    # PostgreSQL first: the target is set there, so a quick run never leaves it out.
    backends = ["postgresql", "sqlite"] if url.startswith("postgres") else ["sqlite"]
    status = 0
    # Migrating and creating the fleets, then every measured stage up to its deadline.
    per_run = SETUP_SECONDS + (len(worker_counts) + 2) * (args.deadline + 10)
    took = 0.0
    for backend in backends:
        left = None if end is None else end - time.monotonic()
        if left is not None and left < max(10.0, 1.2 * took):
            print(
                f"{backend}: left out, the rest of the quick run's minute ({left:.0f} s) is too short"
            )
            continue
        limit = per_run if left is None else min(per_run, left)
        started = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                "DATABASE_URL": "",
                "REDIS_URL": "",
                "SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
                "HUEY_SQLITE_PATH": str(Path(tmp) / "huey.sqlite3"),
            }
            if backend == "sqlite":
                status = max(status, run(env, args, limit))
            else:
                status = max(status, run_postgres(url, env, args, limit))
        took = max(took, time.monotonic() - started)
    if not url.startswith("postgres"):
        print("postgresql skipped: set DATABASE_URL=postgres://... to include it")
    print("target: >= 10000 readings/s through validation, rating and posting on PostgreSQL")
    return status


if __name__ == "__main__":
    sys.exit(main())
