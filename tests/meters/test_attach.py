"""Connect storms: logins and presence changes of many sockets, a batch at a time."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from config.layers import RedisChannelLayer
from config.live import landlord_group, tenancy_group
from landlord.models import Tenancy, Unit
from meters import attach
from meters.devices import (
    DeviceLoginLimited,
    LoginRequest,
    devices_login,
    devices_presence_apply,
)
from meters.models import Alert, Device, RelayCommand
from tests.factories import DeviceCreds, LandlordWorld, make_device
from tests.wsutil import device_communicator

FLEET = 30


def _fleet(world: LandlordWorld, count: int = FLEET) -> list[DeviceCreds]:
    """``count`` units of the world's property, each with a tenant and a device."""
    fleet = []
    for i in range(count):
        unit = Unit.objects.create(
            landlord=world.landlord,
            property=world.prop,
            name=f"Flat {i}",
            billing_mode=Unit.BillingMode.POSTPAID,
            tariff=world.tariff,
        )
        Tenancy.objects.create(
            landlord=world.landlord,
            unit=unit,
            tenant_id=world.postpaid_tenant.pk,
            start_date=timezone.localdate(),
        )
        fleet.append(make_device(unit, f"fleet-{world.landlord.pk}-{i}"))
    return fleet


def test_a_fleet_logs_in_with_one_device_query(personas, django_assert_max_num_queries):
    fleet = _fleet(personas.a)
    requests = [LoginRequest("10.0.0.1", c.device.ident, c.secret) for c in fleet]
    requests.append(LoginRequest("10.0.0.1", fleet[0].device.ident, "wrong"))
    requests.append(LoginRequest("10.0.0.1", "no-such-device", "guess"))
    requests.append(LoginRequest("10.0.0.1", fleet[1].device.ident, None))

    with django_assert_max_num_queries(1):
        answers = devices_login(requests=requests)

    assert [a.pk for a in answers[:FLEET]] == [c.device.pk for c in fleet]  # type: ignore[union-attr]
    assert answers[FLEET:] == [None, None, None]


