"""A device reports its relay state: acknowledge, correct or give up on commands."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.live import broadcast_on_commit, device_group, unit_changed
from landlord.audit import audit_record
from meters.models import (
    Device,
    RelayCommand,
    RelayState,
)

from . import alerts
from .decision import supply_evaluate
from .relay import relay_command_issue

logger = logging.getLogger(__name__)


def _relay_give_up(*, device: Device, command: RelayCommand, reported: str, now: datetime) -> None:
    """The relay answered every attempt without switching: stop sending and tell the landlord."""
    command.status = RelayCommand.Status.REJECTED
    command.save(update_fields=["status"])
    audit_record(
        landlord_id=device.landlord_id,
        action="relay.not_switching",
        device=device,
        reason=f"still {reported} after {command.attempts} attempts to switch {command.state}",
        data={"generation": command.generation, "attempts": command.attempts},
    )
    alerts.relay_not_switching_raise(device=device, command=command, reported=reported, now=now)


@transaction.atomic
def relay_report(
    *, device_id: int, state: str, generation: int, now: datetime | None = None
) -> Device:
    """Record the relay state a device reports and reconcile it with the desired state.

    A relay that does not switch must not make the server mint commands as
    fast as it answers: a report that contradicts an outstanding command
    leaves it on its retry schedule, and after ``RELAY_MAX_ATTEMPTS`` sends
    the command is given up and the landlord alerted.
    """
    device = Device.objects.select_for_update().select_related("unit").get(pk=device_id)
    now = now or timezone.now()
    if device.reported_relay == RelayState.OFF and state == RelayState.ON:
        alerts.supply_restored_raise(device=device, now=now)
    device.reported_relay = state
    device.reported_generation = generation
    device.reported_at = now
    device.last_seen_at = now
    device.save(
        update_fields=["reported_relay", "reported_generation", "reported_at", "last_seen_at"]
    )
    if device.desired_generation == 0:
        # Nothing was ever commanded: derive the first command from the unit's state.
        supply_evaluate(unit=device.unit, reason="device first seen", now=now)
        device.refresh_from_db()
    newest = (
        RelayCommand.objects.select_for_update()
        .filter(device=device, generation=device.desired_generation)
        .first()
    )
    outstanding = [RelayCommand.Status.PENDING, RelayCommand.Status.SENT]
    max_attempts = int(settings.SUBMETER["RELAY_MAX_ATTEMPTS"])
    if state == device.desired_relay and generation >= device.desired_generation:
        RelayCommand.objects.filter(
            device=device,
            generation__lte=device.desired_generation,
            status__in=[*outstanding, RelayCommand.Status.REJECTED],
        ).update(status=RelayCommand.Status.ACKED, acked_at=now)
        alerts.relay_switching_again(device=device, now=now)
    elif newest is not None and newest.status == RelayCommand.Status.REJECTED:
        pass  # given up; the landlord was told, a reconnection tries again
    elif (
        generation == device.desired_generation
        and newest is not None
        and newest.status in outstanding
    ):
        # It has the newest command and answers that the relay did not move: the
        # command stays on its retry schedule, up to the limit.
        if newest.attempts >= max_attempts:
            _relay_give_up(device=device, command=newest, reported=state, now=now)
    elif generation >= device.desired_generation:
        # The relay left the state it confirmed (switched by hand, rebooted), is
        # ahead of the server, or was never commanded: a new command with a higher
        # generation, which it cannot ignore as stale. If that follows the
        # previous command within its retry interval, the new one continues the
        # previous one's schedule and limit, so a relay that will not stay put
        # is not answered with a new command per report either.
        attempts, due = 0, now
        if newest is not None and (
            newest.status in outstanding
            or (newest.status == RelayCommand.Status.ACKED and newest.next_attempt_at > now)
        ):
            attempts = newest.attempts
            due = now if attempts <= 1 else max(now, newest.next_attempt_at)
        if newest is not None and attempts >= max_attempts:
            _relay_give_up(device=device, command=newest, reported=state, now=now)
        else:
            relay_command_issue(
                device=device,
                state=device.desired_relay,
                reason=f"device reported {state}; restoring {device.desired_relay}",
                attempts=attempts,
                next_attempt_at=due,
            )
    elif newest is not None:
        # The device has not applied the newest command yet: send it again now,
        # each time counting towards the limit.
        if newest.attempts >= max_attempts:
            _relay_give_up(device=device, command=newest, reported=state, now=now)
        else:
            newest.status = (
                RelayCommand.Status.SENT if newest.last_sent_at else RelayCommand.Status.PENDING
            )
            newest.next_attempt_at, newest.acked_at = now, None
            newest.save(update_fields=["status", "next_attempt_at", "acked_at"])
            broadcast_on_commit(device_group(device.pk), {"type": "relay.wake"})
    unit_changed(device.unit)
    return device


@transaction.atomic
def relay_report_unversioned(*, device_id: int, state: str) -> Device:
    """A report from a device without generations (Shelly), at the last confirmed one.

    If a newer command is outstanding, this only says the device has not applied
    it yet, so it is re-sent; if none is, a state that differs from the desired one
    (a button press, a reboot) is corrected with a new generation.
    """
    generation = (
        Device.objects.filter(pk=device_id).values_list("reported_generation", flat=True).get()
    )
    return relay_report(device_id=device_id, state=state, generation=generation)
