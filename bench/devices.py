"""Device socket benchmark, each figure beside a bare ASGI echo server measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/submeter_bench \\
    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/devices.py [--quick]

Needs PostgreSQL and Redis (the production stack): the server under test is
one uvicorn process, and the credit in the latency figure is posted by this
process, as a payment webhook on another worker would be. The database named
in DATABASE_URL is created if missing and migrated; every run adds its own
"Bench …" landlord, so use a database kept for benchmarks.

Figures (targets from the issue):

1. idle device sockets held by one process, and server memory per socket
   (target 10,000 at no more than twice the echo server's memory per socket);
   the same connects make a connect storm (the fleet reconnecting at once,
   ``STORM_AT_ONCE`` handshakes in flight): the time from the first connect
   until the server has marked every device attached (target 10 s per
   worker), beside the time the echo server takes to accept as many sockets;
2. reading frames per second from devices into the database (target: at
   least half the echo's round trips per second with the same clients, on
   PostgreSQL, one process);
3. credit → relay-on command received by the device, p50/p99 (target p99
   under 250 ms on loopback), beside the echo round-trip p50/p99.

Figure 2 counts frames answered by the server, which answers once a frame's
readings are committed (meters/intake.py); no task consumer runs meanwhile.
Afterwards one task consumer (without periodic tasks) rates the backlog,
and the bench prints how fast (readings rated per second).

Every stage has a deadline (``--deadline``, and within ``--quick``'s minute a
share of what is left): it stops there and prints what it reached, as soon
as it ends. Before starting, the sizes are checked against this machine's
open-file limit, memory, local ports, Redis's free clients and PostgreSQL's
free connections; a size that does not fit is scaled down, saying why. A run
that still hangs is stopped by a watchdog that prints where (exit status 2).

Options: --sockets N (default 10000), --frame-devices N (500), --seconds S
(15), --samples N (200), --rating-workers N (2), --deadline S (300 per
stage), --only idle|frames|latency (one figure beside its echo baseline),
--quick (small sizes, the whole run within a minute: what CI runs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import faulthandler
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECRET = "bench-" + secrets.token_urlsafe(16)
PREFIX = "bench"
STALLED = 2
# Beside one descriptor per socket, each process (this one and the server)
# needs some for its database and Redis connections, threads and pipes.
FD_RESERVE = 1000
# Memory one idle socket costs on this machine in all: the device server
# (about 75 KiB), this client and both ends' kernel buffers. Planning figure,
# generous on purpose; at most half of the available memory is planned for.
MEMORY_PER_SOCKET_KIB = 250
# Handshakes in flight at once while a fleet reconnects (figure 1, both servers).
STORM_AT_ONCE = 500
QUICK = {"sockets": 300, "frame_devices": 30, "seconds": 3.0, "samples": 10}
QUICK_SECONDS = 50.0
# How the stages share a --quick run's minute (each at most --deadline).
STAGE_WEIGHTS = {
    "echo idle": 1.0,
    "echo frames": 1.2,
    "echo latency": 0.3,
    "frames": 1.5,
    "rating": 2.0,
    "latency": 2.0,
    "idle": 1.5,
}
_children: list[subprocess.Popen[bytes]] = []


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far, all threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    _children.append(proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{app} exited with status {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{app} did not start within 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def watchdog(seconds: float) -> None:
    """End a run that outlives every stage's deadline, printing where it hangs."""

    def fire() -> None:
        print(
            f"\nSTALLED: still running after {seconds:.0f} s, past every stage's deadline."
            " Where each thread is:",
            flush=True,
        )
        faulthandler.dump_traceback(all_threads=True)
        for proc in _children:
            with contextlib.suppress(OSError):
                proc.kill()
        os._exit(STALLED)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


class Deadlines:
    """Each stage's deadline: ``per_stage`` seconds at most and, when the whole
    run has a time limit, the stage's share of the time left."""

    def __init__(self, per_stage: float, end: float | None, stages: list[str]) -> None:
        self.per_stage = per_stage
        self.end = end
        self.weights = {name: STAGE_WEIGHTS[name] for name in stages}

    def start(self, stage: str) -> float:
        now = time.monotonic()
        weight = self.weights.pop(stage)
        limit = self.per_stage
        if self.end is not None:
            share = (self.end - now) * weight / (weight + sum(self.weights.values()))
            limit = min(limit, max(share, 2.0))
        return now + limit


# --- What this machine allows ----------------------------------------------------


