from __future__ import annotations

import logging
import uuid

import stripe
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.htmx import form_error_status
from landlord import access, reports, selectors
from landlord.forms_reports import DateRangeForm
from landlord.models import Tenancy
from landlord.views import tenancy_history

from . import automatic
from .forms import AutomaticPaymentsForm, RefundForm, TopUpForm
from .models import ConnectAccount, Dispute, Payment, Refund, SavedPaymentMethod
from .providers import DevelopmentProvider, PaymentGateway, get_provider
from .selectors import tenant_payment_context
from .services import (
    EventRejected,
    PaymentError,
    deposit_to_pay_minor,
    payment_abandon,
    payment_create,
    payment_event_receive,
    refundable_minor,
)
from .webhooks import WebhookRejected, webhook_event_verify

logger = logging.getLogger(__name__)


def _site_url(request: HttpRequest) -> str:
    return request.build_absolute_uri("/")


def _home_with_error(
    request: HttpRequest, tenancy: Tenancy, form: TopUpForm, status: int
) -> HttpResponse:
    if not tenancy.is_current():
        # One of its bills was being paid: the unit as it is now is someone else's.
        return tenancy_history(request, tenancy, form=form, status=status)
    context = selectors.tenant_panel_context(tenancy=tenancy)
    context["form"] = form
    context["previews"] = selectors.preset_previews(context["v"])
    context["pay"] = tenant_payment_context(tenancy=tenancy)
    return render(request, "tenant/home.html", context, status=status)


def _checkout_redirect(
    request: HttpRequest, provider: PaymentGateway, payment: Payment
) -> HttpResponse | None:
    """Send the tenant to the provider's checkout; None (payment cancelled) if it cannot start."""
    try:
        return redirect(provider.checkout_start(payment=payment, site_url=_site_url(request)))
    except (stripe.StripeError, PaymentError) as exc:
        payment_abandon(payment=payment, why=str(exc))
        return None


