"""Dispute pages: the tenant's, the landlord's, the shared case page and the admins' desk.

Views parse, authorise (``disputes.access``, ``landlord.access``), call one
service and render; a refused step re-renders its page with the error and
what was typed (status 400, or 422 to htmx: ``config.htmx``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.htmx import form_error_status
from landlord import access as landlord_access
from landlord.models import Landlord
from meters.models import CutoffNotice
from payments.models import Dispute as Chargeback
from payments.models import Invoice, Payment

from . import access, selectors, services
from .files import max_bytes
from .forms import amount_parse, date_parse, int_parse
from .models import Dispute

Role = services.Role


def _actor(request: HttpRequest) -> AbstractBaseUser:
    user = request.user
    if isinstance(user, AnonymousUser):
        raise Http404
    return user


def _files(request: HttpRequest) -> list[Any]:
    return request.FILES.getlist("files")


# --- tenant ----------------------------------------------------------------------


@login_required
@require_GET
def tenant_disputes(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = landlord_access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    disputes = Dispute.objects.filter(tenancy=tenancy).order_by("-created_at")
    return render(request, "disputes/tenant_list.html", {"tenancy": tenancy, "disputes": disputes})


def _item_choices(tenancy: Any) -> dict[str, Any]:
    return {
        "invoices": list(Invoice.objects.filter(tenancy=tenancy).order_by("-period_start")[:24]),
        "payments": list(
            Payment.objects.filter(tenancy=tenancy)
            .exclude(status=Payment.Status.CANCELED)
            .order_by("-created_at")[:30]
        ),
        "notices": list(CutoffNotice.objects.filter(tenancy=tenancy).order_by("-noticed_at")[:10]),
    }


def _item_from(tenancy: Any, data: Any) -> services.DisputeItem:
    subject = data.get("subject", "")
    if subject == Dispute.Subject.INVOICE:
        invoice = Invoice.objects.filter(
            pk=int_parse(data.get("invoice")) or 0, tenancy=tenancy
        ).first()
        return services.DisputeItem(subject=subject, invoice=invoice)
    if subject == Dispute.Subject.PAYMENT:
        try:
            ref = uuid.UUID(data.get("payment", ""))
        except ValueError:
            return services.DisputeItem(subject=subject)
        payment = Payment.objects.filter(uuid=ref, tenancy=tenancy).first()
        return services.DisputeItem(subject=subject, payment=payment)
    if subject == Dispute.Subject.DISCONNECTION:
        notice = CutoffNotice.objects.filter(
            pk=int_parse(data.get("notice")) or 0, tenancy=tenancy
        ).first()
        return services.DisputeItem(subject=subject, cutoff_notice=notice)
    if subject == Dispute.Subject.PERIOD:
        return services.DisputeItem(
            subject=subject,
            period_start=date_parse(data.get("period_start", ""), "first day"),
            period_end=date_parse(data.get("period_end", ""), "last day"),
        )
    raise services.DisputeError(
        "Choose what you dispute: a bill, a payment, a period or a disconnection."
    )


@login_required
@require_http_methods(["GET", "POST"])
def dispute_new(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = landlord_access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    context: dict[str, Any] = {
        "tenancy": tenancy,
        "categories": Dispute.Category.choices,
        "subjects": Dispute.Subject.choices,
        "max_mb": max_bytes() // (1024 * 1024),
        "posted": request.POST if request.method == "POST" else request.GET,
        **_item_choices(tenancy),
    }
    if request.method == "GET":
        return render(request, "disputes/new.html", context)
    try:
        dispute = services.dispute_open(
            tenancy=tenancy,
            actor=_actor(request),
            item=_item_from(tenancy, request.POST),
            category=request.POST.get("category", ""),
            message=request.POST.get("message", ""),
            amount_minor=amount_parse(request.POST.get("amount", "")),
            amount_explanation=request.POST.get("amount_explanation", ""),
            files=_files(request),
        )
    except services.DisputeError as exc:
        context["error"] = str(exc)
        return render(request, "disputes/new.html", context, status=form_error_status(request))
    return redirect("disputes:detail", dispute_id=dispute.pk)


# --- the case page, for every side ------------------------------------------------------


# The landlord's choices, worded as what they do now (the model's labels say what was done).
RESPONSE_OPTIONS = [
    (Dispute.Response.ACCEPT, "Accept with an adjustment to the balance"),
    (Dispute.Response.REFUND, "Accept with a refund to the tenant's card"),
    (Dispute.Response.PARTIAL, "Propose a partial adjustment"),
    (Dispute.Response.CONTEST, "Contest"),
]


def _case_context(request: HttpRequest, dispute: Dispute, role: str) -> dict[str, Any]:
    may_offer = role == Role.LANDLORD and landlord_access.may(
        user=request.user, landlord_id=dispute.landlord_id, action=landlord_access.Action.REFUND
    )
    refundable = []
    if may_offer and dispute.status == Dispute.Status.OPEN:
        refundable = selectors.refundable_payments(dispute=dispute)
    responses = [
        (value, label)
        for value, label in RESPONSE_OPTIONS
        if value == Dispute.Response.CONTEST
        or (may_offer and (value != Dispute.Response.REFUND or refundable))
    ]
    return {
        "d": dispute,
        "role": role,
        "messages_list": selectors.dispute_messages(dispute=dispute),
        "responses": responses,
        "refundable": refundable,
        "may_offer": may_offer,
        "max_mb": max_bytes() // (1024 * 1024),
        "posted": request.POST,
        "four_eyes_above": services.four_eyes_above(),
        "now": timezone.now(),
    }


def _case(request: HttpRequest, dispute: Dispute, role: str, error: str = "") -> HttpResponse:
    if role == Role.ADMIN:
        return _desk_case(request, dispute, error=error)
    context = _case_context(request, dispute, role)
    context["error"] = error
    return render(
        request,
        "disputes/detail.html",
        context,
        status=form_error_status(request) if error else 200,
    )


@login_required
@require_GET
def dispute_detail(request: HttpRequest, dispute_id: int) -> HttpResponse:
    dispute, role = access.access_dispute(user=request.user, dispute_id=dispute_id)
    if role == Role.ADMIN:
        return redirect("disputes:desk_case", dispute_id=dispute.pk)
    return _case(request, dispute, role)


def _act(request: HttpRequest, dispute_id: int, roles: set[str], call: Any) -> HttpResponse:
    dispute, role = access.access_dispute(user=request.user, dispute_id=dispute_id)
    if role not in roles:
        # They can see the case, so its existence is no secret; the step is not theirs.
        raise PermissionDenied("This step belongs to another party of the dispute.")
    try:
        call(dispute, role)
    except services.DisputeError as exc:
        dispute.refresh_from_db()
        return _case(request, dispute, role, error=str(exc))
    if role == Role.ADMIN:
        return redirect("disputes:desk_case", dispute_id=dispute.pk)
    return redirect("disputes:detail", dispute_id=dispute.pk)


def _payment_chosen(request: HttpRequest, dispute: Dispute) -> Payment:
    """The payment picked in a refund form: one of the dispute's tenancy, or an error."""
    try:
        ref = uuid.UUID(request.POST.get("payment", ""))
    except ValueError:
        raise services.DisputeError("Choose the payment to refund.") from None
    payment = Payment.objects.filter(uuid=ref, tenancy_id=dispute.tenancy_id).first()
    if payment is None:
        raise services.DisputeError("Choose the payment to refund.")
    return payment