@dataclass
class Machine:
    open_files: int  # per process: this one and the servers it starts
    memory_kib: int  # available now
    local_ports: int
    redis_free: int | None  # clients Redis still accepts (None: not known)
    redis_max: int | None
    pg_free: int | None  # connections PostgreSQL still accepts
    pg_max: int | None


def memory_available_kib() -> int:
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    with contextlib.suppress(OSError, ValueError):  # a container's own limit (cgroup v2)
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text())
            available = min(available, (int(limit) - used) // 1024)
    return available


def redis_clients(url: str) -> tuple[int | None, int | None]:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=5)
        maxclients = int(str(client.config_get("maxclients")["maxclients"]))
        connected = int(client.info("clients")["connected_clients"])
    except redis.RedisError:
        return None, None  # CONFIG may be disabled on a managed Redis
    return maxclients - connected, maxclients


def pg_connections(url: str) -> tuple[int | None, int | None]:
    import psycopg

    admin = urlparse(url)._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int,"
                " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            ).fetchone()
    except psycopg.Error:
        return None, None
    assert row is not None
    most, reserved, used = row
    return most - reserved - used, most


def machine(db_url: str, redis_url: str) -> Machine:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    else:
        hard = 1 << 20
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    redis_free, redis_max = redis_clients(redis_url)
    pg_free, pg_max = pg_connections(db_url)
    return Machine(
        hard,
        memory_available_kib(),
        high - low + 1,
        redis_free,
        redis_max,
        pg_free,
        pg_max,
    )


def fit_sockets(wanted: int, m: Machine) -> tuple[int, list[str]]:
    """How many sockets one process can hold here, and why that is fewer than wanted."""
    notes = []
    limits = {
        f"the open-file limit is {m.open_files:,} (ulimit -n) and the server and this"
        f" client each need one per socket plus about {FD_RESERVE}": m.open_files - FD_RESERVE,
        f"{m.memory_kib // 1024:,} MiB of memory is available and a socket costs about"
        f" {MEMORY_PER_SOCKET_KIB} KiB in all (half of it is planned for)": m.memory_kib
        // 2
        // MEMORY_PER_SOCKET_KIB,
        f"{m.local_ports:,} local ports (net.ipv4.ip_local_port_range) for the client's"
        " connections": m.local_ports - 1000,
    }
    fits = wanted
    for why, most in limits.items():
        if most < fits:
            fits = max(most, 0)
            notes.append(f"{why}: {fits:,} instead of {wanted:,}")
    return fits, notes


def fit_connections(m: Machine, rating_workers: int) -> tuple[dict[str, str], list[str]]:
    """Server settings that keep this run within Redis's and PostgreSQL's free connections."""
    env: dict[str, str] = {}
    notes = []
    # The server's channel layer pool and cache, its task producer, the
    # consumer's threads, this process.
    layer = int(os.environ.get("CHANNEL_REDIS_MAX_CONNECTIONS", "100"))
    others = rating_workers + 12
    if m.redis_free is not None and m.redis_free < layer + others:
        if m.redis_free < others + 4:
            raise SystemExit(
                f"Redis accepts only {m.redis_free} more clients (maxclients {m.redis_max});"
                f" this benchmark needs at least {others + 4}."
            )
        layer = m.redis_free - others
        env["CHANNEL_REDIS_MAX_CONNECTIONS"] = str(layer)
        notes.append(
            f"Redis accepts {m.redis_free} more clients (maxclients {m.redis_max}): the"
            f" server's channel layer gets at most {layer} connections"
            " (CHANNEL_REDIS_MAX_CONNECTIONS) instead of 100"
        )
    # The server's pool, the consumer's pool, this process's pool.
    pool = int(os.environ.get("DATABASE_POOL_MAX", "10"))
    if m.pg_free is not None and m.pg_free < 3 * pool:
        if m.pg_free < 9:
            raise SystemExit(
                f"PostgreSQL accepts only {m.pg_free} more connections (max_connections"
                f" {m.pg_max}); this benchmark needs at least 9."
            )
        pool = m.pg_free // 3
        env["DATABASE_POOL_MAX"] = str(pool)
        env["DATABASE_POOL_MIN"] = str(min(2, pool))
        notes.append(
            f"PostgreSQL accepts {m.pg_free} more connections (max_connections {m.pg_max}):"
            f" each process's pool opens at most {pool} (DATABASE_POOL_MAX) instead of 10"
        )
    return env, notes


# --- Database set-up (this process) ----------------------------------------


