"""The tenant's pages beside the home: history, usage, and the top-up preview."""

from __future__ import annotations

import json
from typing import cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from config.htmx import form_error_status
from payments.forms import TopUpForm

from . import access, selectors, usage
from .forms_tenant import EmailForm, NotificationsForm, PlanRequestForm
from .hardship import PlanRequestError, last_plan_request, payment_plan_request
from .push import (
    SubscriptionError,
    push_configured,
    push_subscribe,
    push_unsubscribe,
    subscription_parse,
)
from .tenant_settings import tenant_email_change, tenant_notifications_for, tenant_notifications_set
from .views import tenancy_history


@login_required
@require_GET
def tenant_history(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Payments, credits, bills and adjustments, paginated; also a former tenant's."""
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    return tenancy_history(request, tenancy)


@login_required
@require_GET
def topup_preview(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Where a top-up of the typed amount would go (htmx partial; empty on a bad amount)."""
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    form = TopUpForm(request.GET, currency=tenancy.unit.property.currency)
    preview = None
    if tenancy.unit.is_prepaid and form.is_valid():
        view = selectors.tenancy_view(tenancy=tenancy)
        preview = selectors.view_topup_preview(view, form.cleaned_data["amount"])
    return render(request, "tenant/_topup_preview.html", {"preview": preview})


@login_required
@require_GET
def tenant_usage(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Usage by half hour, day or month, in kWh or money, beside the previous period."""
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    period, day, error = usage.usage_params(request.GET, tenancy.unit.property.timezone)
    data = usage.tenancy_usage(tenancy=tenancy, period=period, day=day)
    context = {"tenancy": tenancy, "error": error, **usage.usage_context(data)}
    return render(request, "tenant/usage.html", context)


@login_required
@require_GET
def tenant_usage_data(request: HttpRequest, tenancy_id: int) -> JsonResponse:
    """The chart's data (see landlord.usage): a bad period or date is a 400 that says why."""
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    period, day, error = usage.usage_params(request.GET, tenancy.unit.property.timezone)
    if error:
        return JsonResponse({"error": error}, status=400)
    return JsonResponse(usage.tenancy_usage(tenancy=tenancy, period=period, day=day).as_json())


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)  # signed in: the views are login_required


def _notifications_initial(tenancy: access.Tenancy) -> dict[str, object]:
    prefs = tenant_notifications_for(tenancy=tenancy)
    threshold = prefs.low_credit_threshold_minor
    return {
        "low_credit_threshold": "" if threshold is None else f"{threshold / 100:.2f}",
        "email_low_credit": prefs.email_low_credit,
        "email_supply_restored": prefs.email_supply_restored,
        "quiet_start": prefs.quiet_start,
        "quiet_end": prefs.quiet_end,
    }


def _settings_page(
    request: HttpRequest,
    tenancy: access.Tenancy,
    *,
    notifications: NotificationsForm | None = None,
    email: EmailForm | None = None,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "tenant/settings.html",
        {
            "tenancy": tenancy,
            "notifications": notifications
            or NotificationsForm(initial=_notifications_initial(tenancy)),
            "email_form": email or EmailForm(user=_user(request)),
            "automatic": selectors.automatic_payments_sentence(tenancy=tenancy),
            "unit_threshold_minor": tenancy.unit.low_credit_threshold_minor,
            "currency": tenancy.unit.property.currency,
            "push_public_key": settings.VAPID_PUBLIC_KEY if push_configured() else "",
        },
        status=status,
    )


@login_required
@require_GET
def tenant_settings(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Email, password, notification choices and automatic payments, in one place."""
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    return _settings_page(request, tenancy)


@login_required
@require_http_methods(["POST"])
def tenant_notifications(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    form = NotificationsForm(request.POST)
    if not form.is_valid():
        return _settings_page(
            request, tenancy, notifications=form, status=form_error_status(request)
        )
    data = form.cleaned_data
    tenant_notifications_set(
        tenancy=tenancy,
        actor_id=request.user.pk,
        low_credit_threshold_minor=data["low_credit_threshold"],
        email_low_credit=data["email_low_credit"],
        email_supply_restored=data["email_supply_restored"],
        quiet_start=data["quiet_start"],
        quiet_end=data["quiet_end"],
    )
    messages.success(request, "Your notification choices are saved.")
    return redirect("tenant:settings", tenancy.pk)


@login_required
@require_http_methods(["POST"])
def tenant_email(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    form = EmailForm(request.POST, user=_user(request))
    if not form.is_valid():
        return _settings_page(request, tenancy, email=form, status=form_error_status(request))
    tenant_email_change(
        user=_user(request),
        tenancy=tenancy,
        email=form.cleaned_data["email"],
        actor_id=request.user.pk,
    )
    messages.success(request, "Your email address is changed.")
    return redirect("tenant:settings", tenancy.pk)


def _cant_pay_page(
    request: HttpRequest,
    tenancy: access.Tenancy,
    form: PlanRequestForm | None = None,
    status: int = 200,
) -> HttpResponse:
    view = selectors.tenancy_view(tenancy=tenancy)
    return render(
        request,
        "tenant/cant_pay.html",
        {
            "tenancy": tenancy,
            "v": view,
            "recovery_percent": selectors.recovery_percent(),
            "contacts": selectors.landlord_contacts(landlord_id=tenancy.landlord_id),
            "last_request": last_plan_request(tenancy=tenancy),
            "form": form or PlanRequestForm(),
        },
        status=status,
    )


@login_required
@require_GET
def tenant_cant_pay(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """What a tenant can do when they cannot top up: emergency credit if they may
    take it, their landlord's contact, and a payment-plan request."""
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    return _cant_pay_page(request, tenancy)


@login_required
@require_http_methods(["POST"])
def tenant_plan_request(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    form = PlanRequestForm(request.POST)
    if not form.is_valid():
        return _cant_pay_page(request, tenancy, form, status=form_error_status(request))
    try:
        payment_plan_request(
            tenancy=tenancy,
            actor_id=request.user.pk,
            weekly_minor=form.cleaned_data["weekly"],
            message=form.cleaned_data["message"],
        )
    except PlanRequestError as exc:
        form.add_error(None, str(exc))
        return _cant_pay_page(request, tenancy, form, status=form_error_status(request))
    messages.success(request, "Your request is with your landlord.")
    return redirect("tenant:cant_pay", tenancy.pk)


def _json_body(request: HttpRequest) -> object:
    try:
        return json.loads(request.body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SubscriptionError("The body is not valid JSON.") from exc


@login_required
@require_http_methods(["POST"])
def tenant_push_subscribe(request: HttpRequest, tenancy_id: int) -> JsonResponse:
    """This browser's push subscription (JSON from ``PushSubscription.toJSON()``)."""
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    if not push_configured():
        return JsonResponse({"error": "Phone notifications are not set up here."}, status=409)
    try:
        endpoint, p256dh, auth = subscription_parse(_json_body(request))
    except SubscriptionError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    push_subscribe(
        tenancy=tenancy, user_id=_user(request).pk, endpoint=endpoint, p256dh=p256dh, auth=auth
    )
    return JsonResponse({"subscribed": True}, status=201)


@login_required
@require_http_methods(["POST"])
def tenant_push_unsubscribe(request: HttpRequest, tenancy_id: int) -> JsonResponse:
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    try:
        data = _json_body(request)
    except SubscriptionError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    endpoint = data.get("endpoint") if isinstance(data, dict) else None
    if not isinstance(endpoint, str) or not endpoint:
        return JsonResponse({"error": "endpoint is missing."}, status=400)
    removed = push_unsubscribe(tenancy=tenancy, user_id=_user(request).pk, endpoint=endpoint)
    return JsonResponse({"subscribed": False, "removed": removed})
