from django.contrib import admin

from .models import (
    Alert,
    CutoffNotice,
    Device,
    Interval,
    Meter,
    MeterEvent,
    Reading,
    RelayCommand,
)


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = [
        "ident",
        "unit",
        "protocol",
        "connected",
        "last_seen_at",
        "desired_relay",
        "desired_generation",
        "reported_relay",
        "reported_generation",
    ]
    list_filter = ["protocol", "connected", "landlord"]
    # Relay state changes only through relay commands (audited); the secret is
    # set with `manage.py device_secret IDENT`, which shows it once.
    readonly_fields = [
        "secret_hash",
        "connected",
        "last_seen_at",
        "firmware",
        "reported_relay",
        "reported_generation",
        "reported_at",
        "desired_relay",
        "desired_generation",
        "desired_reason",
    ]


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = ["serial", "unit", "device", "installed_at", "removed_at", "last_register_wh"]
    readonly_fields = [
        "rated_seq",
        "rated_register_wh",
        "rated_at",
        "pending_sub",
        "pending_since",
        "posted_minor",
        "postings",
        "held_from",
        "last_register_wh",
        "last_reading_at",
        "hold_reason",
    ]


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    list_display = ["device", "seq", "taken_at", "register_wh", "quality", "rule", "note"]
    list_filter = ["quality"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RelayCommand)
class RelayCommandAdmin(admin.ModelAdmin):
    list_display = ["device", "generation", "state", "status", "source", "attempts", "created_at"]
    list_filter = ["status", "state"]

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Interval)
class IntervalAdmin(admin.ModelAdmin):
    """Derived by reading intake; never edited by hand."""

    list_display = ["meter", "kind", "start", "energy_wh", "quality", "rule", "held_reason"]
    list_filter = ["quality", "kind"]

    def has_add_permission(self, request):
        return False


@admin.register(CutoffNotice)
class CutoffNoticeAdmin(admin.ModelAdmin):
    list_display = ["unit", "noticed_at", "earliest_at", "balance_minor", "status", "cut_at"]
    list_filter = ["status", "landlord"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MeterEvent)
class MeterEventAdmin(admin.ModelAdmin):
    """Recorded through ``meters.meter_events.meter_event_record`` (it bills the old register)."""

    list_display = ["meter", "kind", "at", "old_last_wh", "new_first_wh", "new_meter"]

    def has_add_permission(self, request):
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "kind", "audience", "unit", "message", "cleared_at", "emailed_at"]
    list_filter = ["kind", "audience", "landlord"]

    def has_change_permission(self, request, obj=None):
        return False
