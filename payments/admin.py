from django.contrib import admin

from .models import Account, LedgerTransaction, Payment, PaymentEvent, Posting, Tariff


class ReadOnlyAdmin(admin.ModelAdmin):
    """Ledger rows are append-only: visible here, changed only by services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    list_display = ["name", "landlord", "currency", "price_per_kwh_minor"]


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["pk", "landlord", "kind", "tenancy", "currency", "balance_minor"]
    list_filter = ["kind", "landlord"]


class PostingInline(admin.TabularInline):
    model = Posting
    extra = 0
    can_delete = False
    readonly_fields = ["debit", "credit", "amount_minor", "energy_wh"]
    exclude = ["landlord"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdmin):
    list_display = ["pk", "landlord", "kind", "idempotency_key", "created_at"]
    list_filter = ["kind"]
    inlines = [PostingInline]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "uuid",
        "landlord",
        "tenancy",
        "amount_minor",
        "currency",
        "status",
        "created_at",
    ]
    list_filter = ["status", "provider"]


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ["provider", "event_id", "type", "received_at", "processed_at", "outcome"]
