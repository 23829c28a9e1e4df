from django.contrib import admin

from .models import AuditEvent, Landlord, Membership, Property, Tenancy, Unit


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Landlord)
class LandlordAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    inlines = [MembershipInline]


@admin.register(Property)
class PropertyAdmin(admin.ModelAdmin):
    list_display = ["name", "landlord", "timezone", "currency"]
    list_filter = ["landlord"]


@admin.register(Unit)
class UnitAdmin(admin.ModelAdmin):
    list_display = ["name", "property", "billing_mode", "low_credit_threshold_minor", "tariff"]
    list_filter = ["billing_mode", "landlord"]


@admin.register(Tenancy)
class TenancyAdmin(admin.ModelAdmin):
    list_display = ["tenant", "unit", "start_date", "end_date"]
    list_filter = ["landlord"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["at", "landlord", "actor", "action", "subject", "reason"]
    list_filter = ["action", "landlord"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
