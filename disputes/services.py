"""Every change to a dispute: a small explicit state machine.

::

    open ──respond──▶ responded ──accept──▶ accepted ──▶ resolved (the landlord's offer posted,
      │                   │                                        or their refund asked for)
      │                   │
      │ (after the        └──escalate──▶ escalated ──resolve──▶ resolved
      │  response window)                   │    └──(above the four-eyes amount)──▶ approval
      └──────escalate──────────────────────▶│                    approve ▶ resolved (another admin)
                                            │                    decline ▶ escalated
    admins may also resolve or reject any open, responded or escalated case
    the tenant may withdraw any case that is not final

Each transition locks the dispute row (``select_for_update``), checks the
move against ``TRANSITIONS`` (anything else raises ``IllegalTransition``),
records a message both parties see, writes one audit event, emails both
parties on commit, and re-evaluates the unit's supply when the case opens or
closes, so the disconnection freeze (``disputes.freeze``) applies at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.formats import day_clock, format_money
from landlord.audit import audit_record
from landlord.models import Membership, Tenancy
from meters.models import CutoffNotice
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account, Invoice, LedgerTransaction, Payment
from payments.refunds import refund_provider_check, refund_send
from payments.services import PaymentError, refund_create, refundable_minor
from supply.decision import supply_evaluate

from .files import AttachmentRefused, attachment_check
from .models import Dispute, DisputeAttachment, DisputeMessage

logger = logging.getLogger(__name__)

S = Dispute.Status
Role = DisputeMessage.Role


class DisputeError(ValueError):
    """Bad input for a dispute step; the message is shown to the person as it is."""


class IllegalTransition(DisputeError):
    pass


class FourEyes(DisputeError):
    pass


class RefundOfferLapsed(DisputeError):
    """The landlord's offered refund can no longer be made (the payment was refunded
    meanwhile, its provider is gone): the case needs an admin."""


# action -> (the statuses it may start from, the status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "respond": (frozenset({S.OPEN}), S.LANDLORD_RESPONDED),
    "accept": (frozenset({S.LANDLORD_RESPONDED}), S.TENANT_ACCEPTED),
    "settle": (frozenset({S.TENANT_ACCEPTED}), S.RESOLVED),
    "escalate": (frozenset({S.OPEN, S.LANDLORD_RESPONDED}), S.ESCALATED),
    "resolve": (frozenset({S.OPEN, S.LANDLORD_RESPONDED, S.ESCALATED}), S.RESOLVED),
    "propose": (frozenset({S.OPEN, S.LANDLORD_RESPONDED, S.ESCALATED}), S.AWAITING_APPROVAL),
    "approve": (frozenset({S.AWAITING_APPROVAL}), S.RESOLVED),
    "decline": (frozenset({S.AWAITING_APPROVAL}), S.ESCALATED),
    "reject": (frozenset({S.OPEN, S.LANDLORD_RESPONDED, S.ESCALATED}), S.REJECTED),
    # The tenant's window passed without an answer: the landlord's answer stands.
    "lapse": (frozenset({S.LANDLORD_RESPONDED}), S.RESOLVED),
    "withdraw": (
        frozenset(
            {S.OPEN, S.LANDLORD_RESPONDED, S.TENANT_ACCEPTED, S.ESCALATED} | {S.AWAITING_APPROVAL}
        ),
        S.WITHDRAWN,
    ),
}

ACTION_WORDS = {
    "respond": "respond to",
    "accept": "accept the answer to",
    "settle": "settle",
    "escalate": "escalate",
    "resolve": "resolve",
    "propose": "propose an adjustment on",
    "approve": "approve an adjustment on",
    "decline": "decline the adjustment on",
    "reject": "reject",
    "withdraw": "withdraw",
    "lapse": "close for want of an answer",
}


def _days(name: str) -> timedelta:
    return timedelta(days=int(settings.SUBMETER[name]))


def four_eyes_above() -> int:
    return int(settings.SUBMETER["DISPUTE_FOUR_EYES_ABOVE_MINOR"])


def _locked(dispute: Dispute) -> Dispute:
    return (
        Dispute.objects.select_for_update()
        .select_related("tenancy__tenant", "unit__property", "landlord")
        .get(pk=dispute.pk)
    )


def _move(dispute: Dispute, action: str) -> str:
    allowed, target = TRANSITIONS[action]
    if dispute.status not in allowed:
        raise IllegalTransition(
            f"Cannot {ACTION_WORDS[action]} dispute #{dispute.pk}: it is "
            f"{dispute.get_status_display().lower()}."
        )
    dispute.status = target
    dispute.updated_at = timezone.now()
    return target


def _text(value: str, what: str, *, required: bool = True) -> str:
    value = (value or "").strip()
    if required and not value:
        raise DisputeError(f"Write {what}.")
    return value


def _files_check(files: Sequence[UploadedFile]) -> list[tuple[UploadedFile, str]]:
    checked = []
    for upload in files:
        try:
            checked.append((upload, attachment_check(upload)))
        except AttachmentRefused as exc:
            raise DisputeError(str(exc)) from exc
    return checked


def _audit(
    dispute: Dispute,
    *,
    actor: AbstractBaseUser | None,
    action: str,
    reason: str = "",
    **data: Any,
) -> None:
    """The one place a dispute step is audit-logged (shown on the unit's page too);
    no actor for what the deadlines do."""
    audit_record(
        landlord_id=dispute.landlord_id,
        actor_id=actor.pk if actor is not None else None,
        action=f"dispute.{action}",
        unit=dispute.unit,
        reason=reason,
        data={"dispute": dispute.pk, "status": dispute.status, **data},
    )


def _landlord_emails(dispute: Dispute) -> list[str]:
    return list(
        Membership.objects.filter(landlord_id=dispute.landlord_id).values_list(
            "user__email", flat=True
        )
    )


def _admin_emails(dispute: Dispute) -> list[str]:
    """The assigned admin, or every active admin while nobody is assigned."""
    if dispute.assigned_to is not None:
        return [dispute.assigned_to.email]
    return list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .values_list("email", flat=True)
    )


def _recipients(dispute: Dispute) -> list[str]:
    emails = [dispute.tenancy.tenant.email, *_landlord_emails(dispute)]
    if dispute.assigned_to is not None:
        emails.append(dispute.assigned_to.email)
    return sorted({e for e in emails if e})


def _notify(
    dispute: Dispute, *, headline: str, body: str, recipients: Sequence[str] | None = None
) -> None:
    """Email both parties (and the assigned admin), or only ``recipients``, on commit."""
    emails = _recipients(dispute) if recipients is None else sorted({e for e in recipients if e})
    if not emails:
        return
    subject = f"Dispute #{dispute.pk} ({dispute.unit.name}): {headline}"
    text = (
        f"{headline}\n\n{body}\n\nStatus: {dispute.get_status_display()}.\n"
        f"See the case on your dispute page (dispute #{dispute.pk})."
    )

    def send() -> None:
        send_mail(subject, text, from_email=None, recipient_list=emails, fail_silently=False)

    transaction.on_commit(send, robust=True)


def _step(
    dispute: Dispute,
    *,
    actor: AbstractBaseUser | None,
    role: str,
    step: str,
    body: str,
    files: Sequence[tuple[UploadedFile, str]] = (),
    headline: str,
    **audit_data: Any,
) -> DisputeMessage:
    """Record one step: the message both sides see, its files, the audit event, the emails."""
    message = DisputeMessage.objects.create(
        landlord_id=dispute.landlord_id,
        dispute=dispute,
        author_id=actor.pk if actor is not None else None,
        role=role,
        step=step,
        body=body,
    )
    for upload, kind in files:
        attachment = DisputeAttachment(
            landlord_id=dispute.landlord_id,
            dispute=dispute,
            message=message,
            name=(upload.name or "file")[-150:],
            content_type=kind,
            size=upload.size or 0,
        )
        attachment.file.save("upload", upload, save=False)
        attachment.save()
    _audit(dispute, actor=actor, action=step, reason=body or headline, **audit_data)
    _notify(dispute, headline=headline, body=body)
    return message


def _supply_follow(dispute: Dispute, why: str) -> None:
    supply_evaluate(unit=dispute.unit, reason=why)


def _check_adjustment(dispute: Dispute, amount_minor: int, over_reason: str) -> None:
    if amount_minor <= 0:
        raise DisputeError("An adjustment must be more than zero.")
    if (
        dispute.amount_minor is not None
        and amount_minor > dispute.amount_minor
        and not over_reason.strip()
    ):
        raise DisputeError("The adjustment is more than the disputed amount: say why, or lower it.")


def _post_adjustment(
    dispute: Dispute, *, amount_minor: int, actor: AbstractBaseUser | None
) -> None:
    """Credit the tenant from the landlord's revenue, once per dispute."""
    tenancy = dispute.tenancy
    revenue = landlord_account(
        landlord=dispute.landlord, kind=Account.Kind.REVENUE, currency=dispute.currency
    )
    txn, _ = ledger_post(
        landlord_id=dispute.landlord_id,
        kind=LedgerTransaction.Kind.ADJUSTMENT,
        idempotency_key=f"tenant-dispute:{dispute.pk}:adjustment",
        legs=[
            Leg(debit=revenue, credit=tenant_account(tenancy=tenancy), amount_minor=amount_minor)
        ],
        memo=f"Dispute #{dispute.pk} resolved",
        created_by_id=actor.pk if actor is not None else None,
    )
    dispute.ledger_transaction = txn
    dispute.adjustment_minor = amount_minor


def _close(dispute: Dispute, outcome: str) -> None:
    dispute.closed_at = timezone.now()
    dispute.due_at = None
    dispute.outcome = outcome[:300]
    dispute.save()
    _supply_follow(dispute, "dispute closed")


# --- the tenant ---------------------------------------------------------------


@dataclass(frozen=True)
class DisputeItem:
    """What a dispute is about, already checked to be the tenancy's own."""

    subject: str
    invoice: Invoice | None = None
    payment: Payment | None = None
    cutoff_notice: CutoffNotice | None = None
    period_start: date | None = None
    period_end: date | None = None

    @property
    def amount_minor(self) -> int | None:
        if self.invoice is not None:
            return self.invoice.total_minor
        if self.payment is not None:
            return self.payment.amount_minor
        return None


def _item_check(tenancy: Tenancy, item: DisputeItem) -> None:
    for obj in (item.invoice, item.payment, item.cutoff_notice):
        if obj is not None and obj.tenancy_id != tenancy.pk:
            raise DisputeError("That item is not part of this tenancy.")
    if item.subject == Dispute.Subject.INVOICE and item.invoice is None:
        raise DisputeError("Choose the bill you dispute.")
    if item.subject == Dispute.Subject.PAYMENT and item.payment is None:
        raise DisputeError("Choose the payment you dispute.")
    if item.subject == Dispute.Subject.PERIOD:
        if item.period_start is None or item.period_end is None:
            raise DisputeError("Give the first and last day of the period.")
        if item.period_end < item.period_start:
            raise DisputeError("The period's last day is before its first day.")
        if item.period_start > timezone.localdate():
            raise DisputeError("The period has not started yet.")


@transaction.atomic
def dispute_open(
    *,
    tenancy: Tenancy,
    actor: AbstractBaseUser,
    item: DisputeItem,
    category: str,
    message: str,
    amount_minor: int | None = None,
    amount_explanation: str = "",
    files: Sequence[UploadedFile] = (),
) -> Dispute:
    """The tenant raises a dispute; automatic disconnection freezes at once."""
    if tenancy.tenant_id != actor.pk:
        raise DisputeError("Only the tenant can raise a dispute on this tenancy.")
    body = _text(message, "what is wrong")
    if category not in Dispute.Category.values:
        raise DisputeError("Choose what the dispute is about.")
    _item_check(tenancy, item)
    explanation = amount_explanation.strip()
    if amount_minor is not None:
        if amount_minor <= 0:
            raise DisputeError("The disputed amount must be more than zero.")
        ceiling = item.amount_minor
        if ceiling is not None and amount_minor > ceiling and not explanation:
            raise DisputeError(
                "The disputed amount is more than the item's own amount: explain why."
            )
    checked = _files_check(files)
    now = timezone.now()
    dispute = Dispute.objects.create(
        landlord_id=tenancy.landlord_id,
        tenancy=tenancy,
        unit_id=tenancy.unit_id,
        raised_by_id=actor.pk,
        subject=item.subject,
        invoice=item.invoice,
        payment=item.payment,
        cutoff_notice=item.cutoff_notice,
        period_start=item.period_start,
        period_end=item.period_end,
        category=category,
        currency=tenancy.unit.property.currency,
        amount_minor=amount_minor,
        amount_explanation=explanation[:300],
        created_at=now,
        updated_at=now,
        due_at=now + _days("DISPUTE_RESPONSE_DAYS"),
    )
    dispute = _locked(dispute)
    _step(
        dispute,
        actor=actor,
        role=Role.TENANT,
        step="raised",
        body=body,
        files=checked,
        headline="A dispute was raised",
        amount_minor=amount_minor,
    )
    _supply_follow(dispute, "dispute opened")
    return dispute


@transaction.atomic
def dispute_tenant_accept(*, dispute: Dispute, actor: AbstractBaseUser, note: str = "") -> Dispute:
    """The tenant accepts the landlord's answer; an offered adjustment is posted, an
    offered refund is asked of the payment provider (checked against the payment
    again: it may have been refunded since it was offered)."""
    dispute = _locked(dispute)
    _tenant_only(dispute, actor)
    _move(dispute, "accept")
    body, headline, what = note.strip(), "The tenant accepted the landlord's answer", ""
    refund_data: dict[str, Any] = {}
    if dispute.proposed_payment is not None:
        what = _offered_refund_make(dispute)
        done = (
            f"{what[0].upper()}{what[1:]} was asked of the payment provider; the balance "
            "follows when the provider confirms it."
        )
        body = f"{body}\n\n{done}".strip()
        headline = f"The tenant accepted the landlord's offer: {what}"
        refund_data = {
            "refund_minor": dispute.proposed_minor,
            "payment": str(dispute.proposed_payment.uuid),
        }
    _step(
        dispute,
        actor=actor,
        role=Role.TENANT,
        step="accepted",
        body=body,
        headline=headline,
        **refund_data,
    )
    _move(dispute, "settle")
    if what:
        outcome = f"the tenant accepted the landlord's offer: {what}"
    elif dispute.proposed_minor:
        _post_adjustment(dispute, amount_minor=dispute.proposed_minor, actor=actor)
        outcome = f"adjusted by the landlord's offer ({dispute.proposed_minor} minor units)"
    else:
        outcome = "the tenant accepted the landlord's answer; no adjustment"
    _close(dispute, outcome)
    _audit(
        dispute,
        actor=actor,
        action="resolved",
        reason=outcome,
        adjustment_minor=dispute.adjustment_minor,
        **refund_data,
    )
    return dispute


def _offered_by(dispute: Dispute) -> AbstractBaseUser | None:
    """The landlord's member whose response made the offer standing on the case."""
    message = (
        dispute.messages.filter(step="responded", role=Role.LANDLORD)
        .select_related("author")
        .order_by("-pk")
        .first()
    )
    return message.author if message is not None else None


def _offered_refund_make(dispute: Dispute) -> str:
    """Make the landlord's offered refund (the tenant accepted, or their window passed):
    checked again, recorded in the landlord member's name, sent on commit. Says what."""
    payment, amount = dispute.proposed_payment, int(dispute.proposed_minor or 0)
    assert payment is not None
    try:
        with transaction.atomic():
            _refund_make(
                dispute,
                payment=payment,
                amount_minor=amount,
                credit=dispute.proposed_credit,
                actor=_offered_by(dispute),
                reason="refund offered by the landlord in answer to the dispute",
            )
    except DisputeError as exc:
        raise RefundOfferLapsed(
            f"The landlord's refund cannot be made any more: {exc} Escalate the dispute "
            "so an admin decides."
        ) from exc
    return _refund_words(dispute, amount, dispute.proposed_credit)


@transaction.atomic
def dispute_escalate(*, dispute: Dispute, actor: AbstractBaseUser, role: str, note: str) -> Dispute:
    """To the admins: the tenant after the landlord's answer (or once the landlord's
    response window passed unanswered), or an admin on an overdue case."""
    dispute = _locked(dispute)
    if role == Role.TENANT:
        _tenant_only(dispute, actor)
    elif role != Role.ADMIN:
        raise DisputeError("Only the tenant or an admin can escalate a dispute.")
    body = _text(note, "why an admin should decide")
    if dispute.status == S.OPEN and dispute.due_at is not None and timezone.now() < dispute.due_at:
        raise IllegalTransition(
            "The landlord still has time to respond; you can escalate once they answer "
            "or their response window has passed."
        )
    _move(dispute, "escalate")
    dispute.due_at = timezone.now() + _days("DISPUTE_ADMIN_DAYS")
    dispute.save()
    _step(
        dispute,
        actor=actor,
        role=role,
        step="escalated",
        body=body,
        headline="Escalated to an admin",
    )
    _desk_notify(dispute, why=body)
    return dispute


@transaction.atomic
def dispute_withdraw(*, dispute: Dispute, actor: AbstractBaseUser, note: str = "") -> Dispute:
    dispute = _locked(dispute)
    _tenant_only(dispute, actor)
    _move(dispute, "withdraw")
    _approval_clear(dispute)
    _close(dispute, "withdrawn by the tenant")
    _step(
        dispute,
        actor=actor,
        role=Role.TENANT,
        step="withdrawn",
        body=note.strip(),
        headline="The tenant withdrew the dispute",
    )
    return dispute


def _tenant_only(dispute: Dispute, actor: AbstractBaseUser) -> None:
    if dispute.tenancy.tenant_id != actor.pk:
        raise DisputeError("Only the tenant who raised the dispute can do this.")


# --- the landlord ---------------------------------------------------------------


@transaction.atomic
def dispute_respond(
    *,
    dispute: Dispute,
    actor: AbstractBaseUser,
    response: str,
    note: str,
    adjustment_minor: int | None = None,
    over_reason: str = "",
    files: Sequence[UploadedFile] = (),
    payment: Payment | None = None,
    credit: bool = False,
) -> Dispute:
    """The landlord accepts (with an adjustment, or with a refund of ``adjustment_minor``
    of ``payment`` to the tenant's card), proposes a partial adjustment, or contests.

    Any money offered is the landlord's own, so it needs a member allowed to refund
    (an owner) and no admin's approval; it moves only once the tenant accepts (or
    their window passes), as an adjustment offer does. ``credit`` (a refund only):
    the amount is credited to the balance first, as for an admin's refund.
    """
    dispute = _locked(dispute)
    membership = Membership.objects.filter(
        user_id=actor.pk, landlord_id=dispute.landlord_id
    ).first()
    if membership is None:
        raise DisputeError("Only the landlord can respond to this dispute.")
    if response not in Dispute.Response.values:
        raise DisputeError("Choose how you respond.")
    R = Dispute.Response
    if response == R.CONTEST:
        body = _text(note, "why you contest the dispute")
        adjustment_minor, payment, credit = None, None, False
    else:
        if not membership.may(Membership.Action.REFUND):
            raise DisputeError(
                "Only an owner can offer an adjustment or a refund; you may contest."
            )
        body = note.strip()
        if adjustment_minor is None:
            raise DisputeError(
                "Give the amount you refund."
                if response == R.REFUND
                else "Give the adjustment you offer."
            )
        _check_adjustment(dispute, adjustment_minor, over_reason)
        if (
            response == R.PARTIAL
            and dispute.amount_minor is not None
            and adjustment_minor >= dispute.amount_minor
        ):
            raise DisputeError("A partial adjustment is less than the disputed amount.")
        if response == R.REFUND:
            if payment is None:
                raise DisputeError("Choose the payment to refund.")
            _refund_check(dispute, payment, adjustment_minor)
        else:
            payment, credit = None, False
    checked = _files_check(files)
    _move(dispute, "respond")
    dispute.response = response
    dispute.proposed_minor = adjustment_minor
    dispute.proposed_payment, dispute.proposed_credit = payment, credit
    dispute.due_at = timezone.now() + _days("DISPUTE_RESPONSE_DAYS")
    dispute.save()
    if over_reason.strip():
        body = f"{body}\n\nMore than the disputed amount because: {over_reason.strip()}".strip()
    refund_data: dict[str, Any] = {}
    headline = f"The landlord responded: {Dispute.Response(response).label.lower()}"
    if payment is not None and adjustment_minor is not None:
        what = _refund_words(dispute, adjustment_minor, credit)
        offer = (
            f"The landlord offers {what}, from the payment of "
            f"{format_money(payment.amount_minor, payment.currency)} made "
            f"{_when(dispute, payment.created_at)}. It is asked of the payment provider when "
            "the tenant accepts."
        )
        body = f"{body}\n\n{offer}".strip()
        headline = f"The landlord accepted the dispute and offers {what}"
        refund_data = {
            "refund_minor": adjustment_minor,
            "payment": str(payment.uuid),
            "credit": credit,
        }
    _step(
        dispute,
        actor=actor,
        role=Role.LANDLORD,
        step="responded",
        body=body,
        files=checked,
        headline=headline,
        response=response,
        adjustment_minor=adjustment_minor if payment is None else None,
        **refund_data,
    )
    return dispute


# --- the admins --------------------------------------------------------------------


def _admin_only(actor: AbstractBaseUser) -> None:
    if not getattr(actor, "is_staff", False):
        raise DisputeError("Only a platform admin can do this.")


@transaction.atomic
def dispute_assign(
    *, dispute: Dispute, actor: AbstractBaseUser, assignee: AbstractBaseUser | None
) -> Dispute:
    _admin_only(actor)
    dispute = _locked(dispute)
    if dispute.is_final:
        raise IllegalTransition(f"Dispute #{dispute.pk} is {dispute.get_status_display().lower()}.")
    if assignee is not None:
        _admin_only(assignee)
    dispute.assigned_to_id = assignee.pk if assignee is not None else None
    dispute.updated_at = timezone.now()
    dispute.save(update_fields=["assigned_to", "updated_at"])
    who = assignee.get_username() if assignee is not None else "nobody"
    _audit(dispute, actor=actor, action="assigned", reason=f"assigned to {who}")
    if assignee is not None:
        # Both parties learn who decides; the admin learns the case is theirs.
        _notify(
            dispute,
            headline=f"An admin is handling the dispute: {who}",
            body=f"Waiting for {_deadline_text(dispute)}.",
        )
    return dispute


@transaction.atomic
def dispute_resolve(
    *,
    dispute: Dispute,
    actor: AbstractBaseUser,
    adjustment_minor: int,
    note: str,
    over_reason: str = "",
) -> Dispute:
    """An admin adjusts the tenant's balance; above the four-eyes amount it waits for
    a second admin's approval first."""
    _admin_only(actor)
    dispute = _locked(dispute)
    body = _text(note, "the reasons for the decision")
    _check_adjustment(dispute, adjustment_minor, over_reason)
    if over_reason.strip():
        body = f"{body}\n\nMore than the disputed amount because: {over_reason.strip()}"
    if adjustment_minor > four_eyes_above():
        _move(dispute, "propose")
        dispute.approval_minor, dispute.approval_by_id = adjustment_minor, actor.pk
        dispute.approval_reason = body[:300]
        dispute.save()
        _step(
            dispute,
            actor=actor,
            role=Role.ADMIN,
            step="proposed",
            body=body,
            headline="An admin proposed an adjustment; a second admin must approve it",
            adjustment_minor=adjustment_minor,
        )
        return dispute
    _move(dispute, "resolve")
    _post_adjustment(dispute, amount_minor=adjustment_minor, actor=actor)
    _close(dispute, body)
    _step(
        dispute,
        actor=actor,
        role=Role.ADMIN,
        step="resolved",
        body=body,
        headline="Resolved with an adjustment",
        adjustment_minor=adjustment_minor,
    )
    return dispute


def _approval_clear(dispute: Dispute) -> None:
    dispute.approval_minor, dispute.approval_by_id, dispute.approval_reason = None, None, ""
    dispute.approval_payment, dispute.approval_credit = None, False


def _refund_check(dispute: Dispute, payment: Payment, amount_minor: int) -> None:
    """May ``amount_minor`` of ``payment`` go back to the tenant's card for this case?"""
    payment = Payment.objects.get(pk=payment.pk)  # as it is now, not as the caller read it
    if payment.tenancy_id != dispute.tenancy_id:
        raise DisputeError("Choose a payment of this tenancy.")
    if payment.status != Payment.Status.SUCCEEDED:
        raise DisputeError("Only a payment that succeeded can be refunded.")
    available = refundable_minor(payment=payment)
    if amount_minor > available:
        raise DisputeError(
            f"At most {format_money(available, payment.currency)} of that payment can still "
            "be refunded."
        )
    try:
        refund_provider_check(payment=payment)
    except PaymentError as exc:
        raise DisputeError(str(exc)) from exc


def _refund_words(dispute: Dispute, amount_minor: int, credit: bool) -> str:
    money = format_money(amount_minor, dispute.currency)
    if credit:
        return f"a credit of {money} refunded to the card"
    return f"a refund of {money} to the card"


def _post_refund(
    dispute: Dispute,
    *,
    payment: Payment,
    amount_minor: int,
    credit: bool,
    actor: AbstractBaseUser | None,
    reason: str,
) -> None:
    """Record the refund through the payments' refund service and ask the provider
    on commit; its ledger reversal follows the provider's event. With ``credit``
    the amount is first credited to the balance (it was charged wrongly), so the
    refund returns it to the card and the balance ends where it was. The refund is
    recorded first, so a refusal leaves nothing posted and the case unchanged."""
    try:
        refund = refund_create(
            payment=payment,
            amount_minor=amount_minor,
            reason=f"Dispute #{dispute.pk}: {reason}"[:300],
            created_by_id=actor.pk if actor is not None else None,
        )
    except PaymentError as exc:
        raise DisputeError(str(exc)) from exc
    if credit:
        _post_adjustment(dispute, amount_minor=amount_minor, actor=actor)
    dispute.refund = refund
    transaction.on_commit(lambda: refund_send(refund=refund), robust=True)


def _refund_make(
    dispute: Dispute,
    *,
    payment: Payment,
    amount_minor: int,
    credit: bool,
    actor: AbstractBaseUser | None,
    reason: str,
) -> None:
    """A refund decided earlier (proposed, offered), checked against the payment as it
    is now, then recorded and sent on commit."""
    _refund_check(dispute, payment, amount_minor)
    _post_refund(
        dispute,
        payment=payment,
        amount_minor=amount_minor,
        credit=credit,
        actor=actor,
        reason=reason,
    )


@transaction.atomic
def dispute_resolve_refund(
    *,
    dispute: Dispute,
    actor: AbstractBaseUser,
    payment: Payment,
    amount_minor: int,
    note: str,
    credit: bool = False,
    over_reason: str = "",
) -> Dispute:
    """An admin returns money to the tenant's card through the payment provider.

    Without ``credit`` it refunds what the tenant paid (a payment taken twice,
    say): the balance goes down by the refund when the provider confirms it.
    With ``credit`` the amount is credited to the balance first (a charge that
    was wrong) and then refunded. Above the four-eyes amount it is only
    proposed, as an adjustment would be.
    """
    _admin_only(actor)
    dispute = _locked(dispute)
    body = _text(note, "the reasons for the decision")
    _check_adjustment(dispute, amount_minor, over_reason)
    _refund_check(dispute, payment, amount_minor)
    if over_reason.strip():
        body = f"{body}\n\nMore than the disputed amount because: {over_reason.strip()}"
    what = _refund_words(dispute, amount_minor, credit)
    if amount_minor > four_eyes_above():
        _move(dispute, "propose")
        dispute.approval_minor, dispute.approval_by_id = amount_minor, actor.pk
        dispute.approval_reason = body[:300]
        dispute.approval_payment, dispute.approval_credit = payment, credit
        dispute.save()
        _step(
            dispute,
            actor=actor,
            role=Role.ADMIN,
            step="proposed",
            body=body,
            headline=f"An admin proposed {what}; a second admin must approve it",
            refund_minor=amount_minor,
            payment=str(payment.uuid),
            credit=credit,
        )
        return dispute
    _move(dispute, "resolve")
    _post_refund(
        dispute, payment=payment, amount_minor=amount_minor, credit=credit, actor=actor, reason=body
    )
    _close(dispute, body)
    _step(
        dispute,
        actor=actor,
        role=Role.ADMIN,
        step="resolved",
        body=body,
        headline=f"Resolved with {what}",
        adjustment_minor=dispute.adjustment_minor,
        refund_minor=amount_minor,
        payment=str(payment.uuid),
    )
    return dispute


@transaction.atomic
def dispute_approve(*, dispute: Dispute, actor: AbstractBaseUser, note: str = "") -> Dispute:
    """The second admin (never the one who proposed it) approves the adjustment."""
    _admin_only(actor)
    dispute = _locked(dispute)
    if dispute.status == S.AWAITING_APPROVAL and dispute.approval_by_id == actor.pk:
        raise FourEyes("A second admin must approve this adjustment, not the one who proposed it.")
    _move(dispute, "approve")
    amount = int(dispute.approval_minor or 0)
    body = note.strip() or dispute.approval_reason
    payment = dispute.approval_payment
    if payment is not None:
        # Checked again: the payment may have been refunded since it was proposed.
        credit = dispute.approval_credit
        _refund_make(
            dispute,
            payment=payment,
            amount_minor=amount,
            credit=credit,
            actor=actor,
            reason=dispute.approval_reason,
        )
        headline = f"Resolved: {_refund_words(dispute, amount, credit)} was approved"
    else:
        _post_adjustment(dispute, amount_minor=amount, actor=actor)
        headline = "Resolved: the adjustment was approved"
    _close(dispute, dispute.approval_reason)
    _step(
        dispute,
        actor=actor,
        role=Role.ADMIN,
        step="resolved",
        body=body,
        headline=headline,
        adjustment_minor=dispute.adjustment_minor,
        refund_minor=amount if payment is not None else 0,
        proposed_by=dispute.approval_by_id,
    )
    return dispute


@transaction.atomic
def dispute_decline(*, dispute: Dispute, actor: AbstractBaseUser, note: str) -> Dispute:
    _admin_only(actor)
    dispute = _locked(dispute)
    body = _text(note, "why the adjustment is declined")
    _move(dispute, "decline")
    _approval_clear(dispute)
    dispute.save()
    _step(
        dispute,
        actor=actor,
        role=Role.ADMIN,
        step="declined",
        body=body,
        headline="The proposed adjustment was declined; the case is back with the admins",
    )
    return dispute


@transaction.atomic
def dispute_reject(*, dispute: Dispute, actor: AbstractBaseUser, note: str) -> Dispute:
    _admin_only(actor)
    dispute = _locked(dispute)
    body = _text(note, "the reasons for rejecting the dispute")
    _move(dispute, "reject")
    _close(dispute, body)
    _step(dispute, actor=actor, role=Role.ADMIN, step="rejected", body=body, headline="Rejected")
    return dispute


# --- anyone on the case -----------------------------------------------------------------


@transaction.atomic
def dispute_message_add(
    *,
    dispute: Dispute,
    actor: AbstractBaseUser,
    role: str,
    body: str,
    files: Sequence[UploadedFile] = (),
) -> DisputeMessage:
    dispute = _locked(dispute)
    if dispute.is_final:
        raise IllegalTransition(
            f"Dispute #{dispute.pk} is {dispute.get_status_display().lower()}: it takes no "
            "more messages."
        )
    text = _text(body, "a message")
    checked = _files_check(files)
    dispute.updated_at = timezone.now()
    dispute.save(update_fields=["updated_at"])
    return _step(
        dispute,
        actor=actor,
        role=role,
        step="message",
        body=text,
        files=checked,
        headline=f"New message from the {Role(role).label.lower()}",
    )


# --- deadlines ----------------------------------------------------------------------------

NEXT_ACTOR: dict[str, str] = {
    S.OPEN: "the landlord to respond",
    S.LANDLORD_RESPONDED: "the tenant to accept the answer or escalate",
    S.ESCALATED: "the admins to decide",
    S.AWAITING_APPROVAL: "a second admin to approve or decline the adjustment",
}


def _when(dispute: Dispute, at: datetime) -> str:
    return day_clock(at, dispute.unit.property.timezone)


def _deadline_text(dispute: Dispute) -> str:
    """'the landlord to respond by Mon 7 Dec 11:00', in the property's time."""
    who = NEXT_ACTOR.get(dispute.status, "nobody")
    if dispute.due_at is None:
        return who
    return f"{who} by {_when(dispute, dispute.due_at)}"


def _desk_notify(dispute: Dispute, *, why: str) -> None:
    """A case reached the desk: its assigned admin, or every admin, is told."""
    _notify(
        dispute,
        headline="A dispute is waiting on the desk",
        body=f"{why}\n\nWaiting for {_deadline_text(dispute)}.",
        recipients=_admin_emails(dispute),
    )


def reminder_window() -> timedelta:
    return timedelta(hours=int(settings.SUBMETER["DISPUTE_REMINDER_HOURS"]))


def dispute_deadlines_run(*, now: datetime | None = None) -> int:
    """Periodic: remind whoever must act before their deadline, and act when it passed.

    Each case is checked in its own transaction (``dispute_deadline_check``);
    reminders and overdue notices are sent once per deadline, so running this
    often, or on several consumers at once, sends nothing twice.
    """
    now = now or timezone.now()
    due = (
        Dispute.objects.unresolved()
        .filter(due_at__lte=now + reminder_window())
        .exclude(overdue_for=F("due_at"))
        .exclude(due_at__gt=now, reminded_for=F("due_at"))
        .order_by("due_at", "pk")
        .values_list("pk", flat=True)
    )
    return sum(bool(dispute_deadline_check(dispute_id=pk, now=now)) for pk in list(due))


@transaction.atomic
def dispute_deadline_check(*, dispute_id: int, now: datetime) -> str:
    """One case's deadline: a reminder before it, a step or a notice after it.

    * the landlord's window passed: the case goes to the admins (escalated);
    * the tenant's window to answer a response passed: the landlord's answer
      stands and the case closes (an offered adjustment is posted);
    * the admins' target passed: the admins are told it is overdue (once).
    """
    dispute = _locked(Dispute(pk=dispute_id))
    if dispute.is_final or dispute.due_at is None:
        return ""
    if dispute.due_at <= now:
        if dispute.status == S.OPEN:
            return _auto_escalate(dispute, now)
        if dispute.status == S.LANDLORD_RESPONDED:
            return _lapse(dispute, now)
        if dispute.status in (S.ESCALATED, S.AWAITING_APPROVAL):
            return _admins_overdue(dispute)
        return ""
    if dispute.reminded_for == dispute.due_at:
        return ""
    return _remind(dispute)


def _remind(dispute: Dispute) -> str:
    assert dispute.due_at is not None
    dispute.reminded_for = dispute.due_at
    dispute.save(update_fields=["reminded_for"])
    when = _when(dispute, dispute.due_at)
    if dispute.status == S.OPEN:
        recipients = _landlord_emails(dispute)
        headline = f"Reminder: respond by {when}"
        body = (
            "Accept, offer a partial adjustment or contest the dispute. If you have not "
            "responded by then, the dispute goes to the platform's admins to decide."
        )
    elif dispute.status == S.LANDLORD_RESPONDED:
        recipients = [dispute.tenancy.tenant.email]
        headline = f"Reminder: accept the landlord's answer or escalate by {when}"
        if dispute.proposed_payment_id is not None and dispute.proposed_minor:
            refund = _refund_words(dispute, dispute.proposed_minor, dispute.proposed_credit)
            stands = f"their offer of {refund} is made"
        elif dispute.proposed_minor:
            offer = format_money(dispute.proposed_minor, dispute.currency)
            stands = f"their offer of {offer} is credited to your balance"
        else:
            stands = "nothing is credited"
        body = (
            "If you have not answered by then, the landlord's answer stands and the dispute "
            f"closes: {stands}."
        )
    else:
        recipients = _admin_emails(dispute)
        headline = f"Reminder: decide by {when}"
        body = f"Waiting for {_deadline_text(dispute)}."
    _audit(dispute, actor=None, action="reminded", reason=headline, due_at=when)
    _notify(dispute, headline=headline, body=body, recipients=recipients)
    return "reminded"


def _auto_escalate(dispute: Dispute, now: datetime) -> str:
    assert dispute.due_at is not None
    missed = _when(dispute, dispute.due_at)
    return _system_escalate(
        dispute,
        now,
        missed=missed,
        body=f"The landlord did not respond by {missed}, so the platform's admins will decide.",
        headline="Escalated to an admin: the landlord did not respond in time",
    )


def _system_escalate(
    dispute: Dispute, now: datetime, *, missed: str, body: str, headline: str
) -> str:
    """A deadline passed and the case goes to the admins, with the time they have."""
    _move(dispute, "escalate")
    dispute.updated_at = now
    dispute.due_at = now + _days("DISPUTE_ADMIN_DAYS")
    dispute.save()
    _step(
        dispute,
        actor=None,
        role=Role.SYSTEM,
        step="escalated",
        body=body,
        headline=headline,
        missed=missed,
    )
    _desk_notify(dispute, why=body)
    return "escalated"


def _lapse(dispute: Dispute, now: datetime) -> str:
    assert dispute.due_at is not None
    missed = _when(dispute, dispute.due_at)
    what = ""
    if dispute.proposed_payment is not None:
        try:
            what = _offered_refund_make(dispute)
        except RefundOfferLapsed as exc:
            return _lapse_to_desk(dispute, now, missed, str(exc))
    _move(dispute, "lapse")
    dispute.updated_at = now
    if what:
        outcome = f"the tenant did not answer by {missed}: the landlord's offer of {what} stands"
    elif dispute.proposed_minor:
        offer = format_money(dispute.proposed_minor, dispute.currency)
        _post_adjustment(dispute, amount_minor=dispute.proposed_minor, actor=None)
        outcome = f"the tenant did not answer by {missed}: the landlord's offer of {offer} stands"
    else:
        outcome = f"the tenant did not answer by {missed}: the landlord's answer stands"
    _close(dispute, outcome)
    body = outcome[0].upper() + outcome[1:] + "."
    if dispute.refund is not None:
        body += " The refund was asked of the payment provider."
    _step(
        dispute,
        actor=None,
        role=Role.SYSTEM,
        step="lapsed",
        body=body,
        headline="Closed: the landlord's answer stands",
        adjustment_minor=dispute.adjustment_minor,
        refund_minor=dispute.refund.amount_minor if dispute.refund is not None else 0,
    )
    return "lapsed"


def _lapse_to_desk(dispute: Dispute, now: datetime, missed: str, why: str) -> str:
    """The tenant's window passed but the landlord's offered refund can no longer be
    made: rather than close the case on an offer nobody can honour, the admins decide."""
    return _system_escalate(
        dispute,
        now,
        missed=missed,
        body=f"The tenant did not answer by {missed}. {why}",
        headline="Escalated to an admin: the landlord's refund can no longer be made",
    )


def _admins_overdue(dispute: Dispute) -> str:
    assert dispute.due_at is not None
    if dispute.overdue_for == dispute.due_at:
        return ""
    dispute.overdue_for = dispute.due_at
    dispute.save(update_fields=["overdue_for"])
    headline = f"Overdue: the admins' target was {_when(dispute, dispute.due_at)}"
    _audit(dispute, actor=None, action="overdue", reason=headline)
    _notify(
        dispute,
        headline=headline,
        body=f"Waiting for {NEXT_ACTOR[dispute.status]}.",
        recipients=_admin_emails(dispute),
    )
    return "overdue"
