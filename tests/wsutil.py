"""Helpers for talking to the device socket like a device would."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from channels.testing import WebsocketCommunicator

from config.asgi import application

_ids = itertools.count(1)


def device_communicator(headers: list[tuple[bytes, bytes]] | None) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, "/ws/device/v1", headers=headers or [], subprotocols=["submeter.v1"]
    )


def browser_communicator(path: str, sessionid: str | None, origin: str = "http://testserver"):
    headers = [(b"origin", origin.encode()), (b"host", b"testserver")]
    if sessionid:
        headers.append((b"cookie", f"sessionid={sessionid}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def iso(dt: datetime | None = None, **delta: float) -> str:
    return ((dt or datetime.now(UTC)) + timedelta(**delta)).isoformat()


class FakeDevice:
    """Drives a communicator: sends calls, collects results and server calls."""

    def __init__(self, comm: WebsocketCommunicator):
        self.comm = comm
        self.server_calls: list[list[Any]] = []
        self.unread_calls: list[list[Any]] = []  # server calls not yet taken by next_call()
        self.relay = "on"
        self.generation = 0
        self.auto_ack = True
        # Notify calls are answered and collected, not returned, unless asked for.
        self.notifications: list[dict[str, Any]] = []
        self.pass_notify = False

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5) -> list[Any]:
        msg_id = f"t{next(_ids)}"
        await self.comm.send_to(text_data=json.dumps([2, msg_id, action, payload]))
        return await self.reply_to(msg_id, timeout)

    async def send_raw(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def reply_to(self, msg_id: str, timeout: float = 5) -> list[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.next_frame(deadline - loop.time())
            if frame[0] in (3, 4) and frame[1] == msg_id:
                return frame

    async def next_frame(self, timeout: float = 5) -> list[Any]:
        # receive_from() cancels the application on timeout; poll without that.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while await self.comm.receive_nothing(timeout=0.02, interval=0.005):
                if loop.time() >= deadline:
                    raise TimeoutError("no frame from the server")
            frame = json.loads(await self.comm.receive_from(timeout=5))
            if frame[0] == 2 and frame[2] == "Notify" and not self.pass_notify:
                self.notifications.append(frame[3])
                await self.comm.send_to(text_data=json.dumps([3, frame[1], {}]))
                continue
            if frame[0] == 2:
                self.server_calls.append(frame)
                self.unread_calls.append(frame)
                if frame[2] == "SetRelay" and self.auto_ack:
                    await self.apply(frame)
            return frame

    async def next_call(self, timeout: float = 5) -> list[Any]:
        """The next call from the server, including one that arrived while awaiting a reply."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.unread_calls:
            await self.next_frame(deadline - loop.time())
        return self.unread_calls.pop(0)

    async def apply(self, frame: list[Any]) -> None:
        payload = frame[3]
        if payload["generation"] >= self.generation:
            self.relay, self.generation = payload["state"], payload["generation"]
        await self.comm.send_to(
            text_data=json.dumps(
                [3, frame[1], {"state": self.relay, "generation": self.generation}]
            )
        )

    async def wait_for_relay(self, state: str, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.relay != state:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"relay never became {state}; calls {self.server_calls}")
            try:
                await self.next_frame(remaining)
            except TimeoutError:
                continue

    async def boot(self) -> list[Any]:
        return await self.call(
            "BootNotification",
            {
                "firmware": "test",
                "protocol_versions": ["1"],
                "relay": {"state": self.relay, "generation": self.generation},
            },
        )

    async def readings(self, *items: tuple[int, int], at: datetime | None = None) -> list[Any]:
        # One minute apart, starting a day ago: realistic power, never in the future.
        base = at or datetime.now(UTC) - timedelta(days=1)
        return await self.call(
            "MeterValues",
            {
                "readings": [
                    {"seq": seq, "taken_at": iso(base, minutes=seq), "register_wh": reg}
                    for seq, reg in items
                ]
            },
        )
