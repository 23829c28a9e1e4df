"""Benchmark: readings validated, rated and posted per second, beside a raw bulk insert.

    .venv/bin/python bench/money.py                 # SQLite, and PostgreSQL if DATABASE_URL is set
    .venv/bin/python bench/money.py --readings 20000 --devices 4 --workers 2

For each backend it builds a fresh database (a temporary SQLite file; on
PostgreSQL a database named after DATABASE_URL's with ``_bench`` appended,
dropped afterwards), a landlord with prepaid units on a time-of-use tariff
with tiers and tax, and feeds every device frames of 500 readings one
minute apart through ``meters.services.readings_record`` -- the same call
the device socket makes: duplicate check, validation, slot derivation,
rating, the aggregated ledger debit, supply evaluation and the live
notification, first in one server process, then in two (each with its own
database connection, taking half the devices, as two uvicorn workers
would). The baseline is ``bulk_create`` of the same number of Reading
rows in the same frame-sized transactions, with nothing else, and on
PostgreSQL also COPY of the same rows (how intake stores readings there):
the ratios are what validation, rating and posting cost on top of storing
the rows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
FRAME = 500


def _in_workers(frames: list, workers: int) -> float:
    """Several server processes, each with its own connection, taking the devices' frames."""
    import multiprocessing

    from django.db import connections

    from meters.services import readings_record

    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(workers + 1)
    device_ids = sorted({device_id for device_id, _ in frames})

    def work(w: int) -> None:
        mine = [f for f in frames if device_ids.index(f[0]) % workers == w]
        barrier.wait()
        for device_id, batch in mine:
            readings_record(device_id=device_id, readings=batch)
        connections.close_all()

    procs = [ctx.Process(target=work, args=(w,)) for w in range(workers)]
    for proc in procs:
        proc.start()
    barrier.wait()
    t0 = time.perf_counter()
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - t0
    if any(proc.exitcode for proc in procs):
        raise SystemExit("a worker failed")
    return elapsed


