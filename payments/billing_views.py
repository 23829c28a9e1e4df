"""Pages for bills and emergency credit (tenant and landlord)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from landlord import access

from . import allocation, billing, emergency
from .services import invoice_amount_due


@login_required
@require_GET
def invoice_detail(request: HttpRequest, invoice_id: int) -> HttpResponse:
    return render(request, "payments/invoice.html", _invoice_context(request, invoice_id))


@login_required
@require_GET
def invoice_print(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """The same bill on a plain page for printing (or saving as PDF from the browser)."""
    return render(request, "payments/invoice_print.html", _invoice_context(request, invoice_id))


def _invoice_context(request: HttpRequest, invoice_id: int) -> dict[str, Any]:
    invoice = access.access_invoice(user=request.user, invoice_id=invoice_id)
    is_tenant = invoice.tenancy.tenant_id == request.user.pk
    return {
        "invoice": invoice,
        "lines": list(invoice.lines.all()),
        "is_tenant": is_tenant,
        "amount_due_minor": invoice_amount_due(invoice=invoice),
        "applied": list(
            invoice.allocations.select_related("payment").order_by("payment__created_at")
        ),
        "paid_minor": allocation.invoice_paid_minor(invoice=invoice),
        "outstanding_minor": allocation.invoice_outstanding_minor(invoice=invoice),
        "fee_billed_on": invoice.late_fee_billed_on,
        "postpaid_from": billing.invoice_postpaid_from(invoice=invoice),
        "carried_debt_minor": allocation.tenancy_carried_debt_minor(tenancy_id=invoice.tenancy_id),
    }


@login_required
@require_POST
def emergency_credit(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    try:
        emergency.emergency_credit_take(tenancy=tenancy, actor_id=request.user.pk)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Emergency credit added. It is repaid from your next top-ups.")
    return redirect("tenant:home", tenancy_id=tenancy.pk)