def test_failures_within_a_batch_count_towards_the_limit(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DEVICE_AUTH_MAX_FAILURES": 2}
    creds = personas.a.prepaid_device
    wrong = LoginRequest("10.0.0.1", creds.device.ident, "wrong")
    right = LoginRequest("10.0.0.1", creds.device.ident, creds.secret)
    elsewhere = LoginRequest("10.0.0.2", creds.device.ident, creds.secret)

    answers = devices_login(requests=[wrong, wrong, right, elsewhere])

    assert answers[:2] == [None, None]
    assert isinstance(answers[2], DeviceLoginLimited)
    assert answers[3] == creds.device
    # ... and the next batch still sees the address limited.
    assert isinstance(devices_login(requests=[right])[0], DeviceLoginLimited)


def test_a_fleet_attaches_with_one_batchs_worth_of_queries(
    personas, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    # given a fleet offline for a while, one device with a relay command
    # waiting and one unit with an alert its display has not shown
    fleet = _fleet(personas.a)
    ids = [c.device.pk for c in fleet]
    now = timezone.now()
    Device.objects.filter(pk__in=ids).update(connected=False)
    for creds in fleet[:3]:
        Alert.objects.create(
            landlord=personas.a.landlord,
            unit=creds.device.unit,
            device=creds.device,
            kind=Alert.Kind.DEVICE_OFFLINE,
            audience=Alert.Audience.LANDLORD,
            subject_key=f"device:{creds.device.pk}",
            created_at=now - timedelta(hours=1),
            message="silent",
        )
    command = RelayCommand.objects.create(
        landlord=personas.a.landlord,
        device=fleet[4].device,
        generation=1,
        state="off",
        reason="test",
        attempts=3,
        next_attempt_at=now,
    )
    Alert.objects.create(
        landlord=personas.a.landlord,
        unit=fleet[5].device.unit,
        kind=Alert.Kind.LOW_CREDIT,
        audience=Alert.Audience.TENANT,
        subject_key="tenancy:x",
        created_at=now,
        message="Low credit",
    )

    # when the whole fleet attaches in one batch
    with (
        django_assert_max_num_queries(12),
        mock.patch("config.live._send_many", mock.AsyncMock()) as sent,
        django_capture_on_commit_callbacks(execute=True),
    ):
        with_work = devices_presence_apply(attach=ids, detach=[])

    # then every device is connected, offline alerts cleared, the command due
    # again with fresh attempts, and each screen told once per unit
    assert with_work == {fleet[4].device.pk, fleet[5].device.pk}
    assert Device.objects.filter(pk__in=ids, connected=True).count() == FLEET
    assert not Alert.objects.filter(kind=Alert.Kind.DEVICE_OFFLINE, cleared_at__isnull=True)
    command.refresh_from_db()
    assert command.attempts == 0
    groups = [group for call in sent.call_args_list for group, _message in call.args[1]]
    tenancies = Tenancy.objects.filter(unit__devices__pk__in=ids).values_list("pk", flat=True)
    assert sorted(g for g in groups if g.startswith("tenancy.")) == sorted(
        tenancy_group(pk) for pk in tenancies
    )
    # One per unit, and one per unit whose offline alert was cleared.
    assert groups.count(landlord_group(personas.a.landlord.pk)) == FLEET + 3


def test_detached_devices_are_marked_offline_in_the_same_batch(personas):
    fleet = _fleet(personas.a, 4)
    ids = [c.device.pk for c in fleet]
    Device.objects.filter(pk__in=ids).update(connected=True)

    with_work = devices_presence_apply(attach=ids[:2], detach=ids[2:])

    assert with_work == set()
    connected = dict(Device.objects.filter(pk__in=ids).values_list("pk", "connected"))
    assert connected == {ids[0]: True, ids[1]: True, ids[2]: False, ids[3]: False}


def test_the_last_change_of_a_device_in_a_batch_decides():
    changes = [
        attach.PresenceChange(1, 1, connected=True),
        attach.PresenceChange(2, 2, connected=True),
        attach.PresenceChange(1, 1, connected=False),
        attach.PresenceChange(1, 3, connected=True),
        attach.PresenceChange(2, 2, connected=False),
    ]

    assert attach.presence_resolve(changes) == ([1], [2])


@pytest.mark.django_db(transaction=True)
async def test_a_disconnect_after_a_newer_connect_leaves_the_device_connected(tpersonas):
    device_id = tpersonas.a.prepaid_device.device.pk

    old_seq, _ = await attach.attached(device_id=device_id)
    new_seq, _ = await attach.attached(device_id=device_id)
    # The old socket's disconnect is processed after the new socket attached.
    await attach.detached(device_id=device_id, seq=old_seq)

    device = await database_sync_to_async(Device.objects.get)(pk=device_id)
    assert device.connected

    await attach.detached(device_id=device_id, seq=new_seq)
    device = await database_sync_to_async(Device.objects.get)(pk=device_id)
    assert not device.connected


@pytest.mark.django_db(transaction=True)
async def test_a_disconnect_and_a_newer_connect_in_one_batch_leave_it_connected(tpersonas):
    device_id = tpersonas.a.prepaid_device.device.pk
    old_seq, _ = await attach.attached(device_id=device_id)

    # Handed in together: the disconnect first, then the new connect.
    gone = asyncio.ensure_future(attach.detached(device_id=device_id, seq=old_seq))
    again = asyncio.ensure_future(attach.attached(device_id=device_id))
    await asyncio.gather(gone, again)

    device = await database_sync_to_async(Device.objects.get)(pk=device_id)
    assert device.connected


@pytest.mark.django_db(transaction=True)
async def test_many_sockets_connecting_at_once_attach_in_few_batches(tpersonas):
    fleet = await database_sync_to_async(_fleet)(tpersonas.a)
    batches: list[int] = []

    def counted(*, attach: list[int], detach: list[int]) -> set[int]:
        batches.append(len(attach) + len(detach))
        return devices_presence_apply(attach=attach, detach=detach)

    comms = [device_communicator(c.headers) for c in fleet]
    with mock.patch("meters.attach.devices_presence_apply", counted):
        results = await asyncio.gather(*(comm.connect() for comm in comms))
        assert all(ok for ok, _ in results)
        connected = Device.objects.filter(pk__in=[c.device.pk for c in fleet], connected=True)
        assert await database_sync_to_async(connected.count)() == FLEET
        assert sum(batches) == FLEET and len(batches) < FLEET // 2
        await asyncio.gather(*(comm.disconnect() for comm in comms))
    assert await database_sync_to_async(connected.count)() == 0


needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs Redis: set REDIS_URL (CI does)"
)


@needs_redis
async def test_a_storm_joins_its_groups_at_once_and_replaces_older_sockets():
    layer = RedisChannelLayer(
        hosts=[{"address": os.environ["REDIS_URL"]}], prefix=f"test-{uuid.uuid4().hex[:8]}"
    )
    old = await layer.new_channel()
    await layer.group_add("device.1", old)
    new = [await layer.new_channel() for _ in range(3)]

    # Two sockets of device 2 connect together: the later one wins.
    await asyncio.gather(
        attach.joined(layer=layer, group="device.1", channel=new[0]),
        attach.joined(layer=layer, group="device.2", channel=new[1]),
        attach.joined(layer=layer, group="device.2", channel=new[2]),
    )

    replaced = [await asyncio.wait_for(layer.receive(c), 5) for c in [old, new[1]]]
    assert replaced == [
        {"type": "device.replaced", "channel": new[0]},
        {"type": "device.replaced", "channel": new[2]},
    ]
    # Every new socket is in its group, as group_add would have put it there.
    await layer.group_send("device.1", {"type": "relay.wake"})
    await layer.group_send("device.2", {"type": "relay.wake"})
    for channel in new:
        while (await asyncio.wait_for(layer.receive(channel), 5))["type"] != "relay.wake":
            pass
    before = await layer.group_add_many([("device.1", new[0]), ("device.3", new[1])])
    assert sorted(before["device.1"]) == sorted([old, new[0]]) and before["device.3"] == []
    # Broadcasts sent together reach every group with a channel.
    await layer.group_send_many(
        [("landlord.9", {"type": "unit.changed", "unit_id": 1}), ("device.3", {"type": "x.y"})]
    )
    assert await asyncio.wait_for(layer.receive(new[1]), 5) == {"type": "x.y"}
    await layer.flush()
