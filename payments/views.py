from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from landlord import access, selectors

from .forms import TopUpForm
from .models import Payment
from .providers import get_provider
from .services import payment_create


def _own_payment(request: HttpRequest, payment_uuid: uuid.UUID) -> Payment:
    payment = (
        Payment.objects.select_related("tenancy__unit__property")
        .filter(uuid=payment_uuid, tenancy__tenant_id=request.user.pk)
        .first()
    )
    if payment is None:
        raise Http404
    return payment


@login_required
@require_POST
def topup(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    currency = tenancy.unit.property.currency
    data = request.POST.copy()
    preset = request.POST.get("preset", "")
    if preset:
        data["amount"] = preset
    form = TopUpForm(data, currency=currency)
    if not form.is_valid():
        view = selectors.tenancy_view(tenancy=tenancy)
        return render(
            request, "tenant/home.html", {"v": view, "tenancy": tenancy, "form": form}, status=400
        )
    provider = get_provider()
    if provider is None:
        form.add_error(None, "Payments are not available yet. Please try again later.")
        view = selectors.tenancy_view(tenancy=tenancy)
        return render(
            request, "tenant/home.html", {"v": view, "tenancy": tenancy, "form": form}, status=503
        )
    payment = payment_create(
        tenancy=tenancy,
        amount_minor=form.cleaned_data["amount"],
        provider=provider.name,
        created_by_id=request.user.pk,
    )
    return redirect(provider.checkout_url(payment=payment))


@login_required
@require_http_methods(["GET", "POST"])
def dev_checkout(request: HttpRequest, payment_uuid: uuid.UUID) -> HttpResponse:
    """The development provider's stand-in for a hosted checkout page."""
    payment = _own_payment(request, payment_uuid)
    provider = get_provider()
    if provider is None or not provider.is_dev or payment.provider != provider.name:
        raise Http404
    if request.method == "POST":
        outcome = request.POST.get("outcome")
        if outcome not in ("succeeded", "failed", "canceled"):
            return render(
                request,
                "payments/dev_checkout.html",
                {"payment": payment, "error": "Choose pay or cancel."},
                status=400,
            )
        if payment.status in (Payment.Status.PENDING, Payment.Status.PROCESSING):
            provider.complete(payment=payment, outcome=outcome)
        return redirect("payments:status", payment_uuid=payment.uuid)
    return render(request, "payments/dev_checkout.html", {"payment": payment})


@login_required
@require_GET
def payment_status(request: HttpRequest, payment_uuid: uuid.UUID) -> HttpResponse:
    """Shows the payment as the ledger knows it: pending until the provider confirms."""
    payment = _own_payment(request, payment_uuid)
    template = (
        "payments/status.html#state"
        if getattr(request, "htmx", False)
        else ("payments/status.html")
    )
    return render(request, template, {"payment": payment})
