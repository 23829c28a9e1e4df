"""Group sends from worker threads reach the server loop's in-memory layer."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, cast

import pytest
from channels.layers import get_channel_layer

from config import live
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


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the Redis channel layer")
async def test_a_burst_of_group_sends_waits_for_redis_connections_instead_of_failing():
    from django.conf import settings

    from config.layers import RedisChannelLayer

    config = cast("dict[str, Any]", settings.CHANNEL_LAYERS["default"]["CONFIG"])
    layer = RedisChannelLayer(**{**config, "max_connections": 2})
    channel = await layer.new_channel()
    await layer.group_add("test.burst", channel)
    try:
        await asyncio.gather(
            *(layer.group_send("test.burst", {"type": "x.y", "n": i}) for i in range(60))
        )
        received = {(await layer.receive(channel))["n"] for _ in range(60)}
        assert received == set(range(60))
    finally:
        await layer.group_discard("test.burst", channel)
        await layer.close_pools()


@pytest.mark.django_db
def test_unit_changed_has_one_message_shape_and_its_groups(everyone, monkeypatch):
    sent: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(live, "broadcast_on_commit", lambda group, msg: sent.append((group, msg)))
    world = everyone.a
    # A unit: the landlord and the unit's current tenants.
    live.unit_changed(world.prepaid)
    msg = {"type": "unit.changed", "unit_id": world.prepaid.pk}
    assert sent == [
        (f"landlord.{world.landlord.pk}", msg),
        (f"tenancy.{world.prepaid_tenancy.pk}", msg),
    ]
    # Named tenancies (an ended one too, e.g. its refund) and the landlord.
    sent.clear()
    former = everyone.former_tenancy
    live.unit_changed_notify(
        landlord_id=former.landlord_id, unit_id=former.unit_id, tenancy_ids=[former.pk]
    )
    msg = {"type": "unit.changed", "unit_id": former.unit_id}
    assert sent == [(f"landlord.{former.landlord_id}", msg), (f"tenancy.{former.pk}", msg)]
    # Landlord-wide (the payment account): every row of the landlord's list.
    sent.clear()
    live.unit_changed_notify(landlord_id=world.landlord.pk, unit_id=None)
    assert sent == [(f"landlord.{world.landlord.pk}", {"type": "unit.changed", "unit_id": None})]
