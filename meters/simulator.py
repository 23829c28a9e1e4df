"""Simulated meters that speak the native device protocol over a real WebSocket.

Each device streams a cumulative register at a configurable (accelerated)
power draw, obeys ``SetRelay`` commands by generation, reports its relay
state, and reconnects with backoff when the socket drops. Used by
``make run``, by ``manage.py simulate``, by tests and by benchmarks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets

from .protocol import CLOSE_RATE_LIMITED, CLOSE_UNAUTHORIZED

logger = logging.getLogger(__name__)


@dataclass
class SimDevice:
    ident: str
    secret: str
    power_w: float = 2000.0
    speed: float = 1.0  # simulated seconds per real second
    interval_s: float = 2.0
    register_wh: float = 0.0
    relay: str = "on"
    generation: int = 0
    readings_sent: int = 0
    commands_applied: list[tuple[str, int]] = field(default_factory=list)
    notifications: list[dict[str, object]] = field(default_factory=list)
    connected: bool = False
    protocol: str = "native"

    def auth_header(self) -> str:
        token = base64.b64encode(f"{self.ident}:{self.secret}".encode()).decode()
        return f"Basic {token}"

    def next_seq(self) -> int:
        # Milliseconds since the epoch: increasing across restarts of the simulator.
        return int(time.time() * 1000)


def _frame_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"m{next(counter)}"


async def run_device(
    url: str,
    dev: SimDevice,
    stop: asyncio.Event,
    *,
    jitter: bool = True,
    max_readings: int | None = None,
) -> None:
    """Run one device until ``stop`` is set (or ``max_readings`` have been accepted)."""
    new_id = _frame_ids()

    async def hello(ws: websockets.ClientConnection) -> None:
        await ws.send(
            json.dumps(
                [
                    2,
                    new_id(),
                    "BootNotification",
                    {
                        "firmware": "sim-1.0",
                        "protocol_versions": ["1"],
                        "relay": {"state": dev.relay, "generation": dev.generation},
                    },
                ]
            )
        )

    async def report(ws: websockets.ClientConnection) -> None:
        reading = {
            "seq": dev.next_seq(),
            "taken_at": datetime.now(UTC).isoformat(),
            "register_wh": int(dev.register_wh),
        }
        await ws.send(json.dumps([2, new_id(), "MeterValues", {"readings": [reading]}]))

    await _run_sessions(
        dev,
        stop,
        connect=lambda: websockets.connect(
            url.rstrip("/") + "/ws/device/v1",
            additional_headers={"Authorization": dev.auth_header()},
            subprotocols=[websockets.Subprotocol("submeter.v1")],
            open_timeout=10,
            ping_interval=20,
        ),
        hello=hello,
        reader=lambda ws: _read(ws, dev),
        report=report,
        jitter=jitter,
        max_readings=max_readings,
    )


# How long a device refused for its credentials waits before trying again.
REFUSED_BACKOFF_SECONDS = 60.0


def _refused(exc: Exception) -> int | None:
    """The close code if the server refused these credentials, else None."""
    refused = (CLOSE_UNAUTHORIZED, CLOSE_RATE_LIMITED)
    if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd and exc.rcvd.code in refused:
        return exc.rcvd.code
    return None


async def _run_sessions(
    dev: SimDevice,
    stop: asyncio.Event,
    *,
    connect: Callable[[], Any],
    hello: Callable[[websockets.ClientConnection], Coroutine[Any, Any, None]],
    reader: Callable[[websockets.ClientConnection], Coroutine[Any, Any, None]],
    report: Callable[[websockets.ClientConnection], Coroutine[Any, Any, None]],
    jitter: bool,
    max_readings: int | None,
) -> None:
    """Connect, greet, then report the advancing register every interval, reading
    the server's calls alongside; reconnect with backoff until ``stop`` is set."""
    backoff = 0.5
    while not stop.is_set():
        try:
            async with connect() as ws:
                dev.connected = True
                backoff = 0.5
                await hello(ws)
                task = asyncio.create_task(reader(ws))
                try:
                    if jitter:
                        await asyncio.sleep(random.uniform(0, dev.interval_s))
                    last = time.monotonic()
                    while not stop.is_set():
                        now = time.monotonic()
                        if dev.relay == "on":
                            dev.register_wh += dev.power_w * (now - last) * dev.speed / 3600
                        last = now
                        await report(ws)
                        dev.readings_sent += 1
                        if max_readings is not None and dev.readings_sent >= max_readings:
                            await asyncio.sleep(0.5)
                            stop.set()
                            break
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), timeout=dev.interval_s)
                    if task.done():
                        task.result()
                finally:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            code = _refused(exc)
            if code is None:
                logger.debug("sim %s (%s): %r; reconnecting", dev.ident, dev.protocol, exc)
            else:
                # Wrong secret (another simulator may have set a new one) or
                # rate-limited: retrying fast would only count more failures.
                backoff = REFUSED_BACKOFF_SECONDS
                logger.warning(
                    "sim %s (%s): refused (close %s); retrying in %.0f s",
                    dev.ident,
                    dev.protocol,
                    code,
                    backoff,
                )
        finally:
            dev.connected = False
        if stop.is_set():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=backoff)
        backoff = max(backoff, min(backoff * 2, 10.0))


