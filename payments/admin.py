from django.contrib import admin

from .models import (
    Account,
    ConnectAccount,
    Dispute,
    LedgerTransaction,
    Payment,
    PaymentEvent,
    PaymentSettings,
    Posting,
    Refund,
    SavedPaymentMethod,
    Tariff,
)


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
        "application_fee_minor",
        "purpose",
        "status",
        "created_at",
    ]
    list_filter = ["status", "provider", "purpose"]
    search_fields = ["uuid", "provider_ref", "checkout_session_id", "reference"]


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = [
        "provider",
        "event_id",
        "type",
        "account",
        "received_at",
        "processed_at",
        "outcome",
    ]
    list_filter = ["provider", "type"]
    search_fields = ["event_id", "account"]


@admin.register(ConnectAccount)
class ConnectAccountAdmin(ReadOnlyAdmin):
    list_display = [
        "landlord",
        "stripe_account_id",
        "charges_enabled",
        "payouts_enabled",
        "details_submitted",
        "updated_at",
    ]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["uuid", "landlord", "payment", "amount_minor", "status", "reason", "created_at"]
    list_filter = ["status"]


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = [
        "provider_ref",
        "landlord",
        "payment",
        "amount_minor",
        "currency",
        "reason",
        "status",
        "evidence_due_by",
        "funds_withdrawn",
        "funds_reinstated",
    ]
    list_filter = ["status"]


@admin.register(SavedPaymentMethod)
class SavedPaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["tenancy", "provider", "brand", "last4", "created_at"]


@admin.register(PaymentSettings)
class PaymentSettingsAdmin(ReadOnlyAdmin):
    list_display = ["tenancy", "auto_topup_enabled", "autopay_enabled", "last_auto_topup_at"]
