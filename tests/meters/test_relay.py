"""Relay control converges on the desired state whatever the socket does."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from hypothesis import given
from hypothesis import strategies as st

from landlord.models import Unit
from meters.models import Device, RelayCommand
from supply.decision import desired_supply
from tests.wsutil import FakeDevice, device_communicator

from .test_device_socket import _balance, _credit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fast_retry(settings):
    settings.SUBMETER = {
        **settings.SUBMETER,
        "RELAY_RETRY_SECONDS": 0.2,
        "RELAY_RETRY_MAX_SECONDS": 0.5,
    }


async def _connect(creds, relay="on", generation=0):
    comm = device_communicator(creds.headers)
    connected, _ = await comm.connect()
    assert connected
    dev = FakeDevice(comm)
    dev.relay, dev.generation = relay, generation
    return dev


@database_sync_to_async
def _device(pk):
    return Device.objects.get(pk=pk)


async def _converged(pk, state, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        d = await _device(pk)
        if d.reported_relay == state and d.desired_relay == state and d.relay_converged:
            return d
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"device {pk} did not converge on {state}: {d.reported_relay}/{d.desired_relay}"
    )


async def test_credit_running_out_cuts_supply_and_credit_restores_it(tpersonas):
    world = tpersonas.a
    await _credit(world.prepaid_tenancy, 50)
    dev = await _connect(world.prepaid_device)
    await dev.boot()
    await dev.readings((1, 0), (2, 1000), (3, 2000))  # 2 kWh at 30p = 60p > 50p
    assert await _balance(world.prepaid_tenancy) == -10
    await dev.wait_for_relay("off")
    device = await _converged(world.prepaid_device.device.pk, "off")
    assert device.desired_generation == dev.generation
    await _credit(world.prepaid_tenancy, 1000)
    # A credit outside the payment path does not re-evaluate on its own; the next reading does.
    await dev.readings((4, 2000))
    await dev.wait_for_relay("on")
    await _converged(world.prepaid_device.device.pk, "on")
    await dev.comm.disconnect()


async def test_postpaid_is_never_cut_for_a_negative_balance(tpersonas):
    world = tpersonas.a
    dev = await _connect(world.postpaid_device)
    await dev.boot()
    await dev.readings((1, 0), (2, 1000), (3, 2000), (4, 3000))
    assert await _balance(world.postpaid_tenancy) == -90
    assert not dev.unread_calls
    with pytest.raises(TimeoutError):
        await dev.next_frame(timeout=0.5)
    assert dev.relay == "on"
    await dev.comm.disconnect()


async def test_unacknowledged_command_is_resent_with_backoff(tpersonas, fast_retry):
    world = tpersonas.a
    dev = await _connect(world.prepaid_device)
    dev.auto_ack = False
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))  # no credit at all: off
    first = await dev.next_call(timeout=5)
    second = await dev.next_call(timeout=5)
    assert first[2] == second[2] == "SetRelay"
    assert first[3] == second[3] == {"state": "off", "generation": first[3]["generation"]}
    assert first[1] != second[1]  # a new message id per attempt
    await dev.apply(second)
    await _converged(world.prepaid_device.device.pk, "off")
    cmd = await database_sync_to_async(RelayCommand.objects.get)(
        device_id=world.prepaid_device.device.pk, generation=first[3]["generation"]
    )
    assert cmd.status == RelayCommand.Status.ACKED and cmd.attempts >= 2
    await dev.comm.disconnect()


async def _cut_off_command_lost_with_the_socket(world) -> None:
    """Spend the credit, receive the cut-off command, and drop the socket unanswered."""
    dev = await _connect(world.prepaid_device)
    await dev.boot()
    dev.auto_ack = False
    await dev.readings((1, 0), (2, 1000))
    lost = await dev.next_call(timeout=5)
    assert lost[2] == "SetRelay"
    await dev.comm.disconnect()


async def test_command_issued_while_offline_is_sent_on_reconnect(tpersonas):
    world = tpersonas.a
    await _cut_off_command_lost_with_the_socket(world)
    dev2 = await _connect(world.prepaid_device)
    await dev2.boot()
    await dev2.wait_for_relay("off")
    await _converged(world.prepaid_device.device.pk, "off")
    await dev2.comm.disconnect()


async def test_outstanding_command_goes_out_on_connect_before_any_boot(tpersonas):
    # A socket with nothing to send waits without querying; one with a command
    # outstanding must not wait for a boot or a wake-up to send it.
    world = tpersonas.a
    await _cut_off_command_lost_with_the_socket(world)
    dev2 = await _connect(world.prepaid_device)
    call = await dev2.next_call(timeout=5)
    assert call[2] == "SetRelay" and call[3]["state"] == "off"
    await dev2.comm.disconnect()


async def test_device_rebooting_into_the_wrong_state_is_corrected(tpersonas):
    world = tpersonas.a
    dev = await _connect(world.prepaid_device)
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))
    await dev.wait_for_relay("off")
    gen = dev.generation
    await dev.comm.disconnect()
    # Power-cycled: relay back on, generation remembered.
    dev2 = await _connect(world.prepaid_device, relay="on", generation=gen)
    await dev2.boot()
    await dev2.wait_for_relay("off")
    assert dev2.generation > gen
    await _converged(world.prepaid_device.device.pk, "off")
    await dev2.comm.disconnect()


async def test_device_that_forgot_its_generation_is_brought_back(tpersonas):
    world = tpersonas.a
    dev = await _connect(world.prepaid_device)
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))
    await dev.wait_for_relay("off")
    await dev.comm.disconnect()
    dev2 = await _connect(world.prepaid_device, relay="on", generation=0)
    await dev2.boot()
    await dev2.wait_for_relay("off")
    await _converged(world.prepaid_device.device.pk, "off")
    await dev2.comm.disconnect()


async def test_device_ahead_of_the_server_gets_a_higher_generation(tpersonas):
    world = tpersonas.a
    await _credit(world.prepaid_tenancy, 1000)
    dev = await _connect(world.prepaid_device, relay="off", generation=50)
    await dev.boot()
    await dev.wait_for_relay("on")
    assert dev.generation == 51
    await _converged(world.prepaid_device.device.pk, "on")
    await dev.comm.disconnect()


async def test_stale_relay_report_does_not_ack_a_newer_command(tpersonas):
    world = tpersonas.a
    dev = await _connect(world.prepaid_device)
    dev.auto_ack = False
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))
    cmd = await dev.next_call(timeout=5)
    gen = cmd[3]["generation"]
    # An old report (the generation before) says "on": not an acknowledgement.
    await dev.call("RelayStatus", {"state": "on", "generation": gen - 1})
    device = await _device(world.prepaid_device.device.pk)
    assert device.desired_relay == "off" and not device.relay_converged
    await dev.apply(cmd)
    await _converged(world.prepaid_device.device.pk, "off")
    await dev.comm.disconnect()


@given(
    mode=st.sampled_from([Unit.BillingMode.PREPAID, Unit.BillingMode.POSTPAID]),
    balance=st.one_of(st.none(), st.integers(-(10**9), 10**9)),
)
def test_property_only_a_prepaid_tenant_without_credit_is_cut(mode, balance):
    state, reason = desired_supply(billing_mode=mode, balance_minor=balance)
    should_cut = mode == Unit.BillingMode.PREPAID and balance is not None and balance <= 0
    assert (state == "off") == should_cut
    assert reason


async def test_a_command_whose_wake_up_was_lost_is_found_by_the_sweep(tpersonas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "RELAY_SAFETY_CHECK_SECONDS": 0.3}
    world = tpersonas.a
    await _credit(world.prepaid_tenancy, 1000)
    dev = await _connect(world.prepaid_device)
    await dev.boot()
    await _converged(world.prepaid_device.device.pk, "on")

    @database_sync_to_async
    def issue_silently():
        # As if the channel-layer message were dropped: the outbox row only.
        from django.db import transaction

        from supply.relay import relay_command_issue

        with transaction.atomic():
            device = Device.objects.select_for_update().get(pk=world.prepaid_device.device.pk)
            cmd = relay_command_issue(device=device, state="off", reason="test")
            transaction.get_connection().run_on_commit = []  # drop the wake-up
        return cmd

    cmd = await issue_silently()
    await dev.wait_for_relay("off", timeout=5)
    assert dev.generation == cmd.generation
    await dev.comm.disconnect()


@pytest.fixture
def stuck_relay_limits(settings):
    settings.SUBMETER = {
        **settings.SUBMETER,
        "RELAY_RETRY_SECONDS": 0.01,
        "RELAY_RETRY_MAX_SECONDS": 0.05,
        "RELAY_MAX_ATTEMPTS": 4,
    }


@database_sync_to_async
def _relay_history(device_id):
    from landlord.models import AuditEvent
    from meters.models import Alert

    return (
        list(RelayCommand.objects.filter(device_id=device_id).values_list("generation", "status")),
        AuditEvent.objects.filter(action__startswith="relay.").count(),
        list(
            Alert.objects.filter(
                device_id=device_id, kind=Alert.Kind.RELAY_NOT_SWITCHING, cleared_at=None
            ).values_list("message", flat=True)
        ),
    )


async def _answer_still_on(dev, pk, sends=4):
    """Answer the first ``sends`` SetRelay calls "still on", as a relay that cannot switch."""
    calls = []
    for _ in range(sends):
        call = await dev.next_call(timeout=5)
        calls.append(call)
        payload = {"state": "on", "generation": call[3]["generation"]}
        await dev.comm.send_to(text_data=json.dumps([3, call[1], payload]))
    for _ in range(200):  # until the server has read the last answer
        if (await _relay_history(pk))[0][0][1] == RelayCommand.Status.REJECTED:
            break
        await asyncio.sleep(0.02)
    return calls


async def test_a_relay_that_cannot_switch_is_not_sent_a_storm_of_commands(
    tpersonas, stuck_relay_limits
):
    world = tpersonas.a
    pk = world.prepaid_device.device.pk
    dev = await _connect(world.prepaid_device)
    dev.auto_ack = False
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))  # no credit: off
    # given: a relay that takes every command and stays on
    calls = await _answer_still_on(dev, pk)
    # then: the same command four times (the limit), then nothing more
    assert [c[2] for c in calls] == ["SetRelay"] * 4
    assert [c[1] for c in calls] == ["relay-1-1", "relay-1-2", "relay-1-3", "relay-1-4"]
    with pytest.raises(TimeoutError):
        await dev.next_call(timeout=0.3)
    commands, audits, alerts = await _relay_history(pk)
    assert commands == [(1, RelayCommand.Status.REJECTED)] and audits == 2
    assert len(alerts) == 1 and "does not switch off" in alerts[0]
    # when: the relay reports off at last (repaired), the alert clears
    await dev.call("RelayStatus", {"state": "off", "generation": 1})
    commands, _audits, alerts = await _relay_history(pk)
    assert commands == [(1, RelayCommand.Status.ACKED)] and alerts == []
    await dev.comm.disconnect()


async def test_a_command_given_up_on_is_tried_again_when_the_device_reconnects(
    tpersonas, stuck_relay_limits
):
    world = tpersonas.a
    pk = world.prepaid_device.device.pk
    dev = await _connect(world.prepaid_device)
    dev.auto_ack = False
    await dev.boot()
    await dev.readings((1, 0), (2, 1000))
    await _answer_still_on(dev, pk)
    await dev.comm.disconnect()
    # After a power cycle the relay works again.
    dev2 = await _connect(world.prepaid_device, relay="on", generation=1)
    await dev2.boot()
    await dev2.wait_for_relay("off")
    await _converged(pk, "off")
    commands, _audits, alerts = await _relay_history(pk)
    assert commands == [(1, RelayCommand.Status.ACKED)] and alerts == []
    await dev2.comm.disconnect()
