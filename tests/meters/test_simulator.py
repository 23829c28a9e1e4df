"""The simulator behaves like a well-mannered device when it is refused."""

from __future__ import annotations

import asyncio
import time

import websockets
from websockets.frames import Close

from meters import simulator
from meters.simulator import SimDevice


class _AcceptedThenClosed:
    """A socket the server accepts and then closes with ``code``, as the device
    endpoint does for a wrong secret (4401) or too many failures (4429)."""

    def __init__(self, code: int, attempts: list[float]):
        self.code, self.attempts = code, attempts

    async def __aenter__(self):
        self.attempts.append(time.monotonic())
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, _text: str) -> None:
        raise websockets.ConnectionClosed(Close(self.code, "refused"), None)


async def _attempts_in(seconds: float, code: int, monkeypatch) -> int:
    monkeypatch.setattr(simulator, "REFUSED_BACKOFF_SECONDS", 5.0)
    attempts: list[float] = []
    stop = asyncio.Event()

    async def hello(ws):
        await ws.send("boot")

    async def idle(ws):
        await asyncio.Event().wait()

    run = asyncio.create_task(
        simulator._run_sessions(
            SimDevice(ident="sim-x", secret="stale"),
            stop,
            connect=lambda: _AcceptedThenClosed(code, attempts),
            hello=hello,
            reader=idle,
            report=hello,
            jitter=False,
            max_readings=None,
        )
    )
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(run, timeout=5)
    return len(attempts)


async def test_a_refused_simulator_waits_long_before_trying_again(monkeypatch):
    # A fast retry loop would trip the server's failure limit for its address.
    assert await _attempts_in(1.2, 4401, monkeypatch) == 1
    assert await _attempts_in(1.2, 4429, monkeypatch) == 1


async def test_a_dropped_simulator_reconnects_quickly(monkeypatch):
    assert await _attempts_in(1.2, 1011, monkeypatch) >= 2
