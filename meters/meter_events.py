"""Meter resets, replacements and moves to another unit, and held energy released
after review."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from config.live import unit_changed
from landlord.audit import audit_record
from landlord.models import Unit
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
    if kind not in (MeterEvent.Kind.RESET, MeterEvent.Kind.REPLACEMENT):
        raise ValueError(f"unknown meter event {kind!r}")
    # Readings the device already sent belong to the register before the event.
    readings_rate(device_id=meter.device_id)
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    device = (
        Device.objects.select_for_update().select_related("unit__property").get(pk=meter.device_id)
    )
    return _meter_event(
        meter=meter,
        device=device,
        kind=kind,
        at=at,
        old_last_wh=old_last_wh,
        new_first_wh=new_first_wh,
        new_serial=new_serial,
        actor_id=actor_id,
        reason=reason,
    )


class MeterMoveError(Exception):
    """The meter cannot be moved there; the message is for the landlord."""


@transaction.atomic
def meter_move(
    *,
    device: Device,
    to_unit: Unit,
    at: datetime,
    register_wh: int,
    actor_id: int | None,
    reason: str,
) -> MeterEvent:
    """Move a device and its meter to another unit of the same landlord, from ``at``.

    The meter's energy up to ``register_wh`` is billed at the unit it leaves (to
    the payer of each slot's day, as for a replacement), and a meter on the same
    device starts at ``to_unit`` from that value. ``to_unit`` must have no meter."""
    if register_wh < 0:
        raise MeterMoveError("A register reading cannot be negative.")
    if at > timezone.now():
        raise MeterMoveError("The move's time is in the future.")
    # Readings the device already sent belong to the unit it leaves.
    readings_rate(device_id=device.pk)
    # Both units' rows, in key order: no meter is installed at the new one meanwhile.
    units = {
        u.pk: u
        for u in Unit.objects.select_for_update(of=("self",))
        .select_related("property")
        .filter(pk__in=sorted({device.unit_id, to_unit.pk}))
        .order_by("pk")
    }
    device = Device.objects.select_for_update().select_related("unit__property").get(pk=device.pk)
    target = units.get(to_unit.pk)
    if target is None or target.landlord_id != device.landlord_id:
        raise MeterMoveError("That unit is not one of yours.")
    if target.pk == device.unit_id:
        raise MeterMoveError(f"Device {device.ident} is at {target.name} already.")
    if target.archived_at is not None:
        raise MeterMoveError(f"{target.name} is archived.")
    there = Meter.objects.installed().filter(unit_id=target.pk).select_related("device").first()
    if there is not None:
        raise MeterMoveError(
            f"{target.name} has meter {there.serial} on device {there.device.ident} already. "
            "Move or replace that one first."
        )
    meter = Meter.objects.installed().select_for_update().filter(device=device).first()
    if meter is None:
        raise MeterMoveError(f"Device {device.ident} has no meter installed.")
    if meter.last_register_wh is not None and register_wh < meter.last_register_wh:
        raise MeterMoveError(
            f"The register reading is below the meter's latest reading "
            f"({meter.last_register_wh} Wh)."
        )
    return _meter_event(
        meter=meter,
        device=device,
        kind=MeterEvent.Kind.MOVE,
        at=at,
        old_last_wh=register_wh,
        new_first_wh=register_wh,
        new_serial=meter.serial,
        actor_id=actor_id,
        reason=reason,
        to_unit=target,
    )


def _meter_event(
    *,
    meter: Meter,
    device: Device,
    kind: str,
    at: datetime,
    old_last_wh: int,
    new_first_wh: int,
    new_serial: str,
    actor_id: int | None,
    reason: str,
    to_unit: Unit | None = None,
) -> MeterEvent:
    """The event itself, with the meter and its device locked: the old register billed
    to its last value at the device's unit, then the new register (a new meter for a
    replacement, or at ``to_unit`` for a move) from its first value."""
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
    new_unit = unit
    if kind in (MeterEvent.Kind.REPLACEMENT, MeterEvent.Kind.MOVE):
        billing.usage_accrue(meter=meter, unit=unit, changes=changes, rated_before=rated_before)
        meter.removed_at = at
        billing.usage_settle(meter=meter, unit=unit, now=timezone.now(), force=True)
        meter.save()
        if to_unit is not None:
            new_unit = to_unit
            device.unit = to_unit
            device.save(update_fields=["unit"])
        target = Meter.objects.create(
            landlord_id=meter.landlord_id,
            unit_id=new_unit.pk,
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
    billing.usage_settle(meter=target, unit=new_unit, now=timezone.now())
    target.save()
    event.save()
    data: dict[str, object] = {"old_last_wh": old_last_wh, "new_first_wh": new_first_wh}
    if to_unit is not None:
        data.update(device=device.ident, from_unit=unit.pk, to_unit=to_unit.pk)
    audit_record(
        landlord_id=meter.landlord_id,
        actor_id=actor_id,
        action=f"meter.{kind}",
        meter=meter,
        reason=reason[:300],
        data=data,
    )
    if to_unit is not None:
        audit_record(
            landlord_id=meter.landlord_id,
            actor_id=actor_id,
            action="meter.move_in",
            meter=target,
            reason=reason[:300],
            data=data,
        )
        # The relay now follows the supply the new unit should have.
        supply_evaluate(unit=to_unit, reason="meter moved here")
        unit_changed(to_unit)
    unit_changed(unit)
    return event
