from collections.abc import Iterable
from typing import Any

from django.contrib import admin

from config.admin_money import MoneyAdminMixin
from supply.decision import supply_evaluate

from .models import AuditEvent, Landlord, Membership, Property, PushSubscription, Tenancy, Unit


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Landlord)
class LandlordAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    inlines = [MembershipInline]


def _reevaluate(units: Iterable[Unit]) -> None:
    # Protections changed: apply them now rather than at the next reading.
    for unit in units:
        supply_evaluate(unit=unit, reason="protections changed")


@admin.register(Property)
class PropertyAdmin(MoneyAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "landlord",
        "timezone",
        "currency",
        "cutoff_days",
        "cutoff_start",
        "cutoff_end",
        "cutoff_notice_minutes",
        "landlord_may_disconnect",
    ]
    list_filter = ["landlord", "landlord_may_disconnect"]

    def save_model(self, request: Any, obj: Property, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change:
            _reevaluate(obj.units.all())


@admin.register(Unit)
class UnitAdmin(MoneyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "property", "billing_mode", "low_credit_threshold_minor", "tariff"]
    list_filter = ["billing_mode", "landlord"]


@admin.register(Tenancy)
class TenancyAdmin(admin.ModelAdmin):
    list_display = ["tenant", "unit", "start_date", "end_date", "vulnerable"]
    list_filter = ["landlord", "vulnerable"]

    def save_model(self, request: Any, obj: Tenancy, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        _reevaluate([obj.unit])


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "landlord", "actor", "action", "subject", "reason"]
    list_filter = ["action", "landlord"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PushSubscription)
class PushSubscriptionAdmin(admin.ModelAdmin):
    """Read-only: which phones get a tenancy's alerts, and whether the last push failed.
    Only the tenant turns them on or off (their settings page)."""

    list_display = ["tenancy", "user", "created_at", "last_success_at", "last_failure_at"]
    list_filter = ["landlord"]
    readonly_fields = ["last_failure"]
    exclude = ["p256dh", "auth"]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False
