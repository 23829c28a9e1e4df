"""A switch between prepaid and postpaid at a moment the landlord chooses.

The landlord schedules it for a local date and time of the property; until
then it can be cancelled. A periodic task (landlord/tasks.py) makes every
switch whose time has come through ``landlord.people.unit_billing_mode_switch``,
the same service a switch "now" uses, so the cut-over (pending usage posted,
the closing bill when going prepaid, the balance carried) is the same. A
switch that can no longer be made (the unit was switched by hand meanwhile)
is marked failed with the reason, for the landlord to see.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from config.live import unit_changed

from .audit import audit_record
from .models import ModeSwitchSchedule, Tenancy, Unit
from .people import PeopleError, unit_billing_mode_switch

logger = logging.getLogger(__name__)

# Far enough for a tenancy's next renewal; further ahead is more likely a typo.
FURTHEST_AHEAD = timedelta(days=366)

Status = ModeSwitchSchedule.Status


def mode_switch_pending(*, unit: Unit) -> ModeSwitchSchedule | None:
    return ModeSwitchSchedule.objects.filter(unit_id=unit.pk, status=Status.PENDING).first()


def mode_switch_for_tenancy(*, tenancy: Tenancy) -> ModeSwitchSchedule | None:
    """The switch scheduled for the tenancy's unit while the tenancy still runs, for
    the tenant's page."""
    switch = ModeSwitchSchedule.objects.filter(
        unit_id=tenancy.unit_id, status=Status.PENDING
    ).first()
    if switch is None:
        return None
    if tenancy.end_date is not None and timezone.localdate(switch.at) > tenancy.end_date:
        return None
    return switch


@transaction.atomic
def mode_switch_schedule(
    *,
    unit: Unit,
    mode: str,
    at: datetime,
    confirmed: bool,
    actor_id: int | None,
    now: datetime | None = None,
) -> ModeSwitchSchedule:
    """Schedule the unit's switch to ``mode`` at ``at`` (a future moment)."""
    now = now or timezone.now()
    if mode not in Unit.BillingMode.values:
        raise PeopleError("Choose prepaid or postpaid.")
    unit = Unit.objects.select_for_update(of=("self",)).select_related("property").get(pk=unit.pk)
    if unit.billing_mode == mode:
        raise PeopleError(f"{unit.name} is {unit.get_billing_mode_display().lower()} already.")
    if at <= now:
        raise PeopleError("Choose a moment in the future, or switch now.")
    if at > now + FURTHEST_AHEAD:
        raise PeopleError("Choose a moment within a year.")
    if mode == Unit.BillingMode.PREPAID and not confirmed:
        raise PeopleError(
            "Confirm the switch: at that moment any unpaid amount becomes prepaid debt, and "
            "the supply rules for prepaid units apply to it."
        )
    pending = mode_switch_pending(unit=unit)
    if pending is not None:
        raise PeopleError(
            f"A switch to {pending.get_mode_display().lower()} is scheduled already. Cancel it "
            "first."
        )
    switch = ModeSwitchSchedule.objects.create(
        landlord_id=unit.landlord_id, unit=unit, mode=mode, at=at, created_by_id=actor_id
    )
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="unit.billing_mode_scheduled",
        unit=unit,
        data={"switch": switch.pk, "to": mode, "at": at.isoformat()},
    )
    unit_changed(unit)
    return switch


@transaction.atomic
def mode_switch_cancel(*, switch: ModeSwitchSchedule, actor_id: int | None) -> ModeSwitchSchedule:
    switch = ModeSwitchSchedule.objects.select_for_update().select_related("unit").get(pk=switch.pk)
    if switch.status != Status.PENDING:
        raise PeopleError(f"This switch is {switch.get_status_display().lower()} already.")
    switch.status = Status.CANCELLED
    switch.finished_at = timezone.now()
    switch.finished_by_id = actor_id
    switch.save(update_fields=["status", "finished_at", "finished_by"])
    audit_record(
        landlord_id=switch.landlord_id,
        actor_id=actor_id,
        action="unit.billing_mode_schedule_cancelled",
        unit=switch.unit,
        data={"switch": switch.pk, "to": switch.mode, "at": switch.at.isoformat()},
    )
    unit_changed(switch.unit)
    return switch


@transaction.atomic
def mode_switch_apply(*, switch_id: int, now: datetime | None = None) -> ModeSwitchSchedule:
    """Make one scheduled switch whose time has come (a no-op for any other)."""
    now = now or timezone.now()
    switch = ModeSwitchSchedule.objects.select_for_update().select_related("unit").get(pk=switch_id)
    if switch.status != Status.PENDING or switch.at > now:
        return switch
    try:
        with transaction.atomic():
            unit_billing_mode_switch(
                unit=switch.unit,
                mode=switch.mode,
                confirmed=True,  # confirmed when it was scheduled
                actor_id=switch.created_by_id,
                now=now,
            )
    except PeopleError as exc:
        switch.status = Status.FAILED
        switch.error = str(exc)[:300]
        audit_record(
            landlord_id=switch.landlord_id,
            actor_id=None,
            action="unit.billing_mode_schedule_failed",
            unit=switch.unit,
            reason=switch.error,
            data={"switch": switch.pk, "to": switch.mode},
        )
        unit_changed(switch.unit)
    else:
        switch.status = Status.DONE
    switch.finished_at = now
    switch.save(update_fields=["status", "error", "finished_at"])
    return switch


def mode_switches_apply_due(*, now: datetime | None = None) -> int:
    """Every scheduled switch whose time has come, each in its own transaction;
    returns how many were made. One that breaks stays scheduled for the next run."""
    now = now or timezone.now()
    done = 0
    due = ModeSwitchSchedule.objects.filter(status=Status.PENDING, at__lte=now).order_by("at", "pk")
    for switch_id in list(due.values_list("pk", flat=True)):
        try:
            switch = mode_switch_apply(switch_id=switch_id, now=now)
        except Exception:
            logger.exception("scheduled billing mode switch %s failed", switch_id)
            continue
        done += switch.status == Status.DONE
    return done
