"""A landlord's manual supply override, audit-logged."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from landlord.audit import audit_record
from landlord.models import Unit
from meters.models import (
    RelayState,
)

from .decision import supply_evaluate

logger = logging.getLogger(__name__)


class OverrideRefused(Exception):
    pass


@transaction.atomic
def supply_override_set(*, unit: Unit, state: str, reason: str, actor_id: int | None) -> Unit:
    """A landlord forces the supply on or off, with a reason; audit-logged."""
    reason = reason.strip()
    if state not in (RelayState.ON, RelayState.OFF):
        raise OverrideRefused("Choose on or off.")
    if not reason:
        raise OverrideRefused("Give a reason for the manual override.")
    unit = Unit.objects.select_for_update().select_related("property").get(pk=unit.pk)
    if state == RelayState.OFF and not unit.property.landlord_may_disconnect:
        raise OverrideRefused(
            "Landlord disconnection is switched off for this property; the supply cannot be "
            "turned off by hand."
        )
    unit.override_state, unit.override_reason = state, reason[:300]
    unit.override_by_id, unit.override_at = actor_id, timezone.now()
    unit.save(update_fields=["override_state", "override_reason", "override_by", "override_at"])
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action=f"supply.override.{state}",
        unit=unit,
        reason=reason[:300],
    )
    supply_evaluate(unit=unit, reason=f"manual override {state}: {reason}"[:120])
    return unit


@transaction.atomic
def supply_override_release(*, unit: Unit, actor_id: int | None, reason: str = "") -> Unit:
    """Back to the automatic rules (and their protections); audit-logged."""
    unit = Unit.objects.select_for_update().get(pk=unit.pk)
    if not unit.override_state:
        return unit
    previous = unit.override_state
    unit.override_state, unit.override_reason = "", ""
    unit.override_by_id, unit.override_at = None, None
    unit.save(update_fields=["override_state", "override_reason", "override_by", "override_at"])
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="supply.override.release",
        unit=unit,
        reason=(reason.strip() or f"released manual {previous}")[:300],
    )
    supply_evaluate(unit=unit, reason="manual override released")
    return unit
