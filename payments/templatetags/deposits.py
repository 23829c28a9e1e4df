"""A tenancy's deposit, for the landlord's pages (``{% deposit_landlord tenancy %}``)
and the tenant's (``{% deposit_tenant tenancy %}``)."""

from __future__ import annotations

from typing import Any

from django import template

from landlord.models import Tenancy
from payments.deposits import deposit_status

register = template.Library()


@register.inclusion_tag("payments/_deposit_landlord.html")
def deposit_landlord(tenancy: Tenancy | None, full: bool = False) -> dict[str, Any]:
    return {
        "d": None if tenancy is None else deposit_status(tenancy=tenancy),
        "tenancy": tenancy,
        "full": full,
    }


@register.inclusion_tag("payments/_deposit_tenant.html", takes_context=True)
def deposit_tenant(context: template.Context, tenancy: Tenancy) -> dict[str, Any]:
    return {
        "d": deposit_status(tenancy=tenancy),
        "tenancy": tenancy,
        "csrf_token": context.get("csrf_token"),
    }
