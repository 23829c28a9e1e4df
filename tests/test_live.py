"""Group sends from worker threads reach the server loop's in-memory layer."""

from __future__ import annotations

import asyncio
import threading

from channels.layers import get_channel_layer

from config.live import group_send, register_server_loop


async def test_group_send_from_a_worker_thread_is_handed_to_the_server_loop():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("test.handoff", channel)
    register_server_loop(asyncio.get_running_loop())
    try:
        worker = threading.Thread(target=group_send, args=("test.handoff", {"type": "x.y", "n": 1}))
        worker.start()
        await asyncio.to_thread(worker.join, 5)
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
        assert message == {"type": "x.y", "n": 1}
    finally:
        register_server_loop(None)
        await layer.group_discard("test.handoff", channel)


def test_group_send_without_a_running_server_never_raises():
    # No loop registered and no consumer: a wake-up may be lost, the caller must not fail.
    group_send("test.nobody", {"type": "x.y"})