@login_required
@require_POST
def topup(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy, invoice = access.access_tenancy_to_pay(
        user=request.user, tenancy_id=tenancy_id, invoice_id=request.POST.get("invoice", "")
    )
    currency = tenancy.unit.property.currency
    data = request.POST.copy()
    preset = request.POST.get("preset", "")
    if preset:
        data["amount"] = preset
    form = TopUpForm(data, currency=currency)
    if not form.is_valid():
        return _home_with_error(request, tenancy, form, form_error_status(request))
    provider = get_provider()
    if provider is None:
        form.add_error(None, "Payments are not available yet. Please try again later.")
        return _home_with_error(request, tenancy, form, 503)
    payee = provider.payee_status(landlord=tenancy.landlord)
    if not payee.ready:
        form.add_error(None, payee.message)
        return _home_with_error(request, tenancy, form, 409)
    try:
        # Paying a bill (in full or in part): access checked it is one of this tenancy's.
        payment = payment_create(
            tenancy=tenancy,
            amount_minor=form.cleaned_data["amount"],
            provider=provider.name,
            created_by_id=request.user.pk,
            purpose=Payment.Purpose.BILL
            if invoice is not None or not tenancy.unit.is_prepaid
            else Payment.Purpose.TOPUP,
            invoice=invoice,
            save_method=request.POST.get("save_card") == "on",
        )
    except PaymentError as exc:
        form.add_error("amount", str(exc))
        return _home_with_error(request, tenancy, form, form_error_status(request))
    response = _checkout_redirect(request, provider, payment)
    if response is None:
        form.add_error(
            None, "The payment provider could not be reached. Nothing was charged; try again."
        )
        return _home_with_error(request, tenancy, form, 502)
    return response


@login_required
@require_POST
def deposit_pay(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """The tenant pays the deposit their landlord asked for, in full, at the provider."""
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    # No input: the form only carries the error back to the history page.
    form = TopUpForm(None, currency=tenancy.unit.property.currency)
    form.cleaned_data = {}
    provider = get_provider()
    if provider is None:
        form.add_error(None, "Payments are not available yet. Please try again later.")
        return tenancy_history(request, tenancy, form=form, status=503)
    payee = provider.payee_status(landlord=tenancy.landlord)
    if not payee.ready:
        form.add_error(None, payee.message)
        return tenancy_history(request, tenancy, form=form, status=409)
    try:
        payment = payment_create(
            tenancy=tenancy,
            amount_minor=deposit_to_pay_minor(tenancy=tenancy),
            provider=provider.name,
            created_by_id=request.user.pk,
            purpose=Payment.Purpose.DEPOSIT,
        )
    except PaymentError as exc:
        form.add_error(None, str(exc))
        return tenancy_history(request, tenancy, form=form, status=form_error_status(request))
    response = _checkout_redirect(request, provider, payment)
    if response is None:
        form.add_error(
            None, "The payment provider could not be reached. Nothing was charged; try again."
        )
        return tenancy_history(request, tenancy, form=form, status=502)
    return response


@login_required
@require_POST
def payment_resume(request: HttpRequest, payment_uuid: uuid.UUID) -> HttpResponse:
    """Pay on-session a payment the bank wanted confirmed (autopay, auto top-up)."""
    payment = access.access_payment(user=request.user, payment_uuid=payment_uuid, to_pay=True)
    provider = get_provider()
    if (
        provider is None
        or payment.provider != provider.name
        or not payment.action_url
        or payment.status != Payment.Status.PENDING
    ):
        return redirect("payments:status", payment_uuid=payment.uuid)
    response = _checkout_redirect(request, provider, payment)
    return response or redirect("payments:status", payment_uuid=payment.uuid)


@login_required
@require_http_methods(["GET", "POST"])
def dev_checkout(request: HttpRequest, payment_uuid: uuid.UUID) -> HttpResponse:
    """The development provider's stand-in for a hosted checkout page."""
    payment = access.access_payment(user=request.user, payment_uuid=payment_uuid, to_pay=True)
    provider = get_provider()
    if not isinstance(provider, DevelopmentProvider) or payment.provider != provider.name:
        raise Http404
    if request.method == "POST":
        outcome = request.POST.get("outcome")
        if outcome not in ("succeeded", "failed", "canceled"):
            return render(
                request,
                "payments/dev_checkout.html",
                {"payment": payment, "error": "Choose pay or cancel."},
                status=form_error_status(request),
            )
        if payment.status in (Payment.Status.PENDING, Payment.Status.PROCESSING):
            provider.complete(payment=payment, outcome=outcome)
        return redirect("payments:status", payment_uuid=payment.uuid)
    return render(request, "payments/dev_checkout.html", {"payment": payment})


@login_required
@require_GET
def payment_status(request: HttpRequest, payment_uuid: uuid.UUID) -> HttpResponse:
    """Shows the payment as the ledger knows it: pending until the provider confirms.

    Query parameters on the return from checkout are never trusted: the
    ``cancelled`` flag only changes the wording while the payment is pending.
    """
    payment = access.access_payment(user=request.user, payment_uuid=payment_uuid)
    template = (
        "payments/status.html#state" if getattr(request, "htmx", False) else "payments/status.html"
    )
    context: dict[str, object] = {
        "payment": payment,
        "left_checkout": request.GET.get("cancelled") == "1",
        "refunds": list(payment.refunds.exclude(status=Refund.Status.CANCELED)),
    }
    if payment.status == Payment.Status.SUCCEEDED:
        unit = payment.tenancy.unit
        context["split"] = selectors.payment_split(payment=payment)
        context["prices"] = selectors.prices_in_force(unit=unit, when=payment.updated_at)
        context["meter"] = selectors.unit_meter_label(unit=unit)
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def automatic_payments(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """The tenant's saved card, auto top-up (prepaid) and autopay (postpaid)."""
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    cfg = automatic.payment_settings_for(tenancy=tenancy)
    method = automatic.saved_method_for(tenancy=tenancy)
    status = 200
    if request.method == "POST":
        form = AutomaticPaymentsForm(request.POST, currency=tenancy.unit.property.currency)
        if form.is_valid() and method is None and form.wants_automatic:
            form.add_error(None, "Save a card first: tick it when you next pay.")
        if form.is_valid():
            automatic.payment_settings_update(tenancy=tenancy, **form.cleaned_data)
            return redirect("payments:automatic", tenancy_id=tenancy.pk)
        status = form_error_status(request)
    else:
        form = AutomaticPaymentsForm.from_settings(cfg, currency=tenancy.unit.property.currency)
    methods = SavedPaymentMethod.objects.filter(tenancy=tenancy).order_by("-created_at")
    return render(
        request,
        "payments/automatic.html",
        {"tenancy": tenancy, "form": form, "methods": methods, "settings": cfg},
        status=status,
    )


@login_required
@require_POST
def saved_method_remove(request: HttpRequest, tenancy_id: int, method_id: int) -> HttpResponse:
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    method = SavedPaymentMethod.objects.filter(pk=method_id, tenancy=tenancy).first()
    if method is None:
        raise Http404
    try:
        automatic.saved_method_remove(method=method)
    except stripe.StripeError:
        logger.exception("removing saved method %s failed", method.pk)
    return redirect("payments:automatic", tenancy_id=tenancy.pk)


# --- Landlord -------------------------------------------------------------


@login_required
@require_GET
def connect(request: HttpRequest) -> HttpResponse:
    """The landlord's payment account: onboarding status, and what Stripe still needs."""
    landlord = access.landlord_for_user(user=request.user, action=access.Action.CONNECT)
    provider = get_provider()
    if provider is not None and request.GET.get("returned") == "1":
        try:
            provider.payee_refresh(landlord=landlord)
        except stripe.StripeError:
            logger.exception("refreshing connected account of landlord %s failed", landlord.pk)
    account = ConnectAccount.objects.filter(landlord=landlord).first()
    payee = provider.payee_status(landlord=landlord) if provider else None
    return render(
        request,
        "payments/connect.html",
        {"landlord": landlord, "account": account, "payee": payee, "provider": provider},
    )


@login_required
@require_http_methods(["GET", "POST"])
def connect_start(request: HttpRequest) -> HttpResponse:
    """Send the landlord to Stripe's hosted onboarding (GET too: Stripe's refresh_url)."""
    landlord = access.landlord_for_user(user=request.user, action=access.Action.CONNECT)
    provider = get_provider()
    if provider is None:
        return redirect("payments:connect")
    try:
        return redirect(provider.onboarding_url(landlord=landlord, site_url=_site_url(request)))
    except stripe.StripeError:
        logger.exception("starting onboarding of landlord %s failed", landlord.pk)
        account = ConnectAccount.objects.filter(landlord=landlord).first()
        return render(
            request,
            "payments/connect.html",
            {
                "landlord": landlord,
                "account": account,
                "payee": provider.payee_status(landlord=landlord),
                "provider": provider,
                "error": "Stripe could not be reached. Try again in a moment.",
            },
            status=502,
        )


@login_required
@require_GET
def landlord_payments(request: HttpRequest) -> HttpResponse:
    landlord = access.landlord_for_user(user=request.user)
    # ?status=, ?from= and ?to= (local days): the rows behind a number on the home page.
    form = DateRangeForm(request.GET or None)
    status = request.GET.get("status", "")
    if status not in Payment.Status.values:
        status = ""
    start = end = None
    if form.is_bound and form.is_valid():
        first, last = form.range()
        start, end = reports.day_bounds(first, last, reports.landlord_zone(landlord_id=landlord.pk))
    payments = reports.payments_in_range(
        landlord_id=landlord.pk, start=start, end=end, status=status
    )[:100]
    refunds = (
        Refund.objects.filter(landlord=landlord)
        .select_related("payment__tenancy__unit")
        .order_by("-created_at")[:50]
    )
    disputes = (
        Dispute.objects.filter(landlord=landlord)
        .select_related("payment__tenancy__unit")
        .order_by("-created_at")[:50]
    )
    return render(
        request,
        "payments/landlord_payments.html",
        {
            "payments": payments,
            "status": status,
            "status_label": Payment.Status(status).label if status else "",
            "form": form,
            "refunds": refunds,
            "disputes": disputes,
            "may_refund": access.may(
                user=request.user, landlord_id=landlord.pk, action=access.Action.REFUND
            ),
            "may_connect": access.may(
                user=request.user, landlord_id=landlord.pk, action=access.Action.CONNECT
            ),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def refund(request: HttpRequest, payment_uuid: uuid.UUID) -> HttpResponse:
    payment = access.access_landlord_payment(
        user=request.user, payment_uuid=payment_uuid, action=access.Action.REFUND
    )
    available = refundable_minor(payment=payment)
    form = RefundForm(request.POST or None, available_minor=available)
    status = 200
    if request.method == "POST":
        status = form_error_status(request)
        if form.submit(payment=payment, actor_id=request.user.pk):
            return redirect("payments:landlord_payments")
    return render(
        request,
        "payments/refund.html",
        {"payment": payment, "form": form, "available": available},
        status=status,
    )


# --- Webhooks ---------------------------------------------------------------


def _webhook(request: HttpRequest, *, secret: str, connect: bool) -> HttpResponse:
    if not secret:
        raise Http404
    try:
        event = webhook_event_verify(
            payload=request.body,
            signature=request.headers.get("Stripe-Signature", ""),
            secret=secret,
            tolerance=settings.STRIPE_WEBHOOK_TOLERANCE,
        )
    except WebhookRejected as exc:
        logger.warning("stripe webhook rejected: %s", exc)
        return JsonResponse({"error": str(exc)}, status=400)
    if connect != bool(event.get("account")):
        # A platform event on the Connect endpoint or the other way round:
        # the endpoints are set up wrongly in the Stripe dashboard.
        logger.warning("stripe event %s arrived on the wrong endpoint", event.get("id"))
        return JsonResponse({"error": "event sent to the wrong endpoint"}, status=400)
    try:
        _, created = payment_event_receive(provider="stripe", event=event)
    except EventRejected as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"received": True, "duplicate": not created})


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Platform events (signing secret ``STRIPE_WEBHOOK_SECRET``)."""
    return _webhook(request, secret=settings.STRIPE_WEBHOOK_SECRET, connect=False)


@csrf_exempt
@require_POST
def stripe_connect_webhook(request: HttpRequest) -> HttpResponse:
    """Events of connected accounts (signing secret ``STRIPE_CONNECT_WEBHOOK_SECRET``)."""
    return _webhook(request, secret=settings.STRIPE_CONNECT_WEBHOOK_SECRET, connect=True)
