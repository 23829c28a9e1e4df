"""Writing the audit log: one helper, so every row carries its keys.

A row names what it is about twice: as text (``subject``, what a person
reads, e.g. ``"device dev-a-pre"``) and as keys (``unit``, ``device``,
``tenancy``, ``meter``), which pages query. ``audit_record`` takes the object
and fills both, the unit from a device, tenancy or meter included, so the two
never disagree and no page has to match text.
"""

from __future__ import annotations

from typing import Any

from meters.models import Device, Meter

from .models import AuditEvent, Tenancy, Unit


def audit_subject(
    *,
    unit: Unit | None = None,
    device: Device | None = None,
    tenancy: Tenancy | None = None,
    meter: Meter | None = None,
) -> str:
    """The human text for a row about this object (the forms the log has always used)."""
    if device is not None:
        return f"device {device.ident}"
    if tenancy is not None:
        return f"tenancy {tenancy.pk}"
    if meter is not None:
        return f"meter {meter.serial}"
    if unit is not None:
        return f"unit {unit.pk} {unit.name}"
    raise ValueError("an audit row needs an object or a subject")


def audit_record(
    *,
    landlord_id: int,
    action: str,
    actor_id: int | None = None,
    unit: Unit | None = None,
    device: Device | None = None,
    tenancy: Tenancy | None = None,
    meter: Meter | None = None,
    subject: str = "",
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit row about one object (or, for anything else, a ``subject`` text).

    Give at most one of ``device``, ``tenancy`` and ``meter``; its unit is
    filled in. ``unit`` alone makes a row about the unit itself.
    """
    if sum(obj is not None for obj in (device, tenancy, meter)) > 1:
        raise ValueError("an audit row is about one device, tenancy or meter")
    unit_id = unit.pk if unit is not None else None
    for owner in (device, tenancy, meter):
        if owner is not None:
            unit_id = owner.unit_id
    if not subject:
        subject = audit_subject(unit=unit, device=device, tenancy=tenancy, meter=meter)
    return AuditEvent.objects.create(
        landlord_id=landlord_id,
        actor_id=actor_id,
        action=action,
        subject=subject,
        unit_id=unit_id,
        device=device,
        tenancy=tenancy,
        meter=meter,
        reason=reason[:300],
        data={} if data is None else data,
    )