def django_setup() -> None:
    os.environ.update(server_env())
    import django

    django.setup()
    from huey.contrib.djhuey import HUEY

    from config.cache import shared
    from meters.readings import RATE_QUEUED_KEY

    HUEY.flush()  # tasks left queued by an earlier run
    # ... and the flag that stands for one of them: left set, no rating task
    # would be queued for this run's readings until it expired.
    shared().delete(RATE_QUEUED_KEY)
    # Payments posted from here are processed inline, as a webhook worker would.
    HUEY.immediate = True


@contextlib.contextmanager
def task_queue() -> Iterator[Any]:
    """The Redis queue the consumers read, instead of this process's inline one."""
    from huey.contrib.djhuey import HUEY

    HUEY.immediate = False
    try:
        yield HUEY
    finally:
        HUEY.immediate = True


def ensure_database(url: str, timeout: float) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=server_env(),
        check=True,
        timeout=timeout,
    )


def make_fleet(tag: str, count: int, *, prepaid: bool) -> list[tuple[int, str, int]]:
    """``count`` units with a tenant, device and meter; returns (device id, ident, tenancy id)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from landlord.models import Landlord, Property, Tenancy, Unit
    from meters.models import Device, Meter
    from payments.models import Tariff

    if not count:
        return []
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


def why(exc: BaseException) -> str:
    """A short name for a failed connect or socket, to count them by."""
    if isinstance(exc, websockets.InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, websockets.ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def counted(failures: Counter[str]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in failures.most_common())


def left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


async def connect_all(
    url: str,
    headers: list[dict[str, str] | None],
    deadline: float,
    failures: Counter[str],
    at_once: int = 50,
    **options: object,
) -> list[websockets.ClientConnection]:
    """Open one socket per entry, ``at_once`` at a time, until done or ``deadline``."""
    sem = asyncio.Semaphore(at_once)
    conns: list[websockets.ClientConnection] = []

    async def one(h: dict[str, str] | None) -> None:
        async with sem:
            if left(deadline) <= 0:
                failures["not tried before the deadline"] += 1
                return
            try:
                ws = await websockets.connect(
                    url,
                    additional_headers=h,
                    open_timeout=min(60.0, left(deadline)),
                    ping_interval=None,
                    **options,  # type: ignore[arg-type]
                )
            except Exception as exc:
                failures[why(exc)] += 1
                return
            conns.append(ws)

    tasks = [asyncio.create_task(one(h)) for h in headers]
    # Every connect is bounded by the deadline; the extra second only covers
    # closing the last handshakes.
    _done, pending = await asyncio.wait(tasks, timeout=left(deadline) + 1)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return conns


# --- 1. Idle sockets -----------------------------------------------------------


@dataclass
class Idle:
    held: int = 0
    wanted: int = 0
    memory_kib: int = 0
    seconds: float = 0.0
    started_at: float = 0.0  # time.monotonic() of the first connect
    cpu_started: float = 0.0  # the server's CPU seconds then
    cpu_s: float = 0.0  # the server's CPU seconds while the sockets connected
    failures: Counter[str] = field(default_factory=Counter)
    stopped: bool = False


async def hold_sockets(
    url: str,
    headers: list[dict[str, str] | None],
    pid: int,
    deadline: float,
    settled: Callable[[float, int], Awaitable[None]],
    at_once: int = 50,
) -> Idle:
    """Open one socket per entry, ``at_once`` handshakes at a time, and keep them
    open; the server's memory grows by ``memory_kib``."""
    result = Idle(wanted=len(headers))
    before = rss_kib(pid)
    result.cpu_started = cpu_seconds(pid)
    started = result.started_at = time.monotonic()
    conns = await connect_all(url, headers, deadline, result.failures, at_once, max_queue=4)
    result.seconds = time.monotonic() - started
    result.cpu_s = cpu_seconds(pid) - result.cpu_started
    result.stopped = len(conns) < len(headers) and left(deadline) <= 0
    await settled(deadline, len(conns))  # the server's work for them, before its memory is read
    for ws in conns:
        if ws.state is websockets.State.OPEN:
            result.held += 1
        else:  # accepted, then closed by the server (e.g. 4429)
            result.failures[f"closed {ws.close_code}"] += 1
    result.memory_kib = rss_kib(pid) - before
    for ws in conns:
        ws.transport.abort()  # no closing handshakes: the figure is taken
    await asyncio.sleep(0)  # let the aborts run before the loop closes
    return result


