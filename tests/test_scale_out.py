"""Scale-out: two uvicorn worker processes sharing Redis and the database.

A device holds its socket on worker A; the tenant pays on worker B. The
relay command issued on B must reach the device on A through the Redis
channel layer. Each worker's periodic outbox check is set to five minutes,
so within this test only a cross-process wake-up can deliver the command.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import websockets
from django.db import connection

needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs Redis: set REDIS_URL (CI does) to run two workers on one channel layer",
)
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_env() -> dict[str, str]:
    cfg = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"SQLITE_PATH": str(cfg["NAME"]), "DATABASE_URL": ""}
    auth = quote(cfg["USER"] or "")
    if cfg.get("PASSWORD"):
        auth += ":" + quote(cfg["PASSWORD"])
    host = f"{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}"
    return {"DATABASE_URL": f"postgres://{auth}@{host}/{cfg['NAME']}"}


@pytest.fixture
def workers() -> Iterator[tuple[str, str]]:
    env = {
        **os.environ,
        **_database_env(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "RELAY_SAFETY_CHECK_SECONDS": "300",
        "LOG_LEVEL": "WARNING",
    }
    ports = [_free_port(), _free_port()]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "config.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        for port in ports
    ]
    try:
        deadline = time.monotonic() + 60
        for port in ports:
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                        break
                except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to start
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start")
                time.sleep(0.2)
        yield f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _pay_on(worker: str, username: str, tenancy_id: int, amount: str) -> None:
    """The tenant's browser: log in, top up, pay on the development checkout page."""
    base = f"http://{worker}"
    s = requests.Session()
    login = s.get(f"{base}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert token, login.text[:500]
    r = s.post(
        f"{base}/accounts/login/",
        data={"username": username, "password": "pw", "csrfmiddlewaretoken": token.group(1)},
        timeout=10,
    )
    assert r.ok and "/accounts/login/" not in r.url, r.text[:500]
    csrf = s.cookies["csrftoken"]
    r = s.post(
        f"{base}/payments/tenancies/{tenancy_id}/topup/",
        data={"amount": amount, "csrfmiddlewaretoken": csrf},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302, r.text[:500]
    checkout = r.headers["Location"]
    r = s.post(
        f"{base}{checkout}",
        data={"outcome": "succeeded", "csrfmiddlewaretoken": s.cookies["csrftoken"]},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302, r.text[:500]


async def _device_session(worker_a: str, worker_b: str, creds, tenancy_id: int) -> list:
    token = base64.b64encode(f"{creds.device.ident}:{creds.secret}".encode()).decode()
    received: list = []
    async with websockets.connect(
        f"ws://{worker_a}/ws/device/v1",
        additional_headers={"Authorization": f"Basic {token}"},
        subprotocols=[websockets.Subprotocol("submeter.v1")],
    ) as ws:
        relay, generation = "on", 0
        await ws.send(
            json.dumps(
                [
                    2,
                    "b1",
                    "BootNotification",
                    {"protocol_versions": ["1"], "relay": {"state": relay, "generation": 0}},
                ]
            )
        )

        async def until_relay(state: str) -> None:
            nonlocal relay, generation
            while relay != state:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                received.append(frame)
                if frame[0] == 2 and frame[2] == "SetRelay":
                    if frame[3]["generation"] >= generation:
                        relay, generation = frame[3]["state"], frame[3]["generation"]
                    await ws.send(
                        json.dumps([3, frame[1], {"state": relay, "generation": generation}])
                    )
                elif frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], {}]))

        # No credit: worker A switches it off at boot.
        await until_relay("off")
        # The payment is processed by worker B; the command reaches the socket on A.
        await asyncio.to_thread(_pay_on, worker_b, "tenant_a1", tenancy_id, "10.00")
        await until_relay("on")
        # Frames are handled in order: once this is answered, the ack has been recorded.
        await ws.send(json.dumps([2, "hb", "Heartbeat", {}]))
        while json.loads(await asyncio.wait_for(ws.recv(), timeout=30))[1] != "hb":
            pass
    return received


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_a_payment_on_one_worker_switches_a_device_held_by_the_other(tpersonas, workers):
    worker_a, worker_b = workers
    world = tpersonas.a
    received = asyncio.run(
        _device_session(worker_a, worker_b, world.prepaid_device, world.prepaid_tenancy.pk)
    )
    relay_calls = [f for f in received if f[0] == 2 and f[2] == "SetRelay"]
    assert relay_calls[-1][3]["state"] == "on"
    world.prepaid_device.device.refresh_from_db()
    assert world.prepaid_device.device.reported_relay == "on"


@pytest.fixture
def one_worker() -> Iterator[str]:
    """One uvicorn worker on the test database (no Redis needed)."""
    env = {
        **os.environ,
        **_database_env(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "LOG_LEVEL": "WARNING",
    }
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to start
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not start")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.django_db(transaction=True)
def test_the_shelly_simulator_is_cut_off_over_a_real_server(tpersonas, one_worker):
    from meters.devices import simulated_device_prepare
    from meters.models import Device, Protocol
    from meters.simulator import run_any

    world = tpersonas.a
    Device.objects.filter(pk=world.prepaid_device.device.pk).update(protocol=Protocol.SHELLY)
    sim = simulated_device_prepare(
        device=Device.objects.get(pk=world.prepaid_device.device.pk),
        power_w=3000,
        speed=60,
        interval_s=0.3,
    )
    assert sim.protocol == "shelly"

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_any(f"ws://{one_worker}", sim, stop, jitter=False))
        for _ in range(200):  # no credit: the server switches the Shelly off
            if sim.relay == "off":
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(run())
    assert sim.relay == "off" and sim.readings_sent >= 1
    device = Device.objects.get(pk=world.prepaid_device.device.pk)
    assert device.desired_relay == "off"
