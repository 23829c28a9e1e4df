from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from config.admin_money import MoneyAdminMixin

from .forms import RefundForm
from .models import (
    Account,
    BillAllocation,
    ConnectAccount,
    Dispute,
    Invoice,
    InvoiceLine,
    LedgerTransaction,
    Payment,
    PaymentEvent,
    PaymentSettings,
    Posting,
    Refund,
    SavedPaymentMethod,
    Tariff,
    TariffRate,
    TariffVersion,
    TariffWindow,
)
from .services import refundable_minor


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


class InvoiceLineInline(MoneyAdminMixin, admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    readonly_fields = ["kind", "description", "quantity", "unit_price", "amount_minor"]

    def has_add_permission(self, request, obj=None):
        return False


class BillAllocationInline(MoneyAdminMixin, admin.TabularInline):
    model = BillAllocation
    extra = 0
    can_delete = False
    readonly_fields = ["payment", "amount_minor", "updated_at"]
    verbose_name_plural = "payments applied"

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(MoneyAdminMixin, ReadOnlyAdmin):
    list_display = ["number", "tenancy", "period_start", "total_minor", "issued_at", "due_date"]
    inlines = [InvoiceLineInline, BillAllocationInline]


@admin.register(Account)
class AccountAdmin(MoneyAdminMixin, ReadOnlyAdmin):
    list_display = ["pk", "landlord", "kind", "tenancy", "currency", "balance_minor"]
    list_filter = ["kind", "landlord"]


class PostingInline(MoneyAdminMixin, admin.TabularInline):
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
class PaymentAdmin(MoneyAdminMixin, ReadOnlyAdmin):
    """Read-only, with one money action: a full or partial refund with a reason."""

    readonly_fields = ["refund_link"]

    @admin.display(description="Refund")
    def refund_link(self, obj: Payment) -> str:
        if obj.status != Payment.Status.SUCCEEDED:
            return "only a succeeded payment can be refunded"
        url = reverse("admin:payments_payment_refund", args=[obj.pk])
        return format_html('<a href="{}">Refund this payment…</a>', url)

    def get_urls(self) -> list[URLPattern]:
        extra = [
            path(
                "<int:payment_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="payments_payment_refund",
            )
        ]
        return extra + super().get_urls()

    def refund_view(self, request: HttpRequest, payment_id: int) -> HttpResponse:
        if not request.user.is_superuser:
            raise PermissionDenied
        payment = Payment.objects.select_related("tenancy__unit").filter(pk=payment_id).first()
        if payment is None:
            raise Http404
        available = refundable_minor(payment=payment)
        form = RefundForm(request.POST or None, available_minor=available)
        if request.method == "POST" and form.submit(payment=payment, actor_id=request.user.pk):
            self.message_user(request, "Refund requested; the balance follows the provider.")
            return redirect("admin:payments_payment_change", payment.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund payment {payment.uuid}",
            "payment": payment,
            "form": form,
            "available": available,
            "opts": self.model._meta,
        }
        return render(
            request, "admin/payments/refund.html", context, status=400 if form.errors else 200
        )

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
        "alerted_at",
    ]
    list_filter = ["provider", "type", "processed_at", "alerted_at"]
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
class RefundAdmin(MoneyAdminMixin, ReadOnlyAdmin):
    list_display = ["uuid", "landlord", "payment", "amount_minor", "status", "reason", "created_at"]
    list_filter = ["status"]


@admin.register(Dispute)
class DisputeAdmin(MoneyAdminMixin, ReadOnlyAdmin):
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
class PaymentSettingsAdmin(MoneyAdminMixin, ReadOnlyAdmin):
    list_display = ["tenancy", "auto_topup_enabled", "autopay_enabled", "last_auto_topup_at"]