def idle_line(name: str, r: Idle) -> str:
    per = r.memory_kib / r.held if r.held else float("nan")
    line = (
        f"{name}: {r.held:,} of {r.wanted:,} sockets open after {r.seconds:.0f} s of"
        f" connecting; server memory +{r.memory_kib / 1024:.0f} MiB ({per:.1f} KiB per socket)"
    )
    if r.failures:
        line += f"; not held: {counted(r.failures)}"
    if r.stopped:
        line += " [stopped at the deadline]"
    return line


def storm_seconds(r: Idle, attached_at: list[float]) -> float | None:
    """From the first connect until every open socket's device was marked
    connected (None: not by the deadline)."""
    return attached_at[0] - r.started_at if attached_at else None


def storm_cpu(r: Idle, attached_cpu: list[float], echo: Idle) -> str:
    """The server's CPU seconds for the storm (until every device was attached),
    beside the echo's for accepting as many sockets: unlike the wall clock,
    barely moved by other work on the machine."""
    if not attached_cpu or not r.held:
        return ""
    used = attached_cpu[0] - r.cpu_started
    per = used / r.held * 1000
    echo_per = echo.cpu_s / echo.held * 1000 if echo.held else float("nan")
    return (
        f"; server CPU {used:.1f} s ({per:.2f} ms per device; echo {echo.cpu_s:.1f} s,"
        f" {echo_per:.2f} ms per socket)"
    )


def storm_text(r: Idle, attached_at: list[float], echo: Idle, attached_cpu: list[float]) -> str:
    took = storm_seconds(r, attached_at)
    if took is None:
        return (
            f"{r.held:,} devices NOT all attached by the deadline (target 10 s);"
            f" echo accepted {echo.held:,} sockets in {echo.seconds:.1f} s"
        )
    ratio = took / echo.seconds if echo.seconds > 0 else float("nan")
    partly = f" (only {r.held:,} of {r.wanted:,} connected)" if r.held < r.wanted else ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{r.held:,} devices attached in {took:.1f} s{partly}, per worker; target 10 s"
        f" (echo accepted {echo.held:,} sockets in {echo.seconds:.1f} s in the same run:"
        f" {ratio:.1f}x echo){storm_cpu(r, attached_cpu, echo)}; load average {load}"
    )


def storm_short(r: Idle, attached_at: list[float], echo: Idle) -> str:
    took = storm_seconds(r, attached_at)
    if took is None:
        return f"{r.held:,} not all attached by the deadline"
    ratio = took / echo.seconds if echo.seconds > 0 else float("nan")
    partly = f" of {r.wanted:,}" if r.held < r.wanted else ""
    return f"{r.held:,}{partly} attached in {took:.1f} s ({ratio:.1f}x echo)"


# --- 2. Frames per second --------------------------------------------------------


@dataclass
class Frames:
    rate: float = 0.0
    answered: int = 0
    clients: int = 0
    wanted: int = 0
    seconds: float = 0.0
    unanswered: int = 0
    failures: Counter[str] = field(default_factory=Counter)


async def frames_per_second(
    url: str,
    devices: list[tuple[int, str, int]] | None,
    clients: int,
    seconds: float,
    deadline: float,
) -> Frames:
    """Every client connects first; then each sends one-reading frames, one at a
    time (the next after the answer), for ``seconds`` (less if the deadline
    comes first). A frame not answered within a few seconds of the end is
    counted as unanswered."""
    result = Frames(wanted=clients)
    base = datetime.now(UTC) - timedelta(days=1)
    grace = min(5.0, max(seconds / 3, 1.0))
    connect_by = max(deadline - seconds - grace, time.monotonic() + min(5.0, left(deadline) / 2))
    headers = [auth(devices[i][1]) if devices else None for i in range(clients)]
    connected = await connect_all(
        url,
        headers,
        connect_by,
        result.failures,
        compression=None,  # meters do not offer permessage-deflate
    )

    async def ready(ws: websockets.ClientConnection) -> websockets.ClientConnection | None:
        """One answered Heartbeat: the server has finished taking this socket in
        (its connect bookkeeping comes first), so the timed frames measure
        intake only."""
        try:
            async with asyncio.timeout(max(left(connect_by), 1.0)):
                await ws.send(json.dumps([2, "ready", "Heartbeat", {}]))
                while json.loads(await ws.recv())[1] != "ready":
                    pass
        except (TimeoutError, websockets.ConnectionClosed) as exc:
            result.failures[f"not ready: {why(exc)}"] += 1
            ws.transport.abort()
            return None
        return ws

    socks = [ws for ws in await asyncio.gather(*(ready(ws) for ws in connected)) if ws]
    result.clients = len(socks)
    started = time.monotonic()
    stop = min(started + seconds, deadline - grace)
    answer_by = stop + grace

    async def run(ws: websockets.ClientConnection) -> None:
        seq = 0
        while time.monotonic() < stop:
            seq += 1
            reading = {
                "seq": seq,
                "taken_at": (base + timedelta(seconds=seq)).isoformat(),
                "register_wh": seq,
            }
            try:
                async with asyncio.timeout(left(answer_by)):
                    await ws.send(
                        json.dumps([2, f"m{seq}", "MeterValues", {"readings": [reading]}])
                    )
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame[1] == f"m{seq}":
                            break
                        if frame[0] == 2:  # a server call (e.g. Notify): answer it
                            await ws.send(json.dumps([3, frame[1], {}]))
            except TimeoutError:
                result.unanswered += 1
                return
            except websockets.ConnectionClosed as exc:
                result.failures[why(exc)] += 1
                return
            # The echo server returns the call itself; the device socket a result.
            if frame[0] == 3 or devices is None:
                result.answered += 1
            else:
                result.failures[f"CallError {frame[2]}"] += 1

    await asyncio.gather(*(run(ws) for ws in socks))
    result.seconds = time.monotonic() - started
    result.rate = result.answered / result.seconds if result.seconds else 0.0
    for ws in socks:
        ws.transport.abort()
    await asyncio.sleep(0)
    return result


