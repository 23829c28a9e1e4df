"""Fault injection: whatever the network does to relay frames, the relay converges on desired.

A service-level property test drives the outbox and a model device through
random schedules of dropped, duplicated, re-ordered and delayed commands,
stale reports, reboots into either state (remembering or forgetting the
generation) and balance changes; socket tests replay the same faults over
the real consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.models import Device, RelayCommand
from payments.ledger import tenant_account
from supply.decision import desired_supply, supply_evaluate
from supply.reports import relay_report
from tests.factories import make_landlord_world
from tests.wsutil import FakeDevice, device_communicator

from .test_protections import _set_balance


class Rollback(Exception):
    pass


class ModelDevice:
    """A device obeying the protocol: applies generation >= its own, reports truthfully."""

    def __init__(self) -> None:
        self.relay, self.generation = "on", 0

    def apply(self, state: str, generation: int) -> None:
        assert generation >= 0
        if generation >= self.generation:
            self.relay, self.generation = state, generation


def _outstanding(device_id: int) -> RelayCommand | None:
    return (
        RelayCommand.objects.filter(
            device_id=device_id,
            status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
        )
        .order_by("-generation")
        .first()
    )


ops = st.lists(
    st.one_of(
        st.tuples(st.just("balance"), st.integers(-500, 500)),
        st.tuples(st.just("send"), st.just(0)),
        st.tuples(st.just("deliver"), st.integers(0, 5)),
        st.tuples(st.just("deliver_silently"), st.integers(0, 5)),
        st.tuples(st.just("duplicate"), st.integers(0, 5)),
        st.tuples(st.just("drop"), st.integers(0, 5)),
        st.tuples(st.just("reboot_on"), st.booleans()),
        st.tuples(st.just("reboot_off"), st.booleans()),
        st.tuples(st.just("stale_report"), st.just(0)),
    ),
    max_size=25,
)


@pytest.mark.django_db
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(schedule=ops)
def test_property_relay_converges_whatever_the_network_does(schedule):
    try:
        with transaction.atomic():
            _run_schedule(schedule)
            raise Rollback
    except Rollback:
        pass


def _run_schedule(schedule):
    world = make_landlord_world(f"f{abs(hash(tuple(schedule))) % 10**8}")
    device_id = world.prepaid_device.device.pk
    tenancy = world.prepaid_tenancy
    dev = ModelDevice()
    relay_report(device_id=device_id, state=dev.relay, generation=dev.generation)  # boot
    wire: list[tuple[str, int]] = []
    issued: list[int] = []
    for op, arg in schedule:
        if op == "balance":
            _set_balance(tenancy, arg)
            supply_evaluate(unit=world.prepaid, reason="test")
        elif op == "send":
            cmd = _outstanding(device_id)
            if cmd is not None:
                wire.append((cmd.state, cmd.generation))
                issued.append(cmd.generation)
        elif op in ("deliver", "deliver_silently") and wire:
            state, gen = wire.pop(arg % len(wire))  # any order: re-ordering
            dev.apply(state, gen)
            if op == "deliver":
                relay_report(device_id=device_id, state=dev.relay, generation=dev.generation)
        elif op == "duplicate" and wire:
            wire.append(wire[arg % len(wire)])
        elif op == "drop" and wire:
            wire.pop(arg % len(wire))
        elif op in ("reboot_on", "reboot_off"):
            dev.relay = "on" if op == "reboot_on" else "off"
            if not arg:
                dev.generation = 0  # forgot its generation
            relay_report(device_id=device_id, state=dev.relay, generation=dev.generation)
        elif op == "stale_report":
            relay_report(
                device_id=device_id,
                state="off" if dev.relay == "on" else "on",
                generation=max(dev.generation - 1, 0),
            )
    # Generations only ever increase.
    gens = list(
        RelayCommand.objects.filter(device_id=device_id)
        .order_by("created_at", "pk")
        .values_list("generation", flat=True)
    )
    assert gens == sorted(gens) and len(set(gens)) == len(gens)
    # Then the network heals: the outbox re-sends until the device's reports match.
    for _ in range(10):
        cmd = _outstanding(device_id)
        if cmd is None:
            break
        dev.apply(cmd.state, cmd.generation)
        relay_report(device_id=device_id, state=dev.relay, generation=dev.generation)
    device = Device.objects.get(pk=device_id)
    balance = tenant_account(tenancy=tenancy).balance_minor
    want, _ = desired_supply(billing_mode=world.prepaid.billing_mode, balance_minor=balance)
    assert _outstanding(device_id) is None
    assert device.desired_relay == want
    assert device.relay_converged and device.reported_relay == want
    assert dev.relay == want


# --- The same faults over the real socket ---------------------------------------

pytestmark_socket = pytest.mark.django_db(transaction=True)


async def _connect(creds, relay="on", generation=0):
    comm = device_communicator(creds.headers)
    assert (await comm.connect())[0]
    dev = FakeDevice(comm)
    dev.relay, dev.generation = relay, generation
    return dev


@database_sync_to_async
def _state(pk):
    d = Device.objects.get(pk=pk)
    return d.reported_relay, d.desired_relay, d.relay_converged


async def _wait_converged(pk, state, dev=None):
    for _ in range(200):
        if await _state(pk) == (state, state, True):
            return
        if dev is not None:  # answer whatever the server sends meanwhile
            with contextlib.suppress(TimeoutError):
                await dev.next_frame(timeout=0.05)
        else:
            await asyncio.sleep(0.05)
    raise AssertionError(await _state(pk))


@pytestmark_socket
async def test_duplicated_and_reordered_commands_over_the_socket(tpersonas):
    world = tpersonas.a
    pk = world.prepaid_device.device.pk
    dev = await _connect(world.prepaid_device)
    dev.auto_ack = False
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))  # no credit: off, generation 1
    off = await dev.next_frame()
    await database_sync_to_async(_set_balance)(world.prepaid_tenancy, 1000)
    await dev.readings((3, 1000))  # credit: on, generation 2
    on = await dev.next_frame()
    while on[3]["state"] != "on":
        on = await dev.next_frame()
    assert on[3]["generation"] > off[3]["generation"]
    # Delivered newest first, then the stale one, then the newest again (duplicate).
    await dev.apply(on)
    await dev.apply(off)
    await dev.apply(on)
    assert dev.relay == "on"
    await _wait_converged(pk, "on")
    await dev.comm.disconnect()


@pytestmark_socket
async def test_applied_but_answer_lost_then_reconnect_mid_command(tpersonas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "RELAY_RETRY_SECONDS": 0.2}
    world = tpersonas.a
    pk = world.prepaid_device.device.pk
    dev = await _connect(world.prepaid_device)
    dev.auto_ack = False
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))
    cmd = await dev.next_frame()
    # The device switches, but its answer is lost with the socket.
    dev.relay, dev.generation = cmd[3]["state"], cmd[3]["generation"]
    await dev.comm.disconnect()
    dev2 = await _connect(world.prepaid_device, relay=dev.relay, generation=dev.generation)
    await dev2.boot()  # reports off at the command's generation: that is the acknowledgement
    await _wait_converged(pk, "off")
    acked = await database_sync_to_async(
        lambda: RelayCommand.objects.get(device_id=pk, generation=cmd[3]["generation"]).status
    )()
    assert acked == RelayCommand.Status.ACKED
    await dev2.comm.disconnect()


@pytestmark_socket
async def test_a_late_answer_from_an_old_connection_does_not_undo_a_newer_command(tpersonas):
    world = tpersonas.a
    pk = world.prepaid_device.device.pk
    dev = await _connect(world.prepaid_device)
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))
    await dev.wait_for_relay("off")
    await database_sync_to_async(_set_balance)(world.prepaid_tenancy, 1000)
    await dev.readings((3, 1000))
    await dev.wait_for_relay("on")
    # A delayed result of the earlier "off" command arrives (stale generation).
    await dev.send_raw(json.dumps([3, "relay-1-1", {"state": "off", "generation": 1}]))
    # The server re-sends the newest command; the device (really on) answers truthfully.
    await _wait_converged(pk, "on", dev)
    assert dev.relay == "on"
    await dev.comm.disconnect()
