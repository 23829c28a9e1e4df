"""Benchmark: the tenant's home page under 100 tenants at once, beside a bare Django view.

    .venv/bin/python bench/tenant.py               # 100 tenants, 20 s per stage (SQLite, or DATABASE_URL)
    .venv/bin/python bench/tenant.py --quick       # 50 tenants, 5 s per stage (what CI runs)
    .venv/bin/python bench/tenant.py --tenants 300 --workers 2 --think 0.5

It builds a fresh database (a temporary SQLite file; with DATABASE_URL, a
PostgreSQL database named after it with ``_tenant`` appended, dropped
afterwards) holding ``--tenants`` prepaid tenancies, each with a meter that
has sent an hour of readings (priced, posted), signs each tenant in (a
session of their own) and serves the ASGI application with uvicorn
(``--workers`` processes). After a warm-up that is not counted (each client
asks a few times for both pages below, so neither stage meets a cold server),
``--tenants`` clients, each on its own keep-alive connection, ask for a page,
wait ``--think`` seconds (a tenant looking at the phone; jittered) and ask
again, for ``--seconds``:

1. the baseline: ``/healthz``, a Django view that runs one ``SELECT 1``;
2. each tenant's own home page (``/tenant/<id>/``), rendered in full.

It prints the latencies (p50, p95, p99) and pages per second of each, the
server's CPU time per page (its processes' user and system time over the
stage, on Linux: what a page costs, whatever else the machine is running), the
machine's load average, and the target: the tenant home's p95 at or under 50 ms.

    .venv/bin/python bench/tenant.py --in-process 600            # CPU per page, no server
    .venv/bin/python bench/tenant.py --in-process 600 --profile  # and where it goes

``--in-process N`` measures what a page costs, steadily even on a busy
machine: the same estate (``--tenants``, default 10), and the ASGI application
called in this process, without a server or a network, N times one after
another for each page (after a warm-up), three rounds; it prints this
process's CPU time per request of each round (``time.process_time``: every
thread's). ``--concurrent K``: K requests in flight at once. ``--profile``:
cProfile of one more round of the tenant home, its 30 costliest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project root comes first
    sys.path.insert(0, str(ROOT))
from bench.fresh import postgres_database  # noqa: E402

TARGET_P95_MS = 50.0
WARM_UP_ROUNDS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def estate(tenants: int) -> list[tuple[int, str]]:
    """``tenants`` prepaid tenancies with an hour of readings; (tenancy id, session key) each."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from landlord.models import Tenancy, Unit
    from meters.models import Device, Meter
    from meters.readings import ReadingInput, readings_record
    from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
    from payments.models import Account
    from tests.factories import make_landlord_world

    world = make_landlord_world("bench")
    User = get_user_model()
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    now = timezone.now()
    result = []
    for i in range(tenants):
        unit = Unit.objects.create(
            landlord=world.landlord,
            property=world.prop,
            name=f"Flat {i + 1}",
            tariff=world.tariff,
            low_credit_threshold_minor=200,
        )
        user = User.objects.create_user(f"bench-tenant-{i}", email=f"t{i}@example.com")
        tenancy = Tenancy.objects.create(
            landlord=world.landlord,
            unit=unit,
            tenant=user,
            start_date=timezone.localdate() - timedelta(days=40),
        )
        ledger_post(
            landlord_id=world.landlord.pk,
            kind="adjustment",
            idempotency_key=f"bench-open-{i}",
            legs=[Leg(debit=clearing, credit=tenant_account(tenancy=tenancy), amount_minor=2000)],
        )
        device = Device(landlord=world.landlord, unit=unit, ident=f"bench-tenant-{i}")
        device.set_secret("x")
        device.save()
        Meter.objects.create(landlord=world.landlord, unit=unit, device=device, serial=f"T{i}")
        readings_record(
            device_id=device.pk,
            readings=[
                ReadingInput(
                    seq=k + 1, taken_at=now - timedelta(minutes=60 - 5 * k), register_wh=40 * k
                )
                for k in range(12)
            ],
        )
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        result.append((tenancy.pk, str(session.session_key)))
    return result


class Connection:
    """One keep-alive HTTP/1.1 connection: GET, read the whole answer. It keeps the
    cookies the server sets, as a phone's browser does (the session's, and the CSRF
    cookie a page's forms are signed with: without it every page would mint a new
    CSRF secret, which no browser makes a server do)."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.cookies = {"sessionid": cookie}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def close(self) -> None:
        """Close the connection (each stage runs its own event loop); the cookies stay."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _keep_cookie(self, value: str) -> None:
        pair, _, attributes = value.partition(";")
        name, _, cookie = pair.strip().partition("=")
        if "max-age=0" in attributes.lower().replace(" ", ""):
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = cookie

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        cookies = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Cookie: {cookies}\r\nAccept: text/html\r\n\r\n"
        )
        self.writer.write(request.encode())
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked, close = None, False, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, raw = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), raw.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and value == "close":
                close = True
            elif name == "set-cookie":
                self._keep_cookie(raw.strip())
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await self.reader.readexactly(length)
        else:
            await self.reader.read()
            close = True
        if close:
            self.close()
        return status


