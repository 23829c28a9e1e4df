"""The relay command outbox: absolute commands with generations, sent and
retried until the device acknowledges them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from config.live import broadcast_on_commit, device_group
from landlord.audit import audit_record
from meters.models import (
    Device,
    RelayCommand,
)

logger = logging.getLogger(__name__)


def relay_command_issue(
    *,
    device: Device,
    state: str,
    reason: str,
    source: str = RelayCommand.Source.AUTOMATIC,
    actor_id: int | None = None,
    attempts: int = 0,
    next_attempt_at: datetime | None = None,
) -> RelayCommand:
    """Issue an absolute command with the next generation. ``device`` must be locked.

    ``attempts`` and ``next_attempt_at`` continue the retry schedule of a
    command the relay did not stay at (see ``relay_report``).
    """
    now = timezone.now()
    RelayCommand.objects.filter(
        device=device, status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT]
    ).update(status=RelayCommand.Status.SUPERSEDED)
    generation = max(device.desired_generation, device.reported_generation) + 1
    command = RelayCommand.objects.create(
        landlord_id=device.landlord_id,
        device=device,
        generation=generation,
        state=state,
        reason=reason[:200],
        source=source,
        attempts=attempts,
        next_attempt_at=next_attempt_at or now,
    )
    device.desired_relay, device.desired_generation = state, generation
    device.desired_reason = reason[:200]
    device.save(update_fields=["desired_relay", "desired_generation", "desired_reason"])
    audit_record(
        landlord_id=device.landlord_id,
        actor_id=actor_id,
        action=f"relay.{state}",
        device=device,
        reason=reason[:300],
        data={"generation": generation, "source": source},
    )
    broadcast_on_commit(device_group(device.pk), {"type": "relay.wake"})
    return command


def relay_sendable() -> Q:
    """Outstanding commands with attempts left on this connection (``relay_resend_now``)."""
    return Q(
        status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
        attempts__lt=settings.SUBMETER["RELAY_MAX_ATTEMPTS"],
    )


def relay_command_due(*, device_id: int, now: datetime | None = None) -> RelayCommand | None:
    """The one outstanding command to (re)send now, if any."""
    now = now or timezone.now()
    return (
        RelayCommand.objects.filter(relay_sendable(), device_id=device_id, next_attempt_at__lte=now)
        .order_by("-generation")
        .first()
    )


def relay_next_attempt_at(*, device_id: int) -> datetime | None:
    cmd = (
        RelayCommand.objects.filter(relay_sendable(), device_id=device_id)
        .order_by("-generation")
        .first()
    )
    return cmd.next_attempt_at if cmd else None


def _relay_retry_delay(attempts: int) -> timedelta:
    cfg = settings.SUBMETER
    return timedelta(
        seconds=min(cfg["RELAY_RETRY_SECONDS"] * (2**attempts), cfg["RELAY_RETRY_MAX_SECONDS"])
    )


@transaction.atomic
def relay_command_mark_sent(*, command_id: int, now: datetime | None = None) -> RelayCommand:
    cmd = RelayCommand.objects.select_for_update().get(pk=command_id)
    now = now or timezone.now()
    delay = _relay_retry_delay(min(cmd.attempts, 30))
    cmd.attempts += 1
    cmd.last_sent_at = now
    cmd.next_attempt_at = now + delay
    if cmd.status == RelayCommand.Status.PENDING:
        cmd.status = RelayCommand.Status.SENT
    cmd.save(update_fields=["attempts", "last_sent_at", "next_attempt_at", "status"])
    return cmd


@transaction.atomic
def relay_resend_now(*, device_id: int, connected: bool = False) -> int:
    """After a (re)connect or boot: the outstanding command goes out at once.
    Returns how many commands are outstanding.

    A new connection (``connected``; often a power cycle or a repair) also
    gets the full number of attempts again, for a command given up on too.
    """
    now = timezone.now()
    outstanding = [RelayCommand.Status.PENDING, RelayCommand.Status.SENT]
    if not connected:
        return RelayCommand.objects.filter(device_id=device_id, status__in=outstanding).update(
            next_attempt_at=now
        )
    desired = Device.objects.filter(pk=device_id).values("desired_generation")[:1]
    RelayCommand.objects.filter(
        device_id=device_id, generation=desired, status=RelayCommand.Status.REJECTED
    ).update(status=RelayCommand.Status.SENT)
    return RelayCommand.objects.filter(device_id=device_id, status__in=outstanding).update(
        next_attempt_at=now, attempts=0
    )


def relays_resend_now(*, device_ids: list[int]) -> set[int]:
    """``relay_resend_now(connected=True)`` for many newly connected devices in
    set-based statements; returns the devices with a command outstanding."""
    if not device_ids:
        return set()
    now = timezone.now()
    outstanding = [RelayCommand.Status.PENDING, RelayCommand.Status.SENT]
    RelayCommand.objects.filter(
        device_id__in=device_ids,
        generation=F("device__desired_generation"),
        status=RelayCommand.Status.REJECTED,
    ).update(status=RelayCommand.Status.SENT)
    waiting = RelayCommand.objects.filter(device_id__in=device_ids, status__in=outstanding)
    with_work = set(waiting.values_list("device_id", flat=True))
    if with_work:
        waiting.update(next_attempt_at=now, attempts=0)
    return with_work
