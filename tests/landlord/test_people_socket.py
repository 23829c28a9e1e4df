"""A registered device on the device socket: a rotated secret refuses the old one,
and the landlord's live page turns the unit from "waiting for first connection"
to "connected" when the device connects."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from landlord.models import Unit
from meters.devices import device_register, device_secret_rotate
from tests.factories import DeviceCreds
from tests.wsutil import FakeDevice, browser_communicator, device_communicator

pytestmark = pytest.mark.django_db(transaction=True)


async def _closed_with(comm, code: int) -> None:
    connected, _ = await comm.connect()
    assert connected
    closed = await comm.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == code, closed


async def test_a_rotated_secret_refuses_the_old_one_on_the_socket(tpersonas):
    creds = tpersonas.a.prepaid_device
    new = await database_sync_to_async(device_secret_rotate)(device=creds.device, actor_id=None)

    await _closed_with(device_communicator(creds.headers), 4401)

    comm = device_communicator(DeviceCreds(device=creds.device, secret=new).headers)
    connected, _ = await comm.connect()
    assert connected
    reply = await FakeDevice(comm).call("Heartbeat", {})
    assert reply[0] == 3
    await comm.disconnect()


@database_sync_to_async
def _register(world) -> DeviceCreds:
    unit = Unit.objects.create(
        landlord=world.landlord, property=world.prop, name="Flat 9", tariff=world.tariff
    )
    device, secret = device_register(unit=unit, ident="acme-0042", protocol="native", actor_id=None)
    return DeviceCreds(device=device, secret=secret)


@database_sync_to_async
def _session(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def test_the_live_page_turns_connected_when_the_device_connects(tpersonas):
    creds = await _register(tpersonas.a)
    page = browser_communicator("/ws/live/landlord/", await _session(tpersonas.a.staff))
    assert (await page.connect())[0]
    snapshot = await page.receive_from(timeout=5)
    row = f'id="unit-{creds.device.unit_id}"'
    assert row in snapshot and "waiting for first connection" in snapshot

    device = device_communicator(creds.headers)
    assert (await device.connect())[0]

    # the presence change re-renders the unit's row (other units may update too)
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        html = await page.receive_from(
            timeout=max(deadline - asyncio.get_running_loop().time(), 0.1)
        )
        if row in html and 'data-testid="device-status">connected<' in html:
            break
    await device.disconnect()
    await page.disconnect()


async def test_rotating_closes_a_socket_opened_with_the_old_secret(tpersonas):
    creds = tpersonas.a.prepaid_device
    comm = device_communicator(creds.headers)
    assert (await comm.connect())[0]
    await FakeDevice(comm).call("Heartbeat", {})

    await database_sync_to_async(device_secret_rotate)(device=creds.device, actor_id=None)

    while True:
        out = await comm.receive_output(timeout=5)
        if out["type"] == "websocket.close":
            break
    assert out["code"] == 4401
    await _closed_with(device_communicator(creds.headers), 4401)


@database_sync_to_async
def _readings_of(device) -> int:
    from meters.models import Reading

    return Reading.objects.filter(device=device).count()


async def test_frames_after_the_secret_changed_are_not_recorded(tpersonas):
    creds = tpersonas.a.prepaid_device
    comm = device_communicator(creds.headers)
    connected, _ = await comm.connect()
    assert connected
    dev = FakeDevice(comm)
    await dev.readings((1, 1000))
    assert await _readings_of(creds.device) == 1
    await database_sync_to_async(device_secret_rotate)(device=creds.device, actor_id=None)
    closed = await comm.receive_output(timeout=5)
    while closed["type"] != "websocket.close":  # a relay command may come first
        closed = await comm.receive_output(timeout=5)
    assert closed["code"] == 4401, closed
    # the device has not seen the close yet and sends another frame on the old secret
    await dev.send_raw(
        '[2, "m-2", "MeterValues", {"readings": [{"seq": 2, '
        '"taken_at": "2026-01-01T00:00:00Z", "register_wh": 2000}]}]'
    )
    assert await comm.receive_nothing(timeout=0.5), "nothing is sent after the close"
    assert await _readings_of(creds.device) == 1
    await comm.disconnect()


async def test_a_refused_socket_records_nothing_it_sends(tpersonas):
    creds = tpersonas.a.prepaid_device
    comm = device_communicator([])
    connected, _ = await comm.connect()
    assert connected
    closed = await comm.receive_output(timeout=5)
    assert closed["code"] == 4401
    await FakeDevice(comm).send_raw('[2, "m-1", "Heartbeat", {}]')
    assert await comm.receive_nothing(timeout=0.5)
    assert await _readings_of(creds.device) == 0
    await comm.disconnect()
