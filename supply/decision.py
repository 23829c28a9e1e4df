"""What a unit's supply should be, and bringing it there.

``supply_evaluate`` is the one place that runs after a balance changes: it
brings the relay, the cut-off notice and the alerts up to date.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.tasks import task
from django.utils import timezone

from config.live import unit_changed
from landlord.models import Tenancy, Unit
from meters.models import (
    CutoffNotice,
    Device,
    RelayCommand,
    RelayState,
)
from payments.ledger import tenant_account

from . import alerts
from .cutoff import protections_for
from .protections import (
    Protections,
    automatic_supply,
    cutoff_due_at,
    earliest_cutoff,
)
from .relay import relay_command_issue

logger = logging.getLogger(__name__)


def desired_supply(
    *,
    billing_mode: str,
    balance_minor: int | None,
    protections: Protections | None = None,
    noticed_at: datetime | None = None,
    now: datetime | None = None,
    override: str = "",
    not_before: datetime | None = None,
) -> tuple[str, str]:
    """The supply a unit should have, from its state alone (pure).

    Billing decides whether the supply *may* go off; the protections
    (supply/protections.py) can then only keep it on, never delay
    reconnection. Without ``protections`` the billing decision is returned
    as it is (a notice is taken as given). A landlord's manual override wins,
    except that "off" is refused where landlord disconnection is forbidden.
    """
    if override == RelayState.ON:
        return RelayState.ON, "manual override: on"
    if override == RelayState.OFF:
        if protections is not None and not protections.landlord_may_disconnect:
            return RelayState.ON, "manual off refused: landlord disconnection is not allowed"
        return RelayState.OFF, "manual override: off"
    if billing_mode == Unit.BillingMode.PREPAID:
        if balance_minor is None:
            return RelayState.ON, "no tenant: left on"
        wants_off = balance_minor <= 0
        on_reason = "prepaid credit available"
    else:
        wants_off, on_reason = False, "postpaid"
    if protections is None:
        return (
            (RelayState.OFF, "prepaid credit used up") if wants_off else (RelayState.ON, on_reason)
        )
    state, why = automatic_supply(
        wants_off=wants_off,
        wants_off_reason="prepaid credit used up",
        on_reason=on_reason,
        protections=protections,
        noticed_at=noticed_at,
        now=now or timezone.now(),
        not_before=not_before,
    )
    return (RelayState.ON if state == "on" else RelayState.OFF), why


def unit_balance(unit: Unit) -> int | None:
    tenancy = Tenancy.objects.active().filter(unit=unit).first()
    if tenancy is None:
        return None
    return tenant_account(tenancy=tenancy).balance_minor


@transaction.atomic
def supply_evaluate(*, unit: Unit, reason: str, now: datetime | None = None) -> list[RelayCommand]:
    """Bring a unit's desired relay state, cut-off notice and alerts up to date.

    Called after every posting that changes a balance (readings, payments),
    by the periodic reconciliation (so a scheduled cut-off happens on time
    without a new reading), and after any change to protections or overrides.
    """
    now = now or timezone.now()
    # The tariff comes with it for the runway alert's price (supply.alerts).
    unit = Unit.objects.select_related("property", "tariff").get(pk=unit.pk)
    # The tenant's notification choices come with it (supply.alerts.low_credit_threshold).
    tenancy = Tenancy.objects.active().filter(unit=unit).select_related("notifications").first()
    balance = tenant_account(tenancy=tenancy).balance_minor if tenancy is not None else None
    protections = protections_for(unit=unit, tenancy=tenancy)
    notice = None
    if tenancy is not None:
        notice = (
            CutoffNotice.objects.select_for_update()
            .filter(tenancy=tenancy, status=CutoffNotice.Status.SCHEDULED)
            .first()
        )
    wants_off = unit.is_prepaid and balance is not None and balance <= 0
    # A notice is only good while nothing stands between it and the cut-off: once
    # a protection or a manual "on" has held the supply on, the balance and the
    # tenant's situation may have changed, so a later cut-off needs a new notice
    # with the amount as it is then and the full notice period.
    held_on = protections.blocking_reason() or (
        "manual override: on" if unit.override_state == RelayState.ON else ""
    )
    noticed = False
    if notice is not None and (not wants_off or held_on):
        notice.status = CutoffNotice.Status.CANCELLED
        notice.closed_at = now
        why_closed = held_on if wants_off else "balance above zero"
        notice.close_reason = f"{why_closed} ({reason})"[:200]
        notice.save(update_fields=["status", "closed_at", "close_reason"])
        notice = None
    if notice is None and wants_off and tenancy is not None and balance is not None and not held_on:
        notice = CutoffNotice.objects.create(
            landlord_id=unit.landlord_id,
            unit=unit,
            tenancy=tenancy,
            noticed_at=now,
            earliest_at=earliest_cutoff(protections, now),
            balance_minor=balance,
        )
        noticed = True
        alerts.cutoff_warning_raise(notice=notice, protections=protections, now=now)
    state, why = desired_supply(
        billing_mode=unit.billing_mode,
        balance_minor=balance,
        protections=protections,
        noticed_at=notice.noticed_at if notice else None,
        now=now,
        override=unit.override_state,
        not_before=notice.earliest_at if notice else None,
    )
    if notice is not None and notice.cut_at is None and state == RelayState.ON:
        _cutoff_schedule(notice=notice, protections=protections, now=now, new=noticed)
    issued = []
    for device in Device.objects.select_for_update().filter(unit=unit).order_by("pk"):
        if device.desired_relay != state:
            issued.append(
                relay_command_issue(device=device, state=state, reason=f"{why} ({reason})")
            )
        elif device.desired_reason != why[:200] and not issued:
            # Same state, new reason (e.g. "scheduled" became "protected"): keep screens true.
            Device.objects.filter(pk=device.pk).update(desired_reason=why[:200])
    if notice is not None and state == RelayState.OFF and notice.cut_at is None and issued:
        notice.cut_at = now
        notice.save(update_fields=["cut_at"])
    if tenancy is not None and balance is not None:
        alerts.tenancy_alerts_evaluate(
            tenancy=tenancy, unit=unit, balance_minor=balance, protections=protections, now=now
        )
    if issued or notice is not None:
        unit_changed(unit)
    return issued


def _cutoff_schedule(
    *, notice: CutoffNotice, protections: Protections, now: datetime, new: bool
) -> None:
    """Keep ``notice.earliest_at`` on the moment the cut-off falls due, and have a
    task re-evaluate the unit at exactly that moment; the minute reconciliation
    stays as the net under a lost task.

    The moment only ever moves later (a longer notice period, a window that
    closed before the cut-off was made): a task queued for an earlier moment
    then finds nothing due and changes nothing.
    """
    due = cutoff_due_at(
        protections, noticed_at=notice.noticed_at, told_at=notice.earliest_at, now=now
    )
    if due != notice.earliest_at:
        notice.earliest_at = due
        notice.save(update_fields=["earliest_at"])
    elif not new:
        return
    if due is None or due <= now:
        return
    unit_id = notice.unit_id
    transaction.on_commit(
        lambda: supply_cutoff_due_task.using(run_after=due).enqueue(unit_id), robust=True
    )


def supply_cutoff_due(*, unit_id: int, now: datetime | None = None) -> list[RelayCommand]:
    """A scheduled cut-off's moment has come: evaluate its unit (idempotent)."""
    unit = Unit.objects.filter(pk=unit_id).first()
    if unit is None:
        return []
    return supply_evaluate(unit=unit, reason="cut-off due", now=now)


@task()
def supply_cutoff_due_task(unit_id: int) -> int:
    """Queued for the moment a scheduled cut-off falls due (``run_after``)."""
    return len(supply_cutoff_due(unit_id=unit_id))


def supply_reconcile(*, now: datetime | None = None) -> int:
    """Periodic: re-evaluate units whose scheduled cut-off is due and check device silence.

    Each unit is evaluated in its own transaction; evaluation is idempotent,
    so running this on several consumers at once is harmless.
    """
    now = now or timezone.now()
    unit_ids = set(
        CutoffNotice.objects.filter(
            status=CutoffNotice.Status.SCHEDULED, cut_at__isnull=True, earliest_at__lte=now
        ).values_list("unit_id", flat=True)
    )
    # Supplies that are off: a protection switched on since (or credit posted
    # outside the payment path) brings them back within a minute.
    unit_ids |= set(
        Device.objects.filter(desired_relay=RelayState.OFF).values_list("unit_id", flat=True)
    )
    for unit in Unit.objects.filter(pk__in=unit_ids).order_by("pk"):
        supply_evaluate(unit=unit, reason="scheduled check", now=now)
    alerts.device_offline_check(now=now)
    return len(unit_ids)
