"""Meter resets and replacements, and held energy released after review."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from config.live import unit_changed
from landlord.audit import audit_record
from payments import billing, rating
from supply.decision import supply_evaluate

from . import vee
from .derivation import Derivation, slots_apply
from .models import (
    Device,
    Interval,
    Meter,
    MeterEvent,
)
from .readings import ReadingRejected, readings_rate

logger = logging.getLogger(__name__)


class HeldReleaseError(Exception):
    """The held energy cannot be released; the message is for the landlord."""


@transaction.atomic
def held_interval_release(*, interval_id: int, actor_id: int | None, reason: str) -> Interval:
    """Bill held energy (a spike or a long gap) after review: spread evenly over the
    time it covers, marked estimated, priced and posted like any other usage."""
    if not reason.strip():
        raise HeldReleaseError("Say why this energy should be billed.")
    held = Interval.objects.get(pk=interval_id)
    device = (
        Device.objects.select_for_update(of=("self",))
        .select_related("unit__property", "unit__tariff", "unit__landlord")
        .get(pk=held.meter.device_id)
    )
    meter = Meter.objects.select_for_update().get(pk=held.meter_id)
    held = Interval.objects.select_for_update().get(pk=interval_id)
    if held.kind != Interval.Kind.GAP or held.quality != Interval.Quality.HELD:
        raise HeldReleaseError("Only held energy that was not released yet can be released.")
    d = Derivation()
    d.add(
        rating.spread(start=held.start, end=held.end, start_wh=0, end_wh=held.energy_wh),
        estimated=True,
    )
    unit = device.unit
    priced = slots_apply(meter, unit, d)
    billing.usage_accrue(
        meter=meter, unit=unit, changes=priced.changes, rated_before=meter.rated_at
    )
    held.quality = Interval.Quality.ESTIMATED
    held.note = f"released for billing: {reason.strip()}"[:200]
    held.save(update_fields=["quality", "note"])
    billing.usage_settle(meter=meter, unit=unit, now=timezone.now(), force=True)
    meter.save()
    audit_record(
        landlord_id=meter.landlord_id,
        actor_id=actor_id,
        action="usage.held_released",
        meter=meter,
        reason=reason.strip()[:300],
        data={"interval": held.pk, "energy_wh": held.energy_wh, "rule": held.rule},
    )
    supply_evaluate(unit=unit, reason="held energy billed")
    unit_changed(unit)
    return held


@transaction.atomic
def meter_event_record(
    *,
    meter: Meter,
    kind: str,
    at: datetime,
    old_last_wh: int,
    new_first_wh: int,
    new_serial: str = "",
    actor_id: int | None = None,
    reason: str = "",
) -> MeterEvent:
    """A meter reset or replacement: bill the old register up to its last value,
    then start from the new register's first value."""
    # Readings the device already sent belong to the register before the event.
    readings_rate(device_id=meter.device_id)
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    device = (
        Device.objects.select_for_update().select_related("unit__property").get(pk=meter.device_id)
    )
    if kind not in MeterEvent.Kind.values:
        raise ValueError(f"unknown meter event {kind!r}")
    if meter.rated_at is not None and at < meter.rated_at:
        raise ReadingRejected(
            "PropertyConstraintViolation", "The event is older than the meter's latest reading."
        )
    unit = device.unit
    d = Derivation()
    if meter.rated_at is not None:
        limits = vee.Limits.from_settings(meter.register_max_wh)
        closing = vee.step(
            prev_at=meter.rated_at,
            prev_wh=meter.rated_register_wh or 0,
            at=at,
            register_wh=old_last_wh,
            limits=limits,
        )
        if closing.billed:
            d.add(
                rating.spread(start=meter.rated_at, end=at, start_wh=0, end_wh=closing.energy_wh),
                estimated=closing.estimated,
            )
    rated_before = meter.rated_at
    changes = slots_apply(meter, unit, d).changes
    event = MeterEvent(
        landlord_id=meter.landlord_id,
        meter=meter,
        kind=kind,
        at=at,
        old_last_wh=old_last_wh,
        new_first_wh=new_first_wh,
        reason=reason[:300],
        created_by_id=actor_id,
    )
    target = meter
    if kind == MeterEvent.Kind.REPLACEMENT:
        billing.usage_accrue(meter=meter, unit=unit, changes=changes, rated_before=rated_before)
        meter.removed_at = at
        billing.usage_settle(meter=meter, unit=unit, now=timezone.now(), force=True)
        meter.save()
        target = Meter.objects.create(
            landlord_id=meter.landlord_id,
            unit_id=meter.unit_id,
            device=device,
            serial=new_serial or f"{meter.serial}-r",
            installed_at=at,
            register_max_wh=meter.register_max_wh,
        )
        event.new_meter = target
    target.rated_at, target.rated_register_wh = at, new_first_wh
    target.rated_seq = meter.rated_seq
    target.last_reading_at, target.last_register_wh = at, new_first_wh
    if target is meter:
        # A reset: the meter is now rated to the event, whose day may have
        # another payer than the usage already pending.
        billing.usage_accrue(meter=meter, unit=unit, changes=changes, rated_before=rated_before)
    billing.usage_settle(meter=target, unit=unit, now=timezone.now())
    target.save()
    event.save()
    audit_record(
        landlord_id=meter.landlord_id,
        actor_id=actor_id,
        action=f"meter.{kind}",
        meter=meter,
        reason=reason[:300],
        data={"old_last_wh": old_last_wh, "new_first_wh": new_first_wh},
    )
    unit_changed(unit)
    return event
