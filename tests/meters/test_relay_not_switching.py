"""A relay that does not switch: its command goes out on the retry schedule, a limited
number of times, and then the landlord is told, over hours of simulated time.

The outbox is played here as a device socket plays it (send what is due, wait
until the next attempt), with a relay that answers at once and never moves.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from landlord.models import AuditEvent
from meters.models import Alert, Device, RelayCommand
from supply.decision import supply_evaluate
from supply.relay import relay_command_due, relay_command_mark_sent, relay_next_attempt_at
from supply.reports import relay_report

from .test_protections import _set_balance

pytestmark = pytest.mark.django_db


def _play_outbox(device_id, answer, *, start, until, limit=500):
    """Send each command when it falls due and report the relay's answer at once."""
    sent: list[tuple[datetime, int]] = []
    t = start
    while len(sent) < limit:
        due = relay_next_attempt_at(device_id=device_id)
        if due is None or max(due, t) > until:
            break
        t = max(due, t)
        cmd = relay_command_due(device_id=device_id, now=t)
        assert cmd is not None
        cmd = relay_command_mark_sent(command_id=cmd.pk, now=t)
        sent.append((t, cmd.generation))
        state, generation = answer(cmd, t)
        relay_report(device_id=device_id, state=state, generation=generation, now=t)
    return sent


def _cut_off(world):
    """No credit: the server wants the relay (on, never commanded) off."""
    device_id = world.prepaid_device.device.pk
    _set_balance(world.prepaid_tenancy, -100)
    relay_report(device_id=device_id, state="on", generation=0)
    supply_evaluate(unit=world.prepaid, reason="test")
    assert Device.objects.get(pk=device_id).desired_relay == "off"
    return device_id


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda cmd, t: ("on", cmd.generation), id="applied-but-still-on"),
        pytest.param(lambda cmd, t: ("on", cmd.generation - 1), id="never-applies"),
    ],
)
def test_a_relay_that_never_switches_gets_a_bounded_number_of_commands(personas, answer):
    world = personas.a
    device_id = _cut_off(world)
    start = timezone.now() + timedelta(seconds=1)
    # when: two hours of a relay that answers every command and stays on
    sent = _play_outbox(device_id, answer, start=start, until=start + timedelta(hours=2))
    # then: one command, sent RELAY_MAX_ATTEMPTS (10) times on the retry schedule
    assert len(sent) == 10
    assert {generation for _t, generation in sent} == {1}
    assert RelayCommand.objects.filter(device_id=device_id).count() == 1
    assert AuditEvent.objects.filter(action__startswith="relay.").count() == 2  # off, given up
    assert AuditEvent.objects.filter(action="relay.not_switching").count() == 1
    cmd = RelayCommand.objects.get(device_id=device_id)
    assert cmd.status == RelayCommand.Status.REJECTED
    assert relay_command_due(device_id=device_id, now=start + timedelta(days=1)) is None
    # and the landlord is told, once
    alert = Alert.objects.get(kind=Alert.Kind.RELAY_NOT_SWITCHING, cleared_at__isnull=True)
    assert alert.audience == Alert.Audience.LANDLORD and alert.device_id == device_id
    assert "does not switch off" in alert.message and "after 10 attempts" in alert.message


def test_retries_of_a_relay_that_did_not_switch_follow_the_backoff(personas):
    world = personas.a
    device_id = _cut_off(world)
    start = timezone.now() + timedelta(seconds=1)
    sent = _play_outbox(
        device_id,
        lambda cmd, t: ("on", cmd.generation),
        start=start,
        until=start + timedelta(hours=1),
    )
    gaps = [(b - a).total_seconds() for (a, _g), (b, _h) in itertools.pairwise(sent)]
    assert gaps == [5, 10, 20, 40, 60, 60, 60, 60, 60]


def test_a_relay_that_switches_later_clears_the_alert(client, personas):
    world = personas.a
    device_id = _cut_off(world)
    start = timezone.now() + timedelta(seconds=1)
    _play_outbox(
        device_id,
        lambda cmd, t: ("on", cmd.generation),
        start=start,
        until=start + timedelta(hours=1),
    )
    assert Alert.objects.filter(kind=Alert.Kind.RELAY_NOT_SWITCHING, cleared_at=None).exists()
    client.force_login(world.staff)
    page = client.get(f"/landlord/units/{world.prepaid.pk}/").content.decode()
    assert "Relay not switching: The relay of meter" in page
    # The landlord fixes the relay; it reports the state the server wants.
    relay_report(device_id=device_id, state="off", generation=1)
    assert not Alert.objects.filter(kind=Alert.Kind.RELAY_NOT_SWITCHING, cleared_at=None).exists()
    assert RelayCommand.objects.get(device_id=device_id).status == RelayCommand.Status.ACKED
    assert Device.objects.get(pk=device_id).relay_converged
    page = client.get(f"/landlord/units/{world.prepaid.pk}/").content.decode()
    assert "Relay not switching" not in page


def test_a_relay_that_will_not_stay_switched_is_not_answered_with_a_command_per_report(
    personas,
):
    world = personas.a
    device_id = _cut_off(world)
    start = timezone.now() + timedelta(seconds=1)

    def flaps(cmd, t):
        # Confirms the command, then reports at once that it is back on.
        relay_report(device_id=device_id, state=cmd.state, generation=cmd.generation, now=t)
        return "on", cmd.generation

    sent = _play_outbox(device_id, flaps, start=start, until=start + timedelta(hours=2))
    assert len(sent) == 10
    assert RelayCommand.objects.filter(device_id=device_id).count() == 10
    assert AuditEvent.objects.filter(action__startswith="relay.").count() == 11
    assert Alert.objects.filter(kind=Alert.Kind.RELAY_NOT_SWITCHING, cleared_at=None).count() == 1
