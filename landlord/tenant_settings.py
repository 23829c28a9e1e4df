"""A tenant's own settings: notification choices and their email address.

Password change and reset are Django's auth views (config/urls.py)."""

from __future__ import annotations

from datetime import time

from django.contrib.auth.models import User
from django.db import transaction

from .audit import audit_record
from .models import Tenancy, TenantNotifications


def tenant_notifications_for(*, tenancy: Tenancy) -> TenantNotifications:
    """The tenancy's choices, or the defaults (unsaved) if none were made."""
    found = TenantNotifications.objects.filter(tenancy=tenancy).first()
    return found or TenantNotifications(tenancy=tenancy, landlord_id=tenancy.landlord_id)


@transaction.atomic
def tenant_notifications_set(
    *,
    tenancy: Tenancy,
    actor_id: int | None,
    low_credit_threshold_minor: int | None,
    email_low_credit: bool,
    email_supply_restored: bool,
    quiet_start: time | None,
    quiet_end: time | None,
) -> TenantNotifications:
    values = {
        "low_credit_threshold_minor": low_credit_threshold_minor,
        "email_low_credit": email_low_credit,
        "email_supply_restored": email_supply_restored,
        "quiet_start": quiet_start,
        "quiet_end": quiet_end,
    }
    prefs, _ = TenantNotifications.objects.update_or_create(
        tenancy=tenancy, defaults={**values, "landlord_id": tenancy.landlord_id}
    )
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="tenant.notifications_set",
        tenancy=tenancy,
        data={k: (v.isoformat() if isinstance(v, time) else v) for k, v in values.items()},
    )
    return prefs


@transaction.atomic
def tenant_email_change(*, user: User, tenancy: Tenancy, email: str, actor_id: int | None) -> None:
    """The tenant's email address, where alerts and password resets go."""
    old = user.email
    user.email = email
    user.save(update_fields=["email"])
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="tenant.email_changed",
        tenancy=tenancy,
        data={"old": old, "new": email},
    )