def child(readings: int, devices: int, workers: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    from datetime import UTC, date, datetime, timedelta
    from decimal import Decimal

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0)
    from landlord.models import Landlord, Property, Tenancy, Unit
    from meters.models import Device, Meter, Reading
    from meters.services import ReadingInput, readings_record
    from payments import billing
    from payments.ledger import Leg, landlord_account, ledger_post, ledger_verify, tenant_account
    from payments.models import Account, Tariff

    landlord = Landlord.objects.create(name="Bench")
    prop = Property.objects.create(landlord=landlord, name="Bench House", timezone="Europe/London")
    tariff = Tariff.objects.create(landlord=landlord, name="TOU tiers", currency="GBP")
    billing.tariff_version_create(
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
    for i in range(devices + 1):
        unit = Unit.objects.create(landlord=landlord, property=prop, name=f"U{i}", tariff=tariff)
        tenant = User.objects.create_user(f"bench{i}")
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
        device = Device(landlord=landlord, unit=unit, ident=f"bench-{i}")
        device.set_secret("x")
        device.save()
        Meter.objects.create(landlord=landlord, unit=unit, device=device, serial=f"B{i}")
        devs.append(device)
    raw_device = devs.pop()

    per_device = readings // devices
    start = datetime(2026, 3, 1, tzinfo=UTC)  # includes the DST change on 29 March
    frames = []
    for d_i, device in enumerate(devs):
        reg = 1000 * d_i
        batch = []
        for k in range(per_device):
            reg += 15 + (k * 7 + d_i) % 40  # 0.9-3.3 kW, varying
            batch.append(
                ReadingInput(seq=k + 1, taken_at=start + timedelta(minutes=k), register_wh=reg)
            )
            if len(batch) == FRAME:
                frames.append((device.pk, batch))
                batch = []
        if batch:
            frames.append((device.pk, batch))
    # Devices interleave as they would on a live server.
    frames.sort(key=lambda f: (f[1][0].seq, f[0]))
    total = sum(len(b) for _, b in frames)

    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    if workers == 1:
        t0 = time.perf_counter()
        for device_id, batch in frames:
            readings_record(device_id=device_id, readings=batch)
        rated = time.perf_counter() - t0
    else:
        rated = _in_workers(frames, workers)
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ["BENCH_PROFILE"]).print_stats(40)

    meter = Meter.objects.get(device=raw_device)
    t0 = time.perf_counter()
    for _device_id, batch in frames:
        with transaction.atomic():
            Reading.objects.bulk_create(
                [
                    Reading(
                        landlord_id=landlord.pk,
                        device=raw_device,
                        meter=meter,
                        seq=r.seq + _device_id * 10**7,
                        taken_at=r.taken_at,
                        register_wh=r.register_wh,
                    )
                    for r in batch
                ]
            )
    raw = time.perf_counter() - t0
    copy_rate = ""
    if connection.vendor == "postgresql":
        cols = "landlord_id, device_id, meter_id, seq, taken_at, register_wh, received_at, quality, rule, note"
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        for _device_id, batch in frames:
            with (
                transaction.atomic(),
                connection.cursor() as cursor,
                cursor.cursor.copy(f"COPY meters_reading ({cols}) FROM STDIN") as copy,
            ):
                for r in batch:
                    copy.write_row(
                        (
                            landlord.pk,
                            raw_device.pk,
                            meter.pk,
                            r.seq + _device_id * 10**7 + 10**12,
                            r.taken_at,
                            r.register_wh,
                            now,
                            "actual",
                            "",
                            "",
                        )
                    )
        copied = time.perf_counter() - t0
        copy_rate = f"  raw COPY {total / copied:8.0f}/s (ratio {rated / copied:4.1f}x)"
    problems = ledger_verify()
    postings = Account.objects.filter(kind=Account.Kind.REVENUE).values_list(
        "balance_minor", flat=True
    )
    print(
        f"{connection.vendor:10s} {workers} worker{'s' if workers > 1 else ' '} "
        f"{total:7d} readings  "
        f"validated+rated+posted {total / rated:8.0f}/s ({rated:6.2f} s)  "
        f"raw bulk insert {total / raw:8.0f}/s ({raw:6.2f} s)  "
        f"ratio {rated / raw:4.1f}x{copy_rate}  revenue {next(iter(postings)) / 100:.2f} GBP  "
        f"ledger {'ok' if not problems else problems[:3]}"
    )


def run(env: dict[str, str], readings: int, devices: int, workers: int) -> int:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--readings",
        str(readings),
        "--devices",
        str(devices),
        "--workers",
        str(workers),
    ]
    return subprocess.call(cmd, env={**os.environ, **env}, cwd=ROOT)


def run_postgres(url: str, readings: int, devices: int, workers: int) -> int:
    """On a fresh database next to DATABASE_URL's, dropped afterwards."""
    import psycopg

    parts = urlparse(url)
    name = parts.path.lstrip("/") + "_bench"
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        bench_url = urlunparse(parts._replace(path=f"/{name}"))
        return run({"DATABASE_URL": bench_url, "REDIS_URL": ""}, readings, devices, workers)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=30_000)
    parser.add_argument("--devices", type=int, default=6)
    parser.add_argument(
        "--workers", type=int, default=0, help="server processes (default: 1, then 2)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.readings, args.devices, max(args.workers, 1))
        return 0
    print(
        f"bench/money.py: {args.readings} readings from {args.devices} devices, {FRAME} per frame"
    )
    status = 0
    url = os.environ.get("DATABASE_URL", "")
    for workers in [args.workers] if args.workers else [1, 2]:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                "DATABASE_URL": "",
                "REDIS_URL": "",
                "SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
            }
            status |= run(env, args.readings, args.devices, workers)
        if url.startswith("postgres"):
            status |= run_postgres(url, args.readings, args.devices, workers)
    if not url.startswith("postgres"):
        print("postgresql skipped: set DATABASE_URL=postgres://... to include it")
    print("target: >= 10000 readings/s through validation, rating and posting on PostgreSQL")
    return status


if __name__ == "__main__":
    sys.exit(main())
