"""The device socket's dispatch loop: client and channel-layer messages, one at a time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.exceptions import StopConsumer

from meters.sockets.base import _dispatch_both


class _Source:
    """A receive callable fed by the test."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.cancelled = False

    async def __call__(self) -> dict[str, Any]:
        try:
            return await self.queue.get()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_messages_are_handled_one_at_a_time_in_the_order_they_came():
    client, layer = _Source(), _Source()
    log: list[str] = []
    busy = False
    frame_started = asyncio.Event()
    release_frame = asyncio.Event()

    async def dispatch(message: dict[str, Any]) -> None:
        nonlocal busy
        assert not busy, "two messages handled at once"
        busy = True
        log.append(f"start {message['name']}")
        if message["name"] == "frame 1":
            frame_started.set()
            await release_frame.wait()
        await asyncio.sleep(0)
        log.append(f"end {message['name']}")
        busy = False
        if message["name"] == "disconnect":
            raise StopConsumer

    loop = asyncio.create_task(_dispatch_both(client, layer, dispatch))
    client.queue.put_nowait({"name": "frame 1"})
    client.queue.put_nowait({"name": "frame 2"})
    await frame_started.wait()
    # A wake-up while a frame is handled waits for it.
    layer.queue.put_nowait({"name": "wake"})
    for _ in range(5):
        await asyncio.sleep(0)
    assert log == ["start frame 1"]
    release_frame.set()
    while len(log) < 6:
        await asyncio.sleep(0)
    client.queue.put_nowait({"name": "disconnect"})
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(loop, timeout=5)

    frames = [e for e in log if "frame" in e]
    assert frames == ["start frame 1", "end frame 1", "start frame 2", "end frame 2"]
    assert log.index("start wake") > log.index("end frame 1")
    assert log[-2:] == ["start disconnect", "end disconnect"]
    # The channel layer is no longer read once the connection has ended.
    assert layer.cancelled


async def test_a_failing_channel_layer_message_ends_the_connection_after_the_frame():
    client, layer = _Source(), _Source()
    log: list[str] = []
    frame_started = asyncio.Event()
    release_frame = asyncio.Event()

    async def dispatch(message: dict[str, Any]) -> None:
        log.append(message["name"])
        if message["name"] == "frame":
            frame_started.set()
            await release_frame.wait()
            log.append("frame answered")
        if message["name"] == "bad event":
            raise ValueError("no handler")

    loop = asyncio.create_task(_dispatch_both(client, layer, dispatch))
    client.queue.put_nowait({"name": "frame"})
    await frame_started.wait()
    layer.queue.put_nowait({"name": "bad event"})
    for _ in range(5):
        await asyncio.sleep(0)
    assert not loop.done()
    release_frame.set()
    with pytest.raises(ValueError, match="no handler"):
        await asyncio.wait_for(loop, timeout=5)
    assert log == ["frame", "frame answered", "bad event"]
    assert client.cancelled


async def test_a_failing_channel_layer_receive_ends_the_connection():
    client = _Source()

    async def layer() -> dict[str, Any]:
        raise ConnectionError("channel layer gone")

    async def dispatch(message: dict[str, Any]) -> None:
        raise AssertionError("nothing to handle")

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(_dispatch_both(client, layer, dispatch), timeout=5)


async def test_a_channel_layer_receive_cancelled_from_within_ends_the_connection():
    # As in Channels, where the receive's task result re-raises it.
    client = _Source()

    async def layer() -> dict[str, Any]:
        raise asyncio.CancelledError

    async def dispatch(message: dict[str, Any]) -> None:
        raise AssertionError("nothing to handle")

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(_dispatch_both(client, layer, dispatch), timeout=5)
    assert client.cancelled