async def warm_up(
    clients: list[tuple[int, Connection]], rounds: int, think: float
) -> tuple[int, int, float]:
    """Each client asks ``rounds`` times for ``/healthz`` and for its home page, a
    jittered ``think`` apart, not counted: the first requests of a fresh server (its
    connections, caches, compiled templates and queries) are not what either stage
    measures, and would fall on the baseline, which runs first. Requests, errors, s."""
    requests = errors = 0

    async def client(tenancy_id: int, conn: Connection) -> None:
        nonlocal requests, errors
        await asyncio.sleep(random.uniform(0, think))
        for _ in range(rounds):
            for path in ("/healthz", f"/tenant/{tenancy_id}/"):
                try:
                    status = await conn.get(path)
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    status = 0
                    conn.writer = None
                requests += 1
                errors += status != 200
            await asyncio.sleep(random.uniform(0.5 * think, 1.5 * think))
        conn.close()

    started = time.monotonic()
    await asyncio.gather(*(client(t, c) for t, c in clients))
    return requests, errors, time.monotonic() - started


async def stage(
    clients: list[tuple[int, Connection]], path_of, seconds: float, think: float
) -> tuple[list[float], int, float]:
    """Every client asks, waits about ``think`` s, asks again; latencies (ms), errors, seconds."""
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds

    async def client(tenancy_id: int, conn: Connection) -> None:
        nonlocal errors
        await asyncio.sleep(random.uniform(0, think))  # not all at the same instant
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                status = await conn.get(path_of(tenancy_id))
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                status = 0
                conn.writer = None
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                errors += 1
            await asyncio.sleep(random.uniform(0.5 * think, 1.5 * think))
        conn.close()

    started = time.monotonic()
    await asyncio.gather(*(client(t, c) for t, c in clients))
    return latencies, errors, time.monotonic() - started


def _load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} CPUs"


def server_cpu_seconds(pgid: int) -> float | None:
    """CPU time (user + system) used so far by the server's processes (Linux)."""
    total = 0
    try:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # the process ended meanwhile
            if int(fields[2]) == pgid:  # pgrp; utime and stime in clock ticks
                total += int(fields[11]) + int(fields[12])
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


def run_stage(
    pgid: int, clients: list[tuple[int, Connection]], path_of, seconds: float, think: float
) -> tuple[list[float], int, float, float | None]:
    """``stage``, and the server's CPU time a page (s) over it, so a figure taken on a
    busy machine says what the server itself spent."""
    cpu_before = server_cpu_seconds(pgid)
    latencies, errors, took = asyncio.run(stage(clients, path_of, seconds, think))
    cpu_after = server_cpu_seconds(pgid)
    cpu = None
    if cpu_before is not None and cpu_after is not None and latencies:
        cpu = (cpu_after - cpu_before) / len(latencies)
    return latencies, errors, took, cpu


def report(name: str, latencies: list[float], errors: int, took: float, cpu: float | None) -> float:
    if len(latencies) < 2:
        print(f"  {name:<28} too few answers ({len(latencies)})")
        return float("inf")
    q = statistics.quantiles(latencies, n=100)
    cpu_text = "" if cpu is None else f"  server CPU {cpu * 1000:5.1f} ms/page"
    print(
        f"  {name:<28} p50 {q[49]:6.1f} ms  p95 {q[94]:6.1f} ms  p99 {q[98]:6.1f} ms"
        f"  {len(latencies) / took:6.0f} pages/s  {errors} errors{cpu_text}"
    )
    return q[94]


