"""Connect storms after a restart: every device group still names a socket of
the server that went away, and the reconnecting fleet replaces them together."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from config.layers import RedisChannelLayer
from meters import attach

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs Redis: set REDIS_URL (CI does)"
)


def _layer(prefix: str = "") -> RedisChannelLayer:
    return RedisChannelLayer(
        hosts=[{"address": os.environ["REDIS_URL"]}],
        prefix=prefix or f"test-{uuid.uuid4().hex[:8]}",
    )


async def test_a_fleet_replaces_a_gone_servers_sockets_and_not_itself():
    # Two processes on one Redis: one that went away, one serving now.
    gone = _layer()
    here = _layer(gone.prefix)
    old = [await gone.new_channel() for _ in range(20)]
    for i, channel in enumerate(old):
        await gone.group_add(f"device.{i}", channel)
    new = [await here.new_channel() for _ in range(20)]

    with pytest.MonkeyPatch.context() as patch:
        sent: list[int] = []
        send_many = here.send_many

        async def counted(sends: list[tuple[str, dict[str, object]]]) -> None:
            sent.append(len(sends))
            await send_many(sends)

        patch.setattr(here, "send_many", counted)
        await asyncio.gather(
            *(
                attach.joined(layer=here, group=f"device.{i}", channel=channel)
                for i, channel in enumerate(new)
            )
        )
    # Told in batches, one message per old socket.
    assert sum(sent) == 20 and len(sent) < 20
    for i, channel in enumerate(old):
        assert await asyncio.wait_for(gone.receive(channel), 5) == {
            "type": "device.replaced",
            "channel": new[i],
        }
    # A new socket is not told about itself: its first message is the next one.
    await here.group_send("device.3", {"type": "relay.wake"})
    assert await asyncio.wait_for(here.receive(new[3]), 5) == {"type": "relay.wake"}
    await here.flush()
    await gone.flush()


async def test_send_many_keeps_a_full_channel_to_its_capacity():
    layer = _layer()
    layer.capacity = 3
    channel = await layer.new_channel()
    await layer.send_many([(channel, {"type": "x.y", "n": n}) for n in range(5)])
    got = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(3)]
    assert sorted(m["n"] for m in got) == [0, 1, 2]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.5)
    await layer.flush()


async def test_one_reader_hands_each_local_channel_its_own_messages_in_order():
    layer = _layer()
    channels = [await layer.new_channel() for _ in range(50)]
    waiting = [asyncio.ensure_future(layer.receive(c)) for c in channels]
    await asyncio.sleep(0.1)
    await layer.send_many([(c, {"type": "x.y", "n": i}) for i, c in enumerate(channels)])
    assert [m["n"] for m in await asyncio.wait_for(asyncio.gather(*waiting), 5)] == list(range(50))
    # Messages that come while nobody receives on the channel wait for the next receive.
    await layer.send(channels[0], {"type": "x.y", "n": 100})
    await layer.send(channels[0], {"type": "x.y", "n": 101})
    other = asyncio.ensure_future(layer.receive(channels[1]))  # keeps the reader going
    got = [await asyncio.wait_for(layer.receive(channels[0]), 5) for _ in range(2)]
    assert [m["n"] for m in got] == [100, 101]
    # A receive given up (its socket closed) takes nothing from the others.
    other.cancel()
    with pytest.raises(asyncio.CancelledError):
        await other
    await layer.send(channels[2], {"type": "x.y", "n": 102})
    assert await asyncio.wait_for(layer.receive(channels[2]), 5) == {"type": "x.y", "n": 102}
    await layer.flush()


async def test_a_redis_failure_reaches_every_waiting_receive():
    layer = _layer()
    channels = [await layer.new_channel() for _ in range(3)]

    async def broken(channel: str) -> object:
        await asyncio.sleep(0.05)
        raise ConnectionError("Redis went away")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layer, "receive_single", broken)
        results = await asyncio.wait_for(
            asyncio.gather(*(layer.receive(c) for c in channels), return_exceptions=True), 5
        )
    assert [type(r) for r in results] == [ConnectionError] * 3


async def test_idle_local_channels_share_one_reader_task():
    layer = _layer()
    channels = [await layer.new_channel() for _ in range(100)]
    before = len(asyncio.all_tasks())
    waiting = [asyncio.ensure_future(layer.receive(c)) for c in channels]
    await asyncio.sleep(0.1)
    # The 100 receives themselves, and one task reading Redis for all of them.
    assert len(asyncio.all_tasks()) - before == 100 + 1
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before  # nobody waits: the reader stops too
    await layer.flush()
