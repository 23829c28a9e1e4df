"""When a tenant cannot top up: a payment-plan request that reaches the landlord,
and the landlord's answer that reaches the tenant (their page and an email).

A request ends in one of three states: *accepted* or *declined* by the
landlord's answer, or *closed* without an answer when its tenancy ends while it
is still open (``plan_requests_close``): there is no tenant left to answer, and
the landlord's pages stop asking for one. What is still owed then is on the
final statement.
"""

from __future__ import annotations

from datetime import datetime

from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.live import unit_changed

from .audit import audit_record
from .models import PaymentPlanRequest, Tenancy


class PlanRequestError(Exception):
    """A request that cannot be made, with the reason to show."""


def last_plan_request(*, tenancy: Tenancy) -> PaymentPlanRequest | None:
    """The tenancy's newest request, open or answered: what the tenant's page says."""
    return PaymentPlanRequest.objects.filter(tenancy=tenancy).order_by("-created_at", "-pk").first()


@transaction.atomic
def payment_plan_request(
    *, tenancy: Tenancy, actor_id: int | None, weekly_minor: int | None, message: str
) -> PaymentPlanRequest:
    """Ask the landlord for a payment plan; at most one open request per tenancy."""
    try:
        with transaction.atomic():
            request = PaymentPlanRequest.objects.create(
                landlord_id=tenancy.landlord_id,
                tenancy=tenancy,
                weekly_minor=weekly_minor,
                message=message,
            )
    except IntegrityError as exc:
        raise PlanRequestError(
            "You have already asked for a payment plan; your landlord will answer it."
        ) from exc
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="payment_plan.requested",
        tenancy=tenancy,
        data={"request_id": request.pk, "weekly_minor": weekly_minor},
    )
    unit_changed(tenancy.unit)
    return request


ANSWER_MAX = 1000


@transaction.atomic
def payment_plan_answer(
    *, plan_request: PaymentPlanRequest, actor_id: int | None, accept: bool, note: str
) -> PaymentPlanRequest:
    """The landlord accepts a payment-plan request with its terms, or declines it
    saying why. Once: an answered request cannot be answered again (the tenant may
    ask anew). The tenant is emailed on commit and sees the answer on their page."""
    note = note.strip()
    if not note:
        raise PlanRequestError(
            "Write the plan's terms." if accept else "Say why, so the tenant knows what to do."
        )
    if len(note) > ANSWER_MAX:
        raise PlanRequestError(f"Keep the note under {ANSWER_MAX} characters.")
    locked = (
        PaymentPlanRequest.objects.select_for_update()
        .select_related("tenancy__unit__property", "tenancy__tenant")
        .get(pk=plan_request.pk)
    )
    if locked.status == PaymentPlanRequest.Status.CLOSED:
        raise PlanRequestError("This request was closed when the tenancy ended.")
    if locked.status != PaymentPlanRequest.Status.OPEN:
        raise PlanRequestError("This request has already been answered.")
    status = PaymentPlanRequest.Status.ACCEPTED if accept else PaymentPlanRequest.Status.DECLINED
    locked.status = status
    locked.answer = note
    locked.answered_by_id = actor_id
    locked.closed_at = timezone.now()
    locked.save(update_fields=["status", "answer", "answered_by", "closed_at"])
    tenancy = locked.tenancy
    audit_record(
        landlord_id=locked.landlord_id,
        actor_id=actor_id,
        action=f"payment_plan.{status}",
        tenancy=tenancy,
        reason=note,
        data={"request_id": locked.pk},
    )
    email = tenancy.tenant.email
    if email:
        unit = tenancy.unit
        verdict = "accepted" if accept else "declined"
        heading = "The plan's terms" if accept else "Your landlord's note"
        body = (
            f"Your landlord {verdict} your payment-plan request for {unit.property.name}, "
            f"{unit.name}.\n\n{heading}:\n{note}\n\n"
            'You can read this answer again on your "Can\'t top up" page.'
        )
        # A mail server that fails does not undo the answer: the tenant's page has it.
        transaction.on_commit(
            lambda: send_mail(
                subject=f"Your payment-plan request: {verdict}",
                message=body,
                from_email=None,
                recipient_list=[email],
            ),
            robust=True,
        )
    unit_changed(tenancy.unit)
    return locked


def plan_requests_close(*, tenancy: Tenancy, actor_id: int | None, now: datetime) -> int:
    """Close the tenancy's open request, unanswered, as the tenancy ends (move-out);
    how many were closed (at most one is open). Runs in the move-out's transaction,
    after the tenancy's row lock: the answer takes the request's lock, so a landlord
    answering at the same moment either answers first or is told it was closed."""
    closed = 0
    for request in PaymentPlanRequest.objects.select_for_update().filter(
        tenancy=tenancy, status=PaymentPlanRequest.Status.OPEN
    ):
        request.status = PaymentPlanRequest.Status.CLOSED
        request.closed_at = now
        request.save(update_fields=["status", "closed_at"])
        audit_record(
            landlord_id=tenancy.landlord_id,
            actor_id=actor_id,
            action="payment_plan.closed",
            tenancy=tenancy,
            reason="the tenancy ended",
            data={"request_id": request.pk},
        )
        closed += 1
    return closed
