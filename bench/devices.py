"""Device socket benchmark, each figure beside a bare ASGI echo server measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/submeter_bench \\
    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/devices.py

Needs PostgreSQL and Redis (the production stack): the server under test is
one uvicorn process, and the credit in the latency figure is posted by this
process, as a payment webhook on another worker would be. The database named
in DATABASE_URL is created if missing and migrated; every run adds its own
"Bench …" landlord, so use a database kept for benchmarks.

Figures (targets from the issue):

1. idle device sockets held by one process, and server memory per socket
   (target 10,000 at no more than twice the echo server's memory per socket);
2. reading frames per second from devices into the database (target 5,000
   per second per process on PostgreSQL), beside echo round trips per second
   with the same clients;
3. credit → relay-on command received by the device, p50/p99 (target p99
   under 250 ms on loopback), beside the echo round-trip p50/p99.

Figure 2 counts frames answered by the server, which answers once a frame's
readings are committed (meters/intake.py); no task consumer runs meanwhile.
Afterwards one task consumer (without periodic tasks) rates the backlog,
and the bench prints how fast (readings rated per second).

Options: --sockets N (default 10000), --frame-devices N (500), --seconds S
(15), --samples N (200), --rating-workers N (2), --only idle|frames|latency
(one figure beside its echo baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECRET = "bench-" + secrets.token_urlsafe(16)
PREFIX = "bench"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "CHANNEL_PREFIX": PREFIX,
        "HUEY_NAME": PREFIX,
        "LOG_LEVEL": "WARNING",
    }


def start_server(app: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
            "--backlog",
            "4096",
        ],
        cwd=ROOT,
        env=server_env(),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{app} did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


# --- Database set-up (this process) ----------------------------------------


def django_setup() -> None:
    os.environ.update(server_env())
    import django

    django.setup()
    from huey.contrib.djhuey import HUEY

    HUEY.flush()  # tasks left queued by an earlier run
    # Payments posted from here are processed inline, as a webhook worker would.
    HUEY.immediate = True


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=server_env(),
        check=True,
    )


def make_fleet(tag: str, count: int, *, prepaid: bool) -> list[tuple[int, str, int]]:
    """``count`` units with a tenant, device and meter; returns (device id, ident, tenancy id)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from landlord.models import Landlord, Property, Tenancy, Unit
    from meters.models import Device, Meter
    from payments.models import Tariff

    User = get_user_model()
    with transaction.atomic():
        landlord = Landlord.objects.create(name=f"Bench {tag} {time.time():.0f}")
        prop = Property.objects.create(
            landlord=landlord,
            name=f"Bench {tag}",
            cutoff_days="1234567",
            cutoff_start=dtime(0),
            cutoff_end=dtime(0),
            cutoff_notice_minutes=0,
        )
        tariff = Tariff.objects.create_flat(
            landlord=landlord, name="Flat", currency="GBP", price_per_kwh_minor=Decimal("30")
        )
        stamp = f"{landlord.pk}"
        users = User.objects.bulk_create(
            [User(username=f"bench-{stamp}-{i}", password="!") for i in range(count)]
        )
        mode = Unit.BillingMode.PREPAID if prepaid else Unit.BillingMode.POSTPAID
        units = Unit.objects.bulk_create(
            [
                Unit(
                    landlord=landlord, property=prop, name=f"U{i}", billing_mode=mode, tariff=tariff
                )
                for i in range(count)
            ]
        )
        tenancies = Tenancy.objects.bulk_create(
            [
                Tenancy(landlord=landlord, unit=u, tenant=t, start_date=datetime.now(UTC).date())
                for u, t in zip(units, users, strict=True)
            ]
        )
        devices = []
        for i, unit in enumerate(units):
            d = Device(landlord=landlord, unit=unit, ident=f"bench-{stamp}-{i}")
            d.set_secret(SECRET)
            devices.append(d)
        devices = Device.objects.bulk_create(devices)
        Meter.objects.bulk_create(
            [
                Meter(landlord=landlord, unit=d.unit, device=d, serial=f"B{stamp}-{i}")
                for i, d in enumerate(devices)
            ]
        )
    return [(d.pk, d.ident, t.pk) for d, t in zip(devices, tenancies, strict=True)]


