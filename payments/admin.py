from django.contrib import admin

from .models import (
    Account,
    Invoice,
    InvoiceLine,
    LedgerTransaction,
    Payment,
    PaymentEvent,
    Posting,
    Tariff,
    TariffRate,
    TariffVersion,
    TariffWindow,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Ledger rows are append-only: visible here, changed only by services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class TariffVersionInline(admin.TabularInline):
    model = TariffVersion
    extra = 0
    fields = ["valid_from", "standing_charge_per_day_minor", "tax_percent", "tax_inclusive"]
    show_change_link = True

    def has_change_permission(self, request, obj=None):
        # A version in force prices consumption already rated: add a new one instead.
        return False


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    list_display = ["name", "landlord", "currency"]
    inlines = [TariffVersionInline]


class TariffRateInline(admin.TabularInline):
    model = TariffRate
    extra = 1


class TariffWindowInline(admin.TabularInline):
    model = TariffWindow
    extra = 0


@admin.register(TariffVersion)
class TariffVersionAdmin(admin.ModelAdmin):
    list_display = ["tariff", "valid_from", "standing_charge_per_day_minor", "tax_percent"]
    inlines = [TariffRateInline, TariffWindowInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        form.instance.tariff.bump_revision()  # rating caches versions by revision


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = ["kind", "description", "quantity", "unit_price", "amount_minor"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["number", "tenancy", "period_start", "total_minor", "issued_at"]
    inlines = [InvoiceLineInline]


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
