"""A unit's scheduled switch between prepaid and postpaid, as a note for the
landlord's unit page (``{% unit_mode_switch unit %}``) and the tenant's page
(``{% tenancy_mode_switch tenancy %}``)."""

from __future__ import annotations

from typing import Any

from django import template

from landlord.mode_switches import mode_switch_for_tenancy, mode_switch_pending
from landlord.models import Tenancy, Unit

register = template.Library()


@register.inclusion_tag("landlord/people/_mode_switch_note.html")
def unit_mode_switch(unit: Unit) -> dict[str, Any]:
    return {
        "switch": mode_switch_pending(unit=unit),
        "unit": unit,
        "tz_name": unit.property.timezone,
        "for_tenant": False,
    }


@register.inclusion_tag("landlord/people/_mode_switch_note.html")
def tenancy_mode_switch(tenancy: Tenancy) -> dict[str, Any]:
    return {
        "switch": mode_switch_for_tenancy(tenancy=tenancy),
        "unit": tenancy.unit,
        "tz_name": tenancy.unit.property.timezone,
        "for_tenant": True,
    }