async def _read(ws: websockets.ClientConnection, dev: SimDevice) -> None:
    async for raw in ws:
        try:
            frame = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(frame, list) or len(frame) < 3:
            continue
        if frame[0] == 2 and frame[2] == "SetRelay":
            payload = frame[3]
            state, generation = payload.get("state"), int(payload.get("generation", -1))
            if state in ("on", "off") and generation >= dev.generation:
                dev.relay, dev.generation = state, generation
                dev.commands_applied.append((state, generation))
            # Always answer with where the relay really is.
            await ws.send(
                json.dumps([3, frame[1], {"state": dev.relay, "generation": dev.generation}])
            )
        elif frame[0] == 2 and frame[2] == "Notify":
            dev.notifications.append(frame[3])
            logger.info("sim %s display: %s", dev.ident, frame[3].get("message"))
            await ws.send(json.dumps([3, frame[1], {}]))
        elif frame[0] == 4:
            logger.warning("sim %s: server error %s", dev.ident, frame[2:4])


async def run_shelly(
    url: str,
    dev: SimDevice,
    stop: asyncio.Event,
    *,
    jitter: bool = True,
    max_readings: int | None = None,
) -> None:
    """A Shelly Gen2+ with outbound WebSocket: NotifyFullStatus on connect, then
    NotifyStatus with ``aenergy.total`` each interval; obeys Switch.Set and answers
    Switch.GetStatus (docs/shelly.md). ``dev.ident`` is its Shelly id."""

    def status() -> dict[str, object]:
        return {
            "id": 0,
            "source": "WS_in",
            "output": dev.relay == "on",
            "apower": dev.power_w if dev.relay == "on" else 0.0,
            "aenergy": {"total": round(dev.register_wh, 3), "minute_ts": int(time.time())},
        }

    def notify(method: str) -> str:
        return json.dumps(
            {
                "src": dev.ident,
                "dst": "submeter",
                "method": method,
                "params": {"ts": round(time.time(), 2), "switch:0": status()},
            }
        )

    async def reader(ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(frame, dict) or "method" not in frame:
                continue
            result: dict[str, object]
            if frame["method"] == "Switch.Set":
                was_on = dev.relay == "on"
                dev.relay = "on" if frame.get("params", {}).get("on") else "off"
                dev.commands_applied.append((dev.relay, 0))
                result = {"was_on": was_on}
            elif frame["method"] == "Switch.GetStatus":
                result = status()
            else:
                await ws.send(
                    json.dumps(
                        {
                            "id": frame.get("id"),
                            "src": dev.ident,
                            "error": {"code": 404, "message": "No handler"},
                        }
                    )
                )
                continue
            await ws.send(
                json.dumps(
                    {"id": frame.get("id"), "src": dev.ident, "dst": "submeter", "result": result}
                )
            )

    async def hello(ws: websockets.ClientConnection) -> None:
        await ws.send(notify("NotifyFullStatus"))

    async def report(ws: websockets.ClientConnection) -> None:
        await ws.send(notify("NotifyStatus"))

    await _run_sessions(
        dev,
        stop,
        connect=lambda: websockets.connect(
            f"{url.rstrip('/')}/ws/shelly/{dev.ident}/{dev.secret}",
            open_timeout=10,
            ping_interval=20,
        ),
        hello=hello,
        reader=reader,
        report=report,
        jitter=jitter,
        max_readings=max_readings,
    )


async def run_any(url: str, dev: SimDevice, stop: asyncio.Event, **kwargs: Any) -> None:
    """Run a simulator in the device's own protocol."""
    runner = run_shelly if dev.protocol == "shelly" else run_device
    await runner(url, dev, stop, **kwargs)


async def run_fleet(url: str, devices: list[SimDevice], stop: asyncio.Event) -> None:
    await asyncio.gather(*(run_any(url, d, stop) for d in devices))