def serve(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the server did not start within 60 s")


def run(args: argparse.Namespace, env: dict[str, str]) -> int:
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections

    set_up = time.perf_counter()
    call_command("migrate", verbosity=0)
    sessions = estate(args.tenants)
    vendor = connection.vendor
    connections.close_all()
    print(
        f"{vendor}: {args.tenants} prepaid tenancies with an hour of readings each"
        f" (set up in {time.perf_counter() - set_up:.1f} s); uvicorn, {args.workers} worker(s);"
        f" each client asks every {args.think:g} s (jittered) for {args.seconds:g} s; {_load()}",
        flush=True,
    )
    port = _free_port()
    proc = serve({**os.environ}, port, args.workers)
    try:
        # One client a tenant for the whole run, keeping its cookies between stages.
        clients = [(tenancy_id, Connection(port, cookie)) for tenancy_id, cookie in sessions]
        requests, errors, took = asyncio.run(warm_up(clients, WARM_UP_ROUNDS, args.think))
        print(
            f"  warm-up (not counted): each client asked {WARM_UP_ROUNDS} times for /healthz"
            f" and its home page; {requests} requests, {errors} errors, {took:.1f} s",
            flush=True,
        )
        base = run_stage(proc.pid, clients, lambda _t: "/healthz", args.seconds, args.think)
        base_p95 = report("baseline: /healthz", *base)
        home = run_stage(proc.pid, clients, lambda t: f"/tenant/{t}/", args.seconds, args.think)
        home_p95 = report("tenant home /tenant/<id>/", *home)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print(
        f"  {_load()}; tenant home p95 is {home_p95 / base_p95:.1f}x the baseline's;"
        f" target: p95 <= {TARGET_P95_MS:.0f} ms at {args.tenants} tenants"
        f" ({'met' if home_p95 <= TARGET_P95_MS else 'not met'})"
    )
    return 0 if home[1] == 0 else 1


async def _asgi_get(application, path: str, cookies: dict[str, str]) -> int:
    """One GET through ``application`` as a server would pass it; keeps the cookies."""
    header = "; ".join(f"{name}={value}" for name, value in cookies.items())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"accept", b"text/html"),
            (b"cookie", header.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    asked = False

    async def receive() -> dict:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays until the answer is sent
        raise AssertionError("unreachable")

    status = 0

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message["headers"]:
                if name.lower() == b"set-cookie":
                    pair = value.decode("latin-1").split(";")[0]
                    cookie_name, _, cookie = pair.partition("=")
                    cookies[cookie_name.strip()] = cookie

    await application(scope, receive, send)
    return status


def in_process(args: argparse.Namespace, env: dict[str, str]) -> int:
    import cProfile
    import pstats

    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    sessions = estate(args.tenants)
    connections.close_all()
    from config.asgi import application

    jars = [(tenancy_id, {"sessionid": key}) for tenancy_id, key in sessions]
    pages = {"/healthz": lambda _t: "/healthz", "tenant home": lambda t: f"/tenant/{t}/"}
    print(
        f"in-process: {args.tenants} tenancies, {args.in_process} requests a round,"
        f" {args.concurrent} at once; {_load()}"
    )

    async def requests(path_of, count: int) -> int:
        errors = 0

        async def client(first: int) -> None:
            nonlocal errors
            for i in range(first, count, args.concurrent):
                tenancy_id, jar = jars[i % len(jars)]
                errors += await _asgi_get(application, path_of(tenancy_id), jar) != 200

        await asyncio.gather(*(client(k) for k in range(args.concurrent)))
        return errors

    async def measure() -> int:
        errors = 0
        for name, path_of in pages.items():
            errors += await requests(path_of, 60)  # warm-up
            rounds = []
            for _ in range(3):
                started = time.process_time()
                errors += await requests(path_of, args.in_process)
                rounds.append((time.process_time() - started) / args.in_process * 1000)
            print(
                f"  {name:<12} CPU ms/request "
                + " ".join(f"{r:.2f}" for r in rounds)
                + f" (min {min(rounds):.2f})"
            )
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            errors += await requests(pages["tenant home"], args.in_process)
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        return errors

    errors = asyncio.run(measure())
    if errors:
        print(f"  {errors} requests did not answer 200")
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=None, help="default 100 (quick: 50)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="per stage (default 20; quick: 5)"
    )
    parser.add_argument("--think", type=float, default=1.0, help="seconds between a client's pages")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--quick", action="store_true", help="within a minute")
    parser.add_argument(
        "--in-process", type=int, default=0, metavar="N", help="CPU per page, N a round"
    )
    parser.add_argument("--concurrent", type=int, default=1, help="with --in-process")
    parser.add_argument("--profile", action="store_true", help="with --in-process")
    args = parser.parse_args()
    if args.in_process and args.tenants is None:
        args.tenants = 10
    if args.seconds is None:
        args.seconds = 5.0 if args.quick else 20.0
    if args.tenants is None:
        args.tenants = 50 if args.quick else 100
    print(f"bench/tenant.py{' --quick' if args.quick else ''}", flush=True)
    url = os.environ.get("DATABASE_URL", "")
    with tempfile.TemporaryDirectory(prefix="submeter-bench-") as tmp:
        env = {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DEBUG": "0",
            "LOG_LEVEL": "ERROR",
            "REDIS_URL": "",
            "SUBMETER_VAR_DIR": tmp,
            "SQLITE_PATH": str(Path(tmp) / "bench.sqlite3"),
            "HUEY_SQLITE_PATH": str(Path(tmp) / "huey.sqlite3"),
        }
        go = in_process if args.in_process else run
        if not url.startswith("postgres"):
            return go(args, {**env, "DATABASE_URL": ""})
        with postgres_database(url, "_tenant") as bench_url:
            return go(args, {**env, "DATABASE_URL": bench_url})


if __name__ == "__main__":
    sys.exit(main())