def auth(ident: str) -> dict[str, str]:
    token = base64.b64encode(f"{ident}:{SECRET}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --- 1. Idle sockets -----------------------------------------------------------


async def hold_sockets(url: str, headers: list[dict[str, str] | None], pid: int) -> tuple[int, int]:
    """Open one socket per entry, keep them open; returns (held, server RSS delta in KiB)."""
    before = rss_kib(pid)
    started = time.monotonic()
    sem = asyncio.Semaphore(50)
    conns: list[websockets.ClientConnection] = []

    async def one(h: dict[str, str] | None) -> None:
        async with sem:
            try:
                ws = await websockets.connect(
                    url,
                    additional_headers=h,
                    open_timeout=60,
                    ping_interval=None,
                    max_queue=4,
                )
            except Exception:
                return
            conns.append(ws)

    await asyncio.gather(*(one(h) for h in headers))
    elapsed = time.monotonic() - started
    await asyncio.sleep(5)  # let the server settle (presence updates, tasks)
    alive = sum(1 for ws in conns if ws.state is websockets.State.OPEN)
    after = rss_kib(pid)
    print(f"  {alive} sockets open on pid {pid} after {elapsed:.0f} s of connecting")
    for ws in conns:
        ws.transport.abort()  # no closing handshakes: the figure is taken
    return alive, after - before


# --- 2. Frames per second --------------------------------------------------------


async def frames_per_second(
    url: str, devices: list[tuple[int, str, int]] | None, clients: int, seconds: float
) -> float:
    """Every client connects first; then each sends one-reading frames, one at a
    time (the next after the answer), for ``seconds``. Returns frames/s."""
    count = 0
    base = datetime.now(UTC) - timedelta(days=1)
    sem = asyncio.Semaphore(50)

    async def connect(i: int) -> websockets.ClientConnection:
        headers = auth(devices[i][1]) if devices else None
        async with sem:
            return await websockets.connect(
                url,
                additional_headers=headers,
                ping_interval=None,
                open_timeout=120,
                compression=None,  # meters do not offer permessage-deflate
            )

    socks = await asyncio.gather(*(connect(i) for i in range(clients)))
    stop = time.monotonic() + seconds

    async def run(ws: websockets.ClientConnection) -> None:
        nonlocal count
        seq = 0
        while time.monotonic() < stop:
            seq += 1
            reading = {
                "seq": seq,
                "taken_at": (base + timedelta(seconds=seq)).isoformat(),
                "register_wh": seq,
            }
            await ws.send(json.dumps([2, f"m{seq}", "MeterValues", {"readings": [reading]}]))
            while True:
                frame = json.loads(await ws.recv())
                if frame[1] == f"m{seq}":
                    # The echo server returns the call itself; the device socket a result.
                    assert frame[0] == 3 or devices is None, frame
                    break
                if frame[0] == 2:  # a server call (e.g. Notify): answer it
                    await ws.send(json.dumps([3, frame[1], {}]))
            count += 1

    started = time.monotonic()
    await asyncio.gather(*(run(ws) for ws in socks))
    elapsed = time.monotonic() - started
    for ws in socks:
        ws.transport.abort()
    return count / elapsed


def rating_drain(device_ids: list[int], workers: int) -> tuple[int, float]:
    """Start a task consumer and time how long it takes to rate what figure 2
    staged; returns (readings rated, seconds)."""
    from meters.models import IncomingReading

    staged = IncomingReading.objects.filter(device_id__in=device_ids)
    backlog = staged.count()
    # No periodic tasks: their sweeps cover the whole benchmark database, which
    # every run grows (earlier runs' devices, left "connected" by a killed
    # server, all turn offline at once), and would take the workers from the
    # rating this figure is about.
    consumer = subprocess.Popen(
        [sys.executable, "manage.py", "run_huey", "-w", str(workers), "-k", "thread", "-n"],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.DEVNULL,
    )
    started = time.monotonic()
    try:
        while staged.exists():
            if consumer.poll() is not None:
                raise RuntimeError("the task consumer exited")
            time.sleep(0.2)
        return backlog, time.monotonic() - started
    finally:
        stop_server(consumer)


# --- 3. Credit → relay-on latency ----------------------------------------------


def pay(tenancy_id: int, amount: int) -> None:
    from django.db import transaction

    from landlord.models import Tenancy
    from payments.models import Payment
    from payments.providers import DevelopmentProvider

    tenancy = Tenancy.objects.get(pk=tenancy_id)
    provider = DevelopmentProvider()
    with transaction.atomic():
        payment = Payment.objects.create(
            landlord_id=tenancy.landlord_id,
            tenancy=tenancy,
            amount_minor=amount,
            currency="GBP",
            provider=provider.name,
        )
        provider.complete(payment=payment, outcome="succeeded")


async def credit_latency(url: str, devices: list[tuple[int, str, int]]) -> list[float]:
    samples: list[float] = []
    for _device_id, ident, tenancy_id in devices:
        async with websockets.connect(
            url, additional_headers=auth(ident), ping_interval=None
        ) as ws:
            relay, gen = "on", 0

            async def answer(frame: list) -> None:
                nonlocal relay, gen
                if frame[2] == "SetRelay":
                    if frame[3]["generation"] >= gen:
                        relay, gen = frame[3]["state"], frame[3]["generation"]
                    await ws.send(json.dumps([3, frame[1], {"state": relay, "generation": gen}]))
                else:
                    await ws.send(json.dumps([3, frame[1], {}]))

            boot = {"protocol_versions": ["1"], "relay": {"state": relay, "generation": gen}}
            await ws.send(json.dumps([2, "b", "BootNotification", boot]))
            while relay != "off":  # no credit: the server switches it off
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame[0] == 2:
                    await answer(frame)
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            paid = asyncio.create_task(asyncio.to_thread(pay, tenancy_id, 1000))
            while relay != "on":
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame[0] == 2 and frame[2] == "SetRelay" and frame[3]["state"] == "on":
                    samples.append((time.perf_counter() - t0) * 1000)
                if frame[0] == 2:
                    await answer(frame)
            await paid
    return samples


async def echo_latency(url: str, n: int) -> list[float]:
    out = []
    async with websockets.connect(url, ping_interval=None) as ws:
        for i in range(n):
            t0 = time.perf_counter()
            await ws.send(json.dumps([2, f"e{i}", "Echo", {}]))
            await ws.recv()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=10000)
    parser.add_argument("--frame-devices", type=int, default=500)
    parser.add_argument("--rating-workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--only",
        choices=["idle", "frames", "latency"],
        help="measure one figure (beside its echo baseline) instead of all three",
    )
    args = parser.parse_args()
    db_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not db_url.startswith("postgres") or not redis_url:
        sys.exit("Set DATABASE_URL (PostgreSQL, a database for benchmarks) and REDIS_URL.")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.sockets + 1000:
        sys.exit(f"The open-file limit ({hard}) is too low for {args.sockets} sockets.")

    want = {args.only} if args.only else {"idle", "frames", "latency"}
    ensure_database(db_url)
    django_setup()
    sizes = {
        "idle": args.sockets if "idle" in want else 0,
        "frames": args.frame_devices if "frames" in want else 0,
        "latency": args.samples if "latency" in want else 0,
    }
    print(f"setting up {sum(sizes.values())} bench devices…")
    idle = make_fleet("idle", sizes["idle"], prepaid=False)
    framers = make_fleet("frames", sizes["frames"], prepaid=False)
    latency = make_fleet("latency", sizes["latency"], prepaid=True)
    # Fresh planner statistics: right after a bulk insert of thousands of
    # units, PostgreSQL still plans for the old table sizes (a tenancy lookup
    # by unit scanned every tenancy by primary key, 6 ms instead of 0.1 ms),
    # which autovacuum would only correct minutes later.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    results: dict[str, tuple[str, str]] = {}

    # Echo baseline
    echo, echo_port = start_server("bench.echo_asgi:app")
    try:
        echo_url = f"ws://127.0.0.1:{echo_port}/"
        if "idle" in want:
            held, delta = asyncio.run(hold_sockets(echo_url, [None] * args.sockets, echo.pid))
            echo_per = delta / max(held, 1)
        if "frames" in want:
            echo_fps = asyncio.run(
                frames_per_second(echo_url, None, args.frame_devices, args.seconds)
            )
        if "latency" in want:
            echo_lat = asyncio.run(echo_latency(echo_url, max(args.samples, 200)))
    finally:
        stop_server(echo)

    app, port = start_server("config.asgi:application")
    try:
        url = f"ws://127.0.0.1:{port}/ws/device/v1"
        if "frames" in want:
            dev_fps = asyncio.run(frames_per_second(url, framers, args.frame_devices, args.seconds))
            # No task consumer ran during figure 2: the server only staged readings.
            rated, drain_s = rating_drain([pk for pk, _i, _t in framers], args.rating_workers)
        if "latency" in want:
            lat = asyncio.run(credit_latency(url, latency))
        if "idle" in want:
            # Last, so the slow teardown of thousands of sockets delays nothing measured.
            dev_held, dev_delta = asyncio.run(
                hold_sockets(url, [auth(ident) for _pk, ident, _t in idle], app.pid)
            )
            dev_per = dev_delta / max(dev_held, 1)
        server_rss = rss_kib(app.pid)
    finally:
        app.kill()
        app.wait()

    if "idle" in want:
        results["idle sockets held (of requested)"] = (
            f"{dev_held} / {args.sockets}",
            f"{held} / {args.sockets}",
        )
        ratio = dev_per / echo_per if echo_per > 0 else float("nan")
        results["server memory per idle socket"] = (
            f"{dev_per:.1f} KiB ({ratio:.2f}x echo)",
            f"{echo_per:.1f} KiB",
        )
    if "frames" in want:
        results[f"reading frames/s ({args.frame_devices} devices, 1 reading each)"] = (
            f"{dev_fps:,.0f}",
            f"{echo_fps:,.0f} round trips/s",
        )
        label = f"readings rated/s afterwards (1 consumer, {args.rating_workers} threads)"
        results[label] = (
            f"{rated / drain_s:,.0f} ({rated:,} in {drain_s:.1f} s)",
            "-",
        )
    if "latency" in want:
        results[f"credit -> relay on, ms ({len(lat)} samples)"] = (
            f"p50 {statistics.median(lat):.1f}, p99 {pct(lat, 99):.1f}, max {max(lat):.1f}",
            f"round trip p50 {statistics.median(echo_lat):.2f}, p99 {pct(echo_lat, 99):.2f}",
        )
    print()
    print(
        f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, server RSS at end {server_rss / 1024:.0f} MiB"
    )
    width = max(len(k) for k in results)
    print(f"{'':<{width}}  {'submeter device socket':<40}  bare ASGI echo (same run)")
    for key, (ours, base) in results.items():
        print(f"{key:<{width}}  {ours:<40}  {base}")
    print()
    print("targets: 10,000 idle sockets at <= 2x echo memory per socket; 5,000 frames/s;")
    print("         credit -> relay-on p99 < 250 ms")


if __name__ == "__main__":
    main()