def frames_line(name: str, r: Frames, seconds: float) -> str:
    line = (
        f"{name}: {r.rate:,.0f} frames/s answered ({r.answered:,} from {r.clients} of"
        f" {r.wanted} clients in {r.seconds:.1f} s)"
    )
    if r.seconds < seconds - 0.5:
        line += " [shortened by the deadline]"
    if r.unanswered:
        line += f"; {r.unanswered} frames still unanswered at the end"
    if r.failures:
        line += f"; {counted(r.failures)}"
    return line


@dataclass
class Drain:
    backlog: int = 0
    rated: int = 0
    seconds: float = 0.0
    devices_left: int = 0
    reruns: int = 0
    disconnects_s: float = 0.0
    still_connected: int = 0


# How often the drain stands in for the periodic rating run, which the
# consumer here does not schedule (production runs it every minute).
RERUN_SECONDS = 5.0


def disconnects_done(device_ids: list[int], deadline: float) -> tuple[float, int]:
    """Wait until the server has marked the closed sockets' devices disconnected.

    The server does that bookkeeping one socket at a time, well after the
    clients are gone; rating beside it would share the CPU with it and find
    device rows it holds locked. Returns (seconds waited, devices still
    marked connected at ``deadline``).
    """
    from meters.models import Device

    started = time.monotonic()
    connected = Device.objects.filter(pk__in=device_ids, connected=True)
    while (count := connected.count()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return time.monotonic() - started, count


def rating_drain(device_ids: list[int], workers: int, deadline: float) -> Drain:
    """Start a task consumer and time how long it takes to rate what figure 2
    staged, up to ``deadline``.

    A rating task skips a device whose row another transaction holds (see
    ``readings_rate_pending``) and leaves its readings to the periodic run;
    the drain queues that run itself every few seconds while readings are
    left, as the periodic schedule would, and counts how often it did.
    """
    from meters.models import IncomingReading
    from meters.tasks import readings_rate_task

    staged = IncomingReading.objects.filter(device_id__in=device_ids)
    result = Drain(backlog=staged.count())
    # No periodic tasks: their sweeps cover the whole benchmark database, which
    # every run grows (earlier runs' devices, left "connected" by a killed
    # server, all turn offline at once), and would take the workers from the
    # rating this figure is about.
    with tempfile.TemporaryFile() as log:
        consumer = subprocess.Popen(
            [sys.executable, "manage.py", "run_huey", "-w", str(workers), "-k", "thread", "-n"],
            cwd=ROOT,
            env=server_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _children.append(consumer)
        started = time.monotonic()
        rerun_at = started + RERUN_SECONDS
        try:
            while staged.exists() and time.monotonic() < deadline:
                if consumer.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"the task consumer exited:\n{tail}")
                if time.monotonic() >= rerun_at:
                    rerun_at = time.monotonic() + RERUN_SECONDS
                    with task_queue() as queue:
                        if not queue.pending_count():
                            readings_rate_task.enqueue()
                            result.reruns += 1
                time.sleep(0.2)
            result.seconds = time.monotonic() - started
            result.rated = result.backlog - staged.count()
            result.devices_left = staged.values("device_id").distinct().count()
            return result
        finally:
            stop_server(consumer)


def drain_line(r: Drain, workers: int, deadline_s: float) -> str:
    rate = r.rated / r.seconds if r.seconds else 0.0
    line = (
        f"device: {rate:,.0f} readings rated/s afterwards ({r.rated:,} of {r.backlog:,} in"
        f" {r.seconds:.1f} s, 1 consumer with {workers} threads, including its start)"
    )
    if r.reruns:
        line += f"; queued the periodic rating run {r.reruns} time(s) while readings were left"
    if r.rated < r.backlog:
        line += (
            f" [stopped at the {deadline_s:.0f} s deadline: {r.backlog - r.rated:,} readings"
            f" of {r.devices_left} devices still staged]"
        )
    return line


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


@dataclass
class Latency:
    samples: list[float] = field(default_factory=list)
    wanted: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    stopped: bool = False


async def credit_latency(url: str, devices: list[tuple[int, str, int]], deadline: float) -> Latency:
    """Per device: connect, boot, wait for the server to switch the unpaid unit
    off, pay, time until the relay-on command arrives. Each sample gets 30 s at
    most; no sample starts after ``deadline``."""
    result = Latency(wanted=len(devices))
    for _device_id, ident, tenancy_id in devices:
        if left(deadline) <= 0:
            result.stopped = True
            break
        waiting_for = "the connection"
        try:
            async with asyncio.timeout(max(5.0, min(30.0, left(deadline)))):
                async with websockets.connect(
                    url, additional_headers=auth(ident), ping_interval=None
                ) as ws:
                    relay, gen = "on", 0

                    async def answer(frame: list, ws: websockets.ClientConnection = ws) -> None:
                        nonlocal relay, gen
                        if frame[2] == "SetRelay":
                            if frame[3]["generation"] >= gen:
                                relay, gen = frame[3]["state"], frame[3]["generation"]
                            reply = {"state": relay, "generation": gen}
                            await ws.send(json.dumps([3, frame[1], reply]))
                        else:
                            await ws.send(json.dumps([3, frame[1], {}]))

                    boot = {
                        "protocol_versions": ["1"],
                        "relay": {"state": relay, "generation": gen},
                    }
                    await ws.send(json.dumps([2, "b", "BootNotification", boot]))
                    waiting_for = "relay off (no credit)"
                    while relay != "off":
                        frame = json.loads(await ws.recv())
                        if frame[0] == 2:
                            await answer(frame)
                    await asyncio.sleep(0.05)
                    waiting_for = "relay on after the payment"
                    t0 = time.perf_counter()
                    paid = asyncio.create_task(asyncio.to_thread(pay, tenancy_id, 1000))
                    while relay != "on":
                        frame = json.loads(await ws.recv())
                        if frame[0] == 2 and frame[2] == "SetRelay" and frame[3]["state"] == "on":
                            result.samples.append((time.perf_counter() - t0) * 1000)
                        if frame[0] == 2:
                            await answer(frame)
                    await paid
        except TimeoutError:
            result.failures[f"no {waiting_for} in time"] += 1
        except (OSError, websockets.WebSocketException) as exc:
            result.failures[f"{why(exc)} waiting for {waiting_for}"] += 1
    return result


async def echo_latency(url: str, n: int, deadline: float) -> list[float]:
    out: list[float] = []
    async with asyncio.timeout(left(deadline) + 5):
        async with websockets.connect(url, ping_interval=None) as ws:
            for i in range(n):
                if left(deadline) <= 0:
                    break
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


def latency_text(values: list[float], digits: int) -> str:
    if not values:
        return "no samples"
    return (
        f"p50 {statistics.median(values):.{digits}f}, p99 {pct(values, 99):.{digits}f},"
        f" max {max(values):.{digits}f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sockets", type=int, default=None)
    parser.add_argument("--frame-devices", type=int, default=None)
    parser.add_argument("--rating-workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="seconds any one stage may take"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small sizes ({', '.join(f'{k} {v:g}' for k, v in QUICK.items())}),"
        " the whole run within a minute",
    )
    parser.add_argument(
        "--only",
        choices=["idle", "frames", "latency"],
        help="measure one figure (beside its echo baseline) instead of all three",
    )
    args = parser.parse_args()
    full = {"sockets": 10000, "frame_devices": 500, "seconds": 15.0, "samples": 200}
    for key, value in (QUICK if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    db_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not db_url.startswith("postgres") or not redis_url:
        sys.exit("Set DATABASE_URL (PostgreSQL, a database for benchmarks) and REDIS_URL.")
    started = time.monotonic()
    want = {args.only} if args.only else {"idle", "frames", "latency"}

    m = machine(db_url, redis_url)
    print(
        f"bench/devices.py{' --quick' if args.quick else ''}: cpus {os.cpu_count()},"
        f" python {sys.version.split()[0]}, open files {m.open_files:,} per process,"
        f" memory available {m.memory_kib // 1024:,} MiB, Redis clients free"
        f" {m.redis_free if m.redis_free is not None else '?'} of {m.redis_max or '?'},"
        f" PostgreSQL connections free {m.pg_free if m.pg_free is not None else '?'}"
        f" of {m.pg_max or '?'}",
        flush=True,
    )
    notes: list[str] = []
    if "idle" in want:
        args.sockets, why_fewer = fit_sockets(args.sockets, m)
        notes += [f"idle sockets: {n}" for n in why_fewer]
    if "frames" in want:
        args.frame_devices, why_fewer = fit_sockets(args.frame_devices, m)
        notes += [f"frame clients: {n}" for n in why_fewer]
    overrides, why_fewer = fit_connections(m, args.rating_workers)
    os.environ.update(overrides)
    for note in notes + why_fewer:
        print(f"  scaled down: {note}", flush=True)

    stages = []
    if "idle" in want:
        stages += ["echo idle", "idle"]
    if "frames" in want:
        stages += ["echo frames", "frames", "rating"]
    if "latency" in want:
        stages += ["echo latency", "latency"]
    # A quick run's stages share what its minute has left after the set-up.
    deadlines = Deadlines(args.deadline, started + QUICK_SECONDS if args.quick else None, stages)
    setup_s = 20.0 if args.quick else 600.0
    # Beyond this, something waits without a deadline: say where and stop.
    watchdog(
        (QUICK_SECONDS + setup_s + 30)
        if args.quick
        else setup_s + len(stages) * (args.deadline + 60)
    )
    settle = 1.0 if args.quick else 3.0

    async def echo_settled(deadline: float, opened: int) -> None:
        await asyncio.sleep(settle)

    attached_at: list[float] = []  # when every open socket's device was marked connected
    attached_cpu: list[float] = []  # the server's CPU seconds then

    async def devices_settled(deadline: float, opened: int) -> None:
        """Until the server has marked each open socket's device connected (its
        connect bookkeeping), at most until the deadline, then a moment more."""
        from meters.models import Device

        connected = Device.objects.filter(pk__in=[pk for pk, _i, _t in idle], connected=True)
        while await asyncio.to_thread(connected.count) < opened:
            if left(deadline) <= 0:
                break
            await asyncio.sleep(0.1)
        else:
            attached_at.append(time.monotonic())
            attached_cpu.append(cpu_seconds(app.pid))
        await asyncio.sleep(settle)

    ensure_database(db_url, timeout=setup_s if not args.quick else 120)
    django_setup()
    sizes = {
        "idle": args.sockets if "idle" in want else 0,
        "frames": args.frame_devices if "frames" in want else 0,
        "latency": args.samples if "latency" in want else 0,
    }
    print(f"setting up {sum(sizes.values())} bench devices…", flush=True)
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
    print(f"set up in {time.monotonic() - started:.0f} s", flush=True)

    # Echo baseline
    echo, echo_port = start_server("bench.echo_asgi:app")
    try:
        echo_url = f"ws://127.0.0.1:{echo_port}/"
        if "idle" in want:
            d = deadlines.start("echo idle")
            echo_idle = asyncio.run(
                hold_sockets(
                    echo_url, [None] * args.sockets, echo.pid, d, echo_settled, STORM_AT_ONCE
                )
            )
            print(idle_line("echo", echo_idle), flush=True)
        if "frames" in want:
            d = deadlines.start("echo frames")
            echo_frames = asyncio.run(
                frames_per_second(echo_url, None, args.frame_devices, args.seconds, d)
            )
            print(frames_line("echo", echo_frames, args.seconds), flush=True)
        if "latency" in want:
            d = deadlines.start("echo latency")
            echo_lat = asyncio.run(echo_latency(echo_url, max(args.samples, 200), d))
            print(f"echo: round trip ms {latency_text(echo_lat, 2)}", flush=True)
    finally:
        stop_server(echo)

    app, port = start_server("config.asgi:application")
    try:
        url = f"ws://127.0.0.1:{port}/ws/device/v1"
        if "frames" in want:
            d = deadlines.start("frames")
            dev_frames = asyncio.run(
                frames_per_second(url, framers, args.frame_devices, args.seconds, d)
            )
            print(frames_line("device", dev_frames, args.seconds), flush=True)
            # No task consumer ran during figure 2: the server only staged readings.
            d = deadlines.start("rating")
            framer_ids = [pk for pk, _i, _t in framers]
            waited, still = disconnects_done(
                framer_ids, time.monotonic() + (d - time.monotonic()) / 3
            )
            print(
                f"device: the server's bookkeeping of the {dev_frames.clients} closed sockets took"
                f" {waited:.1f} s"
                + (f" [{still} devices still marked connected]" if still else ""),
                flush=True,
            )
            drain_s = d - time.monotonic()
            drain = rating_drain(framer_ids, args.rating_workers, d)
            print(drain_line(drain, args.rating_workers, drain_s), flush=True)
        if "latency" in want:
            d = deadlines.start("latency")
            lat = asyncio.run(credit_latency(url, latency, d))
            line = f"device: credit -> relay on ms {latency_text(lat.samples, 1)} ({len(lat.samples)} of {lat.wanted} samples)"
            if lat.stopped:
                line += " [stopped at the deadline]"
            if lat.failures:
                line += f"; failed: {counted(lat.failures)}"
            print(line, flush=True)
        if "idle" in want:
            # Last, so the slow teardown of thousands of sockets delays nothing measured.
            d = deadlines.start("idle")
            dev_idle = asyncio.run(
                hold_sockets(
                    url,
                    [auth(ident) for _pk, ident, _t in idle],
                    app.pid,
                    d,
                    devices_settled,
                    STORM_AT_ONCE,
                )
            )
            print(idle_line("device", dev_idle), flush=True)
            storm = storm_text(dev_idle, attached_at, echo_idle, attached_cpu)
            print(f"device: connect storm: {storm}", flush=True)
        server_rss = rss_kib(app.pid)
    finally:
        app.kill()
        app.wait()

    results: dict[str, tuple[str, str]] = {}
    if "idle" in want:
        results["idle sockets held (of requested)"] = (
            f"{dev_idle.held} / {dev_idle.wanted}",
            f"{echo_idle.held} / {echo_idle.wanted}",
        )
        dev_per = dev_idle.memory_kib / dev_idle.held if dev_idle.held else float("nan")
        echo_per = echo_idle.memory_kib / echo_idle.held if echo_idle.held else float("nan")
        ratio = dev_per / echo_per if echo_per > 0 else float("nan")
        results["server memory per idle socket"] = (
            f"{dev_per:.1f} KiB ({ratio:.2f}x echo)",
            f"{echo_per:.1f} KiB",
        )
        results[f"connect storm ({STORM_AT_ONCE} handshakes at once)"] = (
            storm_short(dev_idle, attached_at, echo_idle),
            f"{echo_idle.held:,} sockets accepted in {echo_idle.seconds:.1f} s",
        )
    if "frames" in want:
        share = dev_frames.rate / echo_frames.rate if echo_frames.rate else float("nan")
        results[f"reading frames/s ({dev_frames.clients} devices, 1 reading each)"] = (
            f"{dev_frames.rate:,.0f} ({share:.0%} of echo)",
            f"{echo_frames.rate:,.0f} round trips/s",
        )
        label = f"readings rated/s afterwards (1 consumer, {args.rating_workers} threads)"
        results[label] = (
            f"{drain.rated / drain.seconds if drain.seconds else 0:,.0f}"
            f" ({drain.rated:,} of {drain.backlog:,} in {drain.seconds:.1f} s)",
            "-",
        )
    if "latency" in want:
        results[f"credit -> relay on, ms ({len(lat.samples)} samples)"] = (
            latency_text(lat.samples, 1),
            f"round trip {latency_text(echo_lat, 2)}",
        )
    print()
    print(
        f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, server RSS at end"
        f" {server_rss / 1024:.0f} MiB, {time.monotonic() - started:.0f} s in all"
    )
    width = max(len(k) for k in results)
    print(f"{'':<{width}}  {'submeter device socket':<40}  bare ASGI echo (same run)")
    for key, (ours, base) in results.items():
        print(f"{key:<{width}}  {ours:<40}  {base}")
    print()
    print("targets: 10,000 idle sockets at <= 2x echo memory per socket; frames/s >= 50% of echo;")
    print("         credit -> relay-on p99 < 250 ms; 10,000 devices attached in <= 10 s per worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
