"""Pages for bills and emergency credit (tenant and landlord)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from landlord import access

from . import billing, emergency
from .bill_pdf import bill_pdf, bill_pdf_filename
from .statements import bill_statement


@login_required
@require_GET
def invoice_detail(request: HttpRequest, invoice_id: int) -> HttpResponse:
    return render(request, "payments/invoice.html", _invoice_context(request, invoice_id))


@login_required
@require_GET
def invoice_print(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """The same bill on a plain page for printing (or saving as PDF from the browser)."""
    return render(request, "payments/invoice_print.html", _invoice_context(request, invoice_id))


@login_required
@require_GET
def invoice_pdf(request: HttpRequest, invoice_id: int) -> HttpResponse:
    """The same bill as a PDF download."""
    invoice = access.access_invoice(user=request.user, invoice_id=invoice_id)
    response = HttpResponse(
        bill_pdf(bill_statement(invoice=invoice)), content_type="application/pdf"
    )
    response["Content-Disposition"] = f'attachment; filename="{bill_pdf_filename(invoice)}"'
    return response


def _invoice_context(request: HttpRequest, invoice_id: int) -> dict[str, Any]:
    invoice = access.access_invoice(user=request.user, invoice_id=invoice_id)
    return {
        **bill_statement(invoice=invoice).context(),
        "is_tenant": invoice.tenancy.tenant_id == request.user.pk,
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