@login_required
@require_POST
def dispute_respond(request: HttpRequest, dispute_id: int) -> HttpResponse:
    def call(dispute: Dispute, role: str) -> None:
        response = request.POST.get("response", "")
        refund = response == Dispute.Response.REFUND
        # Who may offer money is the service's rule (an owner); a contest needs none.
        services.dispute_respond(
            dispute=dispute,
            actor=_actor(request),
            response=response,
            note=request.POST.get("note", ""),
            adjustment_minor=amount_parse(
                request.POST.get("refund_amount" if refund else "adjustment", "")
            ),
            over_reason=request.POST.get("over_reason", ""),
            files=_files(request),
            payment=_payment_chosen(request, dispute) if refund else None,
            credit=refund and request.POST.get("credit") == "1",
        )

    return _act(request, dispute_id, {Role.LANDLORD}, call)


@login_required
@require_POST
def dispute_accept(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _act(
        request,
        dispute_id,
        {Role.TENANT},
        lambda d, r: services.dispute_tenant_accept(
            dispute=d, actor=_actor(request), note=request.POST.get("note", "")
        ),
    )


@login_required
@require_POST
def dispute_escalate(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _act(
        request,
        dispute_id,
        {Role.TENANT, Role.ADMIN},
        lambda d, r: services.dispute_escalate(
            dispute=d, actor=_actor(request), role=r, note=request.POST.get("note", "")
        ),
    )


@login_required
@require_POST
def dispute_withdraw(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _act(
        request,
        dispute_id,
        {Role.TENANT},
        lambda d, r: services.dispute_withdraw(
            dispute=d, actor=_actor(request), note=request.POST.get("note", "")
        ),
    )


@login_required
@require_POST
def dispute_message(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _act(
        request,
        dispute_id,
        {Role.TENANT, Role.LANDLORD, Role.ADMIN},
        lambda d, r: services.dispute_message_add(
            dispute=d,
            actor=_actor(request),
            role=r,
            body=request.POST.get("body", ""),
            files=_files(request),
        ),
    )


@login_required
@require_GET
def dispute_attachment(request: HttpRequest, dispute_id: int, attachment_id: int) -> FileResponse:
    attachment = access.access_attachment(
        user=request.user, dispute_id=dispute_id, attachment_id=attachment_id
    )
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=attachment.content_type == "application/pdf",
        filename=attachment.name,
        content_type=attachment.content_type,
    )
    response["Cache-Control"] = "private, no-store"
    return response


# --- landlord -----------------------------------------------------------------------------


@login_required
@require_GET
def landlord_disputes(request: HttpRequest) -> HttpResponse:
    landlord = landlord_access.landlord_for_user(user=request.user)
    disputes = Dispute.objects.filter(landlord=landlord).select_related("unit", "tenancy__tenant")
    unit_id = int_parse(request.GET.get("unit", ""))
    if unit_id:
        disputes = disputes.filter(unit_id=unit_id)
    return render(
        request,
        "disputes/landlord_list.html",
        {"disputes": disputes.order_by("-created_at")[:200], "unit_id": unit_id},
    )


# --- the admins' desk -----------------------------------------------------------------------


@login_required
@require_GET
def desk(request: HttpRequest) -> HttpResponse:
    access.access_admin(user=request.user)
    status = request.GET.get("status", "")
    if status not in {"", selectors.CHARGEBACKS, *Dispute.Status.values}:
        status = ""
    landlord_id = int_parse(request.GET.get("landlord", ""))
    mine = request.GET.get("mine") == "1"
    rows = selectors.desk_queue(
        user=_actor(request), status=status, landlord_id=landlord_id, mine=mine
    )
    return render(
        request,
        "disputes/desk.html",
        {
            "rows": rows,
            "status": status,
            "statuses": Dispute.Status.choices,
            "landlords": Landlord.objects.order_by("name"),
            "landlord_id": landlord_id,
            "mine": mine,
            "chargebacks": selectors.CHARGEBACKS,
        },
    )


def _desk_case(request: HttpRequest, dispute: Dispute, error: str = "") -> HttpResponse:
    context = _case_context(request, dispute, Role.ADMIN)
    context["error"] = error
    context["timeline"] = selectors.dispute_timeline(dispute=dispute)
    context["admins"] = (
        get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")
    )
    context["desk"] = True
    context["refundable"] = selectors.refundable_payments(dispute=dispute)
    return render(
        request,
        "disputes/detail.html",
        context,
        status=form_error_status(request) if error else 200,
    )


@login_required
@require_GET
def desk_case(request: HttpRequest, dispute_id: int) -> HttpResponse:
    access.access_admin(user=request.user)
    dispute, _ = access.access_dispute(user=request.user, dispute_id=dispute_id)
    return _desk_case(request, dispute)


def _desk_act(request: HttpRequest, dispute_id: int, call: Any) -> HttpResponse:
    access.access_admin(user=request.user)
    dispute, _ = access.access_dispute(user=request.user, dispute_id=dispute_id)
    try:
        call(dispute)
    except services.DisputeError as exc:
        dispute.refresh_from_db()
        return _desk_case(request, dispute, error=str(exc))
    return redirect("disputes:desk_case", dispute_id=dispute.pk)


@login_required
@require_POST
def desk_assign(request: HttpRequest, dispute_id: int) -> HttpResponse:
    def call(dispute: Dispute) -> None:
        raw = request.POST.get("assignee", "")
        assignee: AbstractBaseUser | None = None
        if raw == "me":
            assignee = _actor(request)
        elif raw:
            assignee = (
                get_user_model().objects.filter(pk=int_parse(raw) or 0, is_staff=True).first()
            )
            if assignee is None:
                raise services.DisputeError("Choose an admin to assign.")
        services.dispute_assign(dispute=dispute, actor=_actor(request), assignee=assignee)

    return _desk_act(request, dispute_id, call)


@login_required
@require_POST
def desk_resolve(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _desk_act(
        request,
        dispute_id,
        lambda d: services.dispute_resolve(
            dispute=d,
            actor=_actor(request),
            adjustment_minor=amount_parse(request.POST.get("adjustment", ""), required=True) or 0,
            note=request.POST.get("note", ""),
            over_reason=request.POST.get("over_reason", ""),
        ),
    )


@login_required
@require_POST
def desk_refund(request: HttpRequest, dispute_id: int) -> HttpResponse:
    def call(dispute: Dispute) -> None:
        services.dispute_resolve_refund(
            dispute=dispute,
            actor=_actor(request),
            payment=_payment_chosen(request, dispute),
            amount_minor=amount_parse(request.POST.get("amount", ""), required=True) or 0,
            note=request.POST.get("note", ""),
            credit=request.POST.get("credit") == "1",
            over_reason=request.POST.get("over_reason", ""),
        )

    return _desk_act(request, dispute_id, call)


@login_required
@require_POST
def desk_approve(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _desk_act(
        request,
        dispute_id,
        lambda d: services.dispute_approve(
            dispute=d, actor=_actor(request), note=request.POST.get("note", "")
        ),
    )


@login_required
@require_POST
def desk_decline(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _desk_act(
        request,
        dispute_id,
        lambda d: services.dispute_decline(
            dispute=d, actor=_actor(request), note=request.POST.get("note", "")
        ),
    )


@login_required
@require_POST
def desk_reject(request: HttpRequest, dispute_id: int) -> HttpResponse:
    return _desk_act(
        request,
        dispute_id,
        lambda d: services.dispute_reject(
            dispute=d, actor=_actor(request), note=request.POST.get("note", "")
        ),
    )


@login_required
@require_GET
def desk_chargeback(request: HttpRequest, chargeback_id: int) -> HttpResponse:
    access.access_admin(user=request.user)
    chargeback = (
        Chargeback.objects.select_related("payment__tenancy__unit__property", "landlord")
        .filter(pk=chargeback_id)
        .first()
    )
    if chargeback is None:
        raise Http404
    timeline = selectors.chargeback_timeline(chargeback=chargeback)
    return render(
        request,
        "disputes/chargeback.html",
        {"cb": chargeback, "timeline": timeline, "back": reverse("disputes:desk")},
    )
