"""Pricing consumption, posting it, bills, emergency credit and crediting payments."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, Sum
from django.tasks import task
from django.utils import timezone

from config.live import unit_changed_notify
from landlord.audit import audit_record
from landlord.models import Tenancy
from supply.decision import supply_evaluate

from .allocation import bills_allocate, invoice_outstanding_minor
from .emergency import debt_recover
from .ledger import (
    Leg,
    accounts_lock,
    deposit_account,
    landlord_account,
    ledger_post,
    tenant_account,
)
from .models import (
    Account,
    ConnectAccount,
    Deposit,
    Dispute,
    Invoice,
    LedgerTransaction,
    Payment,
    PaymentEvent,
    Refund,
    SavedPaymentMethod,
)
from .providers import get_provider

logger = logging.getLogger(__name__)


class PaymentError(Exception):
    """A payment request a person made that cannot be accepted; the message is for them."""


def topup_limits() -> tuple[int, int]:
    cfg = settings.SUBMETER
    return int(cfg["TOPUP_MIN_MINOR"]), int(cfg["TOPUP_MAX_MINOR"])


def invoice_amount_due(*, invoice: Invoice) -> int:
    """What is still owed on a bill: what the payments applied to it leave
    outstanding (``payments.allocation``), and never more than the tenant's debt."""
    owed = max(-tenant_account(tenancy=invoice.tenancy).balance_minor, 0)
    return min(owed, invoice_outstanding_minor(invoice=invoice))


def deposit_pending_refunds_minor(*, tenancy_id: int) -> int:
    """Refunds of the tenancy's deposit payments asked for but not posted yet."""
    total = (
        Refund.objects.filter(
            payment__tenancy_id=tenancy_id,
            payment__purpose=Payment.Purpose.DEPOSIT,
            ledger_transaction__isnull=True,
        )
        .exclude(status__in=[Refund.Status.FAILED, Refund.Status.CANCELED])
        .aggregate(s=Sum("amount_minor"))["s"]
    )
    return int(total or 0)


def deposit_to_pay_minor(*, tenancy: Tenancy) -> int:
    """What the tenant still has to pay of the deposit asked of them: the amount
    asked, less what is held and what is on its way (a bank debit processing).
    Nothing once the move-out settled it."""
    deposit = Deposit.objects.filter(tenancy_id=tenancy.pk).first()
    if deposit is None or deposit.settled_at is not None:
        return 0
    held = deposit_account(tenancy=tenancy).balance_minor
    on_the_way = Payment.objects.filter(
        tenancy_id=tenancy.pk,
        purpose=Payment.Purpose.DEPOSIT,
        status=Payment.Status.PROCESSING,
    ).aggregate(s=Sum("amount_minor"))["s"]
    return max(deposit.amount_minor - held - int(on_the_way or 0), 0)


@transaction.atomic
def payment_create(
    *,
    tenancy: Tenancy,
    amount_minor: int,
    provider: str,
    created_by_id: int | None,
    purpose: str = Payment.Purpose.TOPUP,
    reference: str = "",
    invoice: Invoice | None = None,
    off_session: bool = False,
    save_method: bool = False,
) -> Payment:
    """A payment to be made; ``invoice``: towards that bill of the tenancy.

    After a tenancy ends only its bills can be paid, and a bill no more than is
    still owed on it.
    """
    if purpose == Payment.Purpose.DEPOSIT:
        # A deposit is paid as asked, whatever the top-up limits.
        if not tenancy.is_current():
            raise PaymentError("This tenancy has ended: its deposit can no longer be paid.")
        due = deposit_to_pay_minor(tenancy=tenancy)
        if due <= 0:
            raise PaymentError("No deposit is due.")
        if amount_minor != due:
            raise PaymentError(f"The deposit to pay is {due / 100:.2f}.")
        invoice = None
        reference = "deposit"
    else:
        low, high = topup_limits()
        if amount_minor < low or amount_minor > high:
            raise PaymentError(f"Choose an amount between {low / 100:.2f} and {high / 100:.2f}.")
    if invoice is not None:
        reference = Payment.bill_reference(invoice)
    if not tenancy.is_current() and purpose != Payment.Purpose.DEPOSIT:
        if not reference.startswith(Payment.BILL_REFERENCE):
            raise PaymentError("This tenancy has ended: only its bills can be paid.")
        # A reference alone comes from autopay, which charges what is owed.
        due = invoice_amount_due(invoice=invoice) if invoice is not None else amount_minor
        if amount_minor > due:
            raise PaymentError(f"This tenancy has ended: at most {due / 100:.2f} is owed.")
    return Payment.objects.create(
        landlord_id=tenancy.landlord_id,
        tenancy=tenancy,
        amount_minor=amount_minor,
        currency=tenancy.unit.property.currency,
        provider=provider,
        created_by_id=created_by_id,
        purpose=purpose,
        reference=reference[:100],
        off_session=off_session,
        save_method=save_method,
    )


@transaction.atomic
def payment_abandon(*, payment: Payment, why: str) -> None:
    """A payment whose checkout could not even be created: cancelled, nothing was charged."""
    locked = Payment.objects.select_for_update().get(pk=payment.pk)
    if locked.status == Payment.Status.PENDING and not locked.checkout_session_id:
        locked.status = Payment.Status.CANCELED
        locked.updated_at = timezone.now()
        locked.save(update_fields=["status", "updated_at"])
    logger.warning("payment %s abandoned: %s", payment.uuid, why)


def refunded_minor(*, payment: Payment) -> int:
    """What is refunded or on its way back (failed and cancelled refunds do not count)."""
    total = (
        Refund.objects.filter(payment=payment)
        .exclude(status__in=[Refund.Status.FAILED, Refund.Status.CANCELED])
        .aggregate(s=Sum("amount_minor"))["s"]
    )
    return int(total or 0)


def refundable_minor(*, payment: Payment) -> int:
    """What may still be refunded of a payment."""
    return payment.amount_minor - refunded_minor(payment=payment)


@transaction.atomic
def refund_create(
    *, payment: Payment, amount_minor: int, reason: str, created_by_id: int | None
) -> Refund:
    """Record a refund request; the provider is asked after commit, the ledger follows its events."""
    locked = Payment.objects.select_for_update().get(pk=payment.pk)
    reason = reason.strip()
    if not reason:
        raise PaymentError("Give a reason for the refund.")
    if locked.status != Payment.Status.SUCCEEDED:
        raise PaymentError("Only a payment that succeeded can be refunded.")
    available = refundable_minor(payment=locked)
    if locked.purpose == Payment.Purpose.DEPOSIT:
        # Only what is still held can go back: the rest paid the tenant's debt.
        tenancy = Tenancy.objects.select_related("unit__property").get(pk=locked.tenancy_id)
        held = deposit_account(tenancy=tenancy).balance_minor
        pending = deposit_pending_refunds_minor(tenancy_id=tenancy.pk)
        available = min(available, max(held - pending, 0))
    if amount_minor <= 0 or amount_minor > available:
        raise PaymentError(f"Refund between 0.01 and {available / 100:.2f}.")
    refund = Refund.objects.create(
        landlord_id=locked.landlord_id,
        payment=locked,
        amount_minor=amount_minor,
        reason=reason[:300],
        created_by_id=created_by_id,
    )
    audit_record(
        landlord_id=locked.landlord_id,
        actor_id=created_by_id,
        action="payment.refund_requested",
        tenancy=locked.tenancy,
        reason=reason[:300],
        data={
            "payment": str(locked.uuid),
            "refund": str(refund.uuid),
            "amount_minor": amount_minor,
        },
    )
    return refund


def application_fee_minor(*, amount_minor: int) -> int:
    """The platform's fee on a tenant payment: basis points plus a fixed part, never above it."""
    fee = amount_minor * settings.STRIPE_APPLICATION_FEE_BPS // 10_000
    fee += settings.STRIPE_APPLICATION_FEE_FIXED_MINOR
    return max(0, min(fee, amount_minor))


class EventRejected(Exception):
    """A provider event that cannot be stored (no id): the sender gets a 400."""


def _object_ref(event: dict[str, Any]) -> str:
    """The payment intent an event is about, read defensively from an untrusted body."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return ""
    ref = obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
    if isinstance(ref, dict):
        ref = ref.get("id")
    return str(ref or "")


def payment_event_receive(*, provider: str, event: dict[str, Any]) -> tuple[PaymentEvent, bool]:
    """Store a provider event once and queue its processing on commit.

    Stripe's verified webhooks and the development provider both enter here.
    Returns ``(event, created)``; a duplicate delivery returns the stored one.
    """
    event_id = str(event.get("id") or "")
    if not event_id or len(event_id) > 200:
        raise EventRejected("event has no usable id")
    account = str(event.get("account") or "")[:100]
    object_ref = _object_ref(event)
    try:
        with transaction.atomic():
            stored = PaymentEvent.objects.create(
                provider=provider,
                event_id=event_id,
                type=str(event.get("type", ""))[:100],
                account=account,
                object_ref=object_ref[:200],
                payload=event,
            )
            transaction.on_commit(
                lambda: payment_event_process_task.enqueue(stored.pk), robust=True
            )
    except IntegrityError:
        return PaymentEvent.objects.get(provider=provider, event_id=event_id), False
    return stored, True


def _payment_by_uuid(event: PaymentEvent, payment_uuid: object) -> Payment | None:
    if not payment_uuid:
        return None
    try:
        key = uuid.UUID(str(payment_uuid))
    except ValueError:
        return None
    # The payment must have been made through this provider and, for Stripe,
    # on the very connected account the event came from.
    return (
        Payment.objects.select_for_update()
        .filter(uuid=key, provider=event.provider, stripe_account=event.account)
        .first()
    )


def _payment_by_intent(event: PaymentEvent, intent_id: object) -> Payment | None:
    if not intent_id:
        return None
    return (
        Payment.objects.select_for_update()
        .filter(provider=event.provider, provider_ref=str(intent_id), stripe_account=event.account)
        .first()
    )


WAITING = "waiting: payment not known yet"


def _unmatched(event: PaymentEvent) -> str:
    """An event about a payment intent we have not linked yet: wait for it, unless hopeless."""
    if not event.object_ref:
        return "ignored: no matching payment"
    if (
        event.provider == "stripe"
        and not ConnectAccount.objects.filter(stripe_account_id=event.account).exists()
    ):
        logger.warning("event %s from unknown account %r", event.event_id, event.account)
        return "ignored: unknown account"
    # Retried when a payment gets this intent (payment_transition); otherwise
    # it stays visibly unprocessed in the admin.
    return WAITING


def _waiting_events_process(*, provider: str, account: str, object_ref: str) -> None:
    """Apply the events that wait for this payment intent."""
    waiting = PaymentEvent.objects.filter(
        provider=provider,
        account=account,
        object_ref=object_ref,
        processed_at__isnull=True,
        outcome=WAITING,
    ).order_by("pk")
    for pk in list(waiting.values_list("pk", flat=True)):
        payment_event_process(event_id=pk)


def _intent_linked(event: PaymentEvent) -> bool:
    return Payment.objects.filter(
        provider=event.provider, stripe_account=event.account, provider_ref=event.object_ref
    ).exists()


def _waiting_event_recheck(*, event_id: int) -> None:
    """After a "waiting" outcome commits: apply the event if its payment got linked meanwhile."""
    event = PaymentEvent.objects.filter(pk=event_id).first()
    if event is None or event.processed_at is not None or event.outcome != WAITING:
        return
    if _intent_linked(event):
        payment_event_process(event_id=event_id)


def _amount_matches(payment: Payment, amount: object, currency: object) -> bool:
    try:
        value = int(amount)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
    return value == payment.amount_minor and str(currency or "").upper() == payment.currency


INTENT_STATUS = {
    "payment_intent.succeeded": Payment.Status.SUCCEEDED,
    "payment_intent.processing": Payment.Status.PROCESSING,
    "payment_intent.payment_failed": Payment.Status.FAILED,
    "payment_intent.canceled": Payment.Status.CANCELED,
}
SESSION_STATUS = {
    "checkout.session.async_payment_succeeded": Payment.Status.SUCCEEDED,
    "checkout.session.async_payment_failed": Payment.Status.FAILED,
    "checkout.session.expired": Payment.Status.CANCELED,
}


def _on_payment_intent(event: PaymentEvent, obj: dict[str, Any]) -> str:
    payment = _payment_by_uuid(event, (obj.get("metadata") or {}).get("payment_uuid"))
    if payment is None:
        return "ignored: no matching payment"
    if not _amount_matches(payment, obj.get("amount"), obj.get("currency")):
        logger.warning("payment event %s does not match payment %s", event.pk, payment.pk)
        return "ignored: amount or currency does not match the payment"
    if (
        event.type == "payment_intent.payment_failed"
        and payment.checkout_session_id
        and payment.status == Payment.Status.PENDING
    ):
        # A declined attempt inside an open Checkout Session: the tenant can try
        # another card in the same session. The session's own events end it
        # (expired, or completed and then async_payment_failed for bank debits).
        return "no change: checkout session still open for another attempt"
    outcome = payment_transition(
        payment=payment, status=INTENT_STATUS[event.type], provider_ref=str(obj.get("id") or "")
    )
    if event.type == "payment_intent.succeeded":
        _saved_method_record(event, payment, obj)
    return outcome


def _on_checkout_session(event: PaymentEvent, obj: dict[str, Any]) -> str:
    payment = _payment_by_uuid(event, (obj.get("metadata") or {}).get("payment_uuid"))
    if payment is None:
        return "ignored: no matching payment"
    if payment.checkout_session_id and payment.checkout_session_id != obj.get("id"):
        return "ignored: not this payment's checkout session"
    if not _amount_matches(payment, obj.get("amount_total"), obj.get("currency")):
        logger.warning("payment event %s does not match payment %s", event.pk, payment.pk)
        return "ignored: amount or currency does not match the payment"
    if event.type == "checkout.session.completed":
        paid = obj.get("payment_status")
        if paid == "paid":
            status = Payment.Status.SUCCEEDED
        elif paid == "unpaid":
            # A delayed method (a bank debit): the async_payment_* event settles it.
            status = Payment.Status.PROCESSING
        else:
            return f"ignored: payment status {paid!r}"
    else:
        status = SESSION_STATUS[event.type]
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    return payment_transition(payment=payment, status=status, provider_ref=str(intent or ""))


def _saved_method_record(event: PaymentEvent, payment: Payment, obj: dict[str, Any]) -> None:
    """Keep a card the tenant agreed to save (setup_future_usage) for automatic payments."""
    method = obj.get("payment_method")
    customer = obj.get("customer")
    if not method or not customer or obj.get("setup_future_usage") != "off_session":
        return
    card: dict[str, Any] = {}
    if isinstance(method, dict):
        card = method.get("card") or {}
        method = method.get("id")
    saved, created = SavedPaymentMethod.objects.get_or_create(
        provider=payment.provider,
        provider_ref=str(method),
        defaults={
            "landlord_id": payment.landlord_id,
            "tenancy_id": payment.tenancy_id,
            "customer_ref": str(customer),
            "brand": str(card.get("brand") or "")[:30],
            "last4": str(card.get("last4") or "")[:4],
            "exp_month": card.get("exp_month"),
            "exp_year": card.get("exp_year"),
        },
    )
    if created and not saved.last4:
        # Stripe's event names the card only by id: ask for its brand and last
        # four digits in the background, outside this transaction.
        transaction.on_commit(lambda: saved_method_describe_task.enqueue(saved.pk), robust=True)


def saved_method_describe(*, method_id: int) -> None:
    """Fill in a saved card's brand, last four digits and expiry from the provider."""
    method = SavedPaymentMethod.objects.filter(pk=method_id).first()
    provider = get_provider()
    if method is None or provider is None or provider.name != method.provider:
        return
    card = provider.saved_method_card(method=method)
    if card:
        SavedPaymentMethod.objects.filter(pk=method.pk).update(
            brand=str(card.get("brand") or "")[:30],
            last4=str(card.get("last4") or "")[:4],
            exp_month=card.get("exp_month"),
            exp_year=card.get("exp_year"),
        )


@task()
def saved_method_describe_task(method_id: int) -> None:
    saved_method_describe(method_id=method_id)


def _event_created(event: PaymentEvent) -> datetime | None:
    """When the provider created the event (Stripe's ``created``, Unix seconds), if it says."""
    created = event.payload.get("created") if isinstance(event.payload, dict) else None
    if isinstance(created, bool) or not isinstance(created, int):
        return None
    return datetime.fromtimestamp(created, tz=UTC)


def _on_account_updated(event: PaymentEvent, obj: dict[str, Any]) -> str:
    return connect_account_apply(obj=obj, event_created=_event_created(event))


def _on_account_deauthorized(event: PaymentEvent, obj: dict[str, Any]) -> str:
    """The landlord disconnected the platform from their Stripe account: no more charges."""
    account = (
        ConnectAccount.objects.select_for_update().filter(stripe_account_id=event.account).first()
    )
    if account is None:
        return "ignored: unknown account"
    account.charges_enabled = False
    account.disabled_reason = "platform disconnected by the landlord"
    created = _event_created(event)
    if created is not None and (
        account.status_event_created is None or created > account.status_event_created
    ):
        # account.updated events from before the disconnection are older news.
        account.status_event_created = created
    account.updated_at = timezone.now()
    account.save()
    return "account disconnected"


def connect_account_apply(*, obj: dict[str, Any], event_created: datetime | None = None) -> str:
    """Record what Stripe says about a connected account (charges, payouts, requirements).

    ``event_created`` is the creation time of the event that carried ``obj``;
    an event older than the newest one applied is stale and changes nothing.
    An account read from the API (no event) is applied as it is: it is current.
    """
    account = (
        ConnectAccount.objects.select_for_update().filter(stripe_account_id=obj.get("id")).first()
    )
    if account is None:
        logger.warning("account event for unknown account %s", obj.get("id"))
        return "ignored: unknown account"
    if event_created is not None:
        if account.status_event_created and event_created < account.status_event_created:
            return "ignored: older than the account status already applied"
        account.status_event_created = event_created
    requirements = obj.get("requirements") or {}
    account.charges_enabled = bool(obj.get("charges_enabled"))
    account.payouts_enabled = bool(obj.get("payouts_enabled"))
    account.details_submitted = bool(obj.get("details_submitted"))
    account.requirements_due = sorted(
        set(requirements.get("currently_due") or []) | set(requirements.get("past_due") or [])
    )
    account.disabled_reason = str(requirements.get("disabled_reason") or "")[:200]
    account.updated_at = timezone.now()
    account.save()
    unit_changed_notify(landlord_id=account.landlord_id, unit_id=None)
    return f"account updated: charges {'on' if account.charges_enabled else 'off'}"


def _on_refund(event: PaymentEvent, obj: dict[str, Any]) -> str:
    refund_uuid = (obj.get("metadata") or {}).get("refund_uuid")
    refund: Refund | None = None
    if refund_uuid:
        try:
            key = uuid.UUID(str(refund_uuid))
        except ValueError:
            return "ignored: bad refund reference"
        refund = (
            Refund.objects.select_for_update()
            .filter(
                uuid=key,
                payment__provider=event.provider,
                payment__stripe_account=event.account,
            )
            .first()
        )
    if refund is None and obj.get("id"):
        refund = (
            Refund.objects.select_for_update()
            .filter(
                provider_ref=str(obj["id"]),
                payment__provider=event.provider,
                payment__stripe_account=event.account,
            )
            .first()
        )
    if refund is None:
        # A refund made in the Stripe dashboard: record it against its payment.
        payment = _payment_by_intent(event, obj.get("payment_intent"))
        if payment is None:
            return _unmatched(event)
        # Another event about this refund may have recorded it while this one
        # waited for the payment's lock.
        refund = (
            Refund.objects.select_for_update()
            .filter(payment=payment, provider_ref=str(obj["id"]))
            .first()
        )
        if refund is None:
            try:
                amount = int(obj.get("amount") or 0)
            except (TypeError, ValueError):
                amount = 0
            if amount <= 0 or str(obj.get("currency") or "").upper() != payment.currency:
                return "ignored: refund amount or currency is not usable"
            refund = Refund.objects.create(
                landlord_id=payment.landlord_id,
                payment=payment,
                amount_minor=amount,
                reason=f"Refunded in Stripe ({obj.get('reason') or 'no reason given'})"[:300],
                provider_ref=str(obj["id"]),
            )
    if refund.provider_ref is None and obj.get("id"):
        refund.provider_ref = str(obj["id"])
        refund.save(update_fields=["provider_ref"])
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    previous = data.get("previous_attributes") if isinstance(data, dict) else None
    return refund_transition(
        refund=refund,
        status=str(obj.get("status") or ""),
        succeeded_before=isinstance(previous, dict) and previous.get("status") == "succeeded",
    )


def refund_transition(*, refund: Refund, status: str, succeeded_before: bool = False) -> str:
    """Move a refund forward; post it once it succeeded and its payment did, reverse it if it fails.

    A refund that fails after succeeding (``succeeded_before``, Stripe's
    ``previous_attributes``) is posted and then reversed. So is one whose
    ``succeeded`` event arrives after its ``failed`` one: a failed refund
    never succeeds again, so that event tells of the time before it failed.
    """
    if status not in Refund.Status.values:
        return f"ignored: unknown refund status {status!r}"
    outcome = f"refund {status}"
    if status != refund.status:
        if status in Refund.TRANSITIONS[refund.status]:
            refund.status = status
        elif not (status == Refund.Status.SUCCEEDED and refund.status == Refund.Status.FAILED):
            return f"ignored: refund {refund.status} cannot become {status}"
        else:
            outcome = "refund failed (it had succeeded)"
    if refund.succeeded_at is None and (
        status == Refund.Status.SUCCEEDED or (succeeded_before and status == Refund.Status.FAILED)
    ):
        refund.succeeded_at = timezone.now()
    refund.updated_at = timezone.now()
    refund.save(update_fields=["status", "succeeded_at", "updated_at"])
    payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
    _reversals_settle(payment=payment)
    return outcome


DISPUTE_FINAL = Dispute.FINAL


def _on_dispute(event: PaymentEvent, obj: dict[str, Any]) -> str:
    payment = _payment_by_intent(event, obj.get("payment_intent"))
    if payment is None:
        return _unmatched(event)
    try:
        amount = int(obj.get("amount") or 0)
    except (TypeError, ValueError):
        return "ignored: dispute amount is not usable"
    if amount <= 0 or amount > payment.amount_minor:
        return "ignored: dispute amount is not usable"
    due = (obj.get("evidence_details") or {}).get("due_by")
    dispute, created = Dispute.objects.select_for_update().get_or_create(
        provider_ref=str(obj.get("id")),
        defaults={
            "landlord_id": payment.landlord_id,
            "payment": payment,
            "amount_minor": amount,
            "currency": payment.currency,
            "reason": str(obj.get("reason") or "")[:100],
            "status": str(obj.get("status") or "")[:40],
        },
    )
    if dispute.payment_id != payment.pk:
        return "ignored: dispute belongs to another payment"
    # Withdrawn and not closed: the tenancy's cut-off is frozen (disputes.freeze).
    was_freezing = dispute.funds_withdrawn and dispute.status not in DISPUTE_FINAL
    status = str(obj.get("status") or "")[:40]
    # A final status is never replaced by a late, earlier one.
    if dispute.status not in DISPUTE_FINAL and status:
        dispute.status = status
    if due:
        dispute.evidence_due_by = datetime.fromtimestamp(int(due), tz=UTC)
    if event.type == "charge.dispute.funds_withdrawn" or dispute.status == "lost":
        dispute.funds_withdrawn = True
    if event.type == "charge.dispute.funds_reinstated" or (
        dispute.status == "won" and dispute.funds_withdrawn
    ):
        dispute.funds_reinstated = True
    dispute.updated_at = timezone.now()
    dispute.save()
    if created:
        audit_record(
            landlord_id=payment.landlord_id,
            action="payment.disputed",
            tenancy=payment.tenancy,
            data={"payment": str(payment.uuid), "dispute": dispute.provider_ref, "amount": amount},
        )
    _reversals_settle(payment=payment)
    if was_freezing and dispute.status in DISPUTE_FINAL:
        # Closed: the freeze lifts even when no money moves (a chargeback lost).
        supply_evaluate(unit=payment.tenancy.unit, reason="chargeback closed")
    return f"dispute {dispute.status}"


HANDLERS = {
    **dict.fromkeys(INTENT_STATUS, _on_payment_intent),
    "checkout.session.completed": _on_checkout_session,
    **dict.fromkeys(SESSION_STATUS, _on_checkout_session),
    "account.updated": _on_account_updated,
    "account.application.deauthorized": _on_account_deauthorized,
    **dict.fromkeys(
        ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"], _on_refund
    ),
    **dict.fromkeys(
        [
            "charge.dispute.created",
            "charge.dispute.updated",
            "charge.dispute.closed",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
        ],
        _on_dispute,
    ),
}


@transaction.atomic
def payment_event_process(*, event_id: int) -> str:
    """Apply one stored event. Idempotent, and tolerant of any delivery order."""
    event = PaymentEvent.objects.select_for_update().get(pk=event_id)
    if event.processed_at is not None:
        return event.outcome
    data = event.payload.get("data") if isinstance(event.payload, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    handler = HANDLERS.get(event.type)
    if handler is None:
        outcome = "ignored: event type not handled"
    elif not isinstance(obj, dict):
        outcome = "ignored: event has no object"
    else:
        try:
            with transaction.atomic():
                outcome = handler(event, obj)
        except (AttributeError, KeyError, TypeError, ValueError):
            # A verified but oddly shaped event: record it rather than retry forever.
            logger.exception("payment event %s could not be applied", event.pk)
            outcome = "ignored: malformed event"
    event.processed_at = None if outcome == WAITING else timezone.now()
    event.outcome = outcome[:300]
    event.save(update_fields=["processed_at", "outcome"])
    if outcome == WAITING:
        # The payment may be being linked right now in another transaction,
        # whose sweep of waiting events cannot see this one before it commits:
        # look again once this has committed (see payment_transition).
        transaction.on_commit(lambda: _waiting_event_recheck(event_id=event.pk), robust=True)
    return outcome


@task()
def payment_event_process_task(event_id: int) -> str:
    return payment_event_process(event_id=event_id)


def _reversals_settle(*, payment: Payment) -> None:
    """Post what refunds and chargebacks take back, once each and only after the credit.

    Called whenever a payment, refund or chargeback changes, so the ledger
    ends the same whatever order the provider's events arrived in.
    """
    if payment.status != Payment.Status.SUCCEEDED:
        return
    tenancy = Tenancy.objects.select_related("unit__property", "landlord").get(
        pk=payment.tenancy_id
    )
    tenant = tenant_account(tenancy=tenancy)
    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency=payment.currency
    )

    def take_back(amount_minor: int) -> list[Leg]:
        """Legs taking ``amount_minor`` of the payment back to clearing: from the
        tenant's balance, or for a deposit from what is held (and only what it no
        longer holds, because the move-out applied it, from the balance)."""
        if payment.purpose != Payment.Purpose.DEPOSIT:
            return [Leg(debit=tenant, credit=clearing, amount_minor=amount_minor)]
        held = deposit_account(tenancy=tenancy)
        held = accounts_lock(account_ids=[held.pk])[held.pk]
        from_held = min(max(held.balance_minor, 0), amount_minor)
        legs = [Leg(debit=held, credit=clearing, amount_minor=from_held)] if from_held else []
        if amount_minor > from_held:
            legs.append(Leg(debit=tenant, credit=clearing, amount_minor=amount_minor - from_held))
        return legs

    def give_back(taken: LedgerTransaction, amount_minor: int) -> list[Leg]:
        """Legs returning what ``taken`` took back, to the accounts it came from."""
        if payment.purpose != Payment.Purpose.DEPOSIT:
            return [Leg(debit=clearing, credit=tenant, amount_minor=amount_minor)]
        return [
            Leg(debit=posting.credit, credit=posting.debit, amount_minor=posting.amount_minor)
            for posting in taken.postings.select_related("debit", "credit").order_by("pk")
        ]

    changed = False
    for refund in Refund.objects.filter(
        payment=payment, succeeded_at__isnull=False, ledger_transaction__isnull=True
    ).order_by("pk"):
        txn, created = ledger_post(
            landlord_id=payment.landlord_id,
            kind=LedgerTransaction.Kind.REFUND,
            idempotency_key=f"refund:{refund.uuid}",
            legs=take_back(refund.amount_minor),
            memo=f"Refund: {refund.reason}",
            created_by_id=refund.created_by_id,
        )
        refund.ledger_transaction = txn
        refund.save(update_fields=["ledger_transaction"])
        audit_record(
            landlord_id=payment.landlord_id,
            actor_id=refund.created_by_id,
            action="payment.refunded",
            tenancy=tenancy,
            reason=refund.reason,
            data={
                "payment": str(payment.uuid),
                "refund": str(refund.uuid),
                "amount_minor": refund.amount_minor,
            },
        )
        changed = changed or created
    for refund in (
        Refund.objects.filter(
            payment=payment, status=Refund.Status.FAILED, ledger_transaction__isnull=False
        )
        .select_related("ledger_transaction")
        .order_by("pk")
    ):
        # The refund failed after it was posted: the money stays with the tenant
        # (a deposit's is held again).
        assert refund.ledger_transaction is not None
        _, created = ledger_post(
            landlord_id=payment.landlord_id,
            kind=LedgerTransaction.Kind.REFUND,
            idempotency_key=f"refund:{refund.uuid}:failed",
            legs=give_back(refund.ledger_transaction, refund.amount_minor),
            memo=f"Refund failed: {refund.reason}",
        )
        if created:
            audit_record(
                landlord_id=payment.landlord_id,
                action="payment.refund_failed",
                tenancy=tenancy,
                reason=refund.reason,
                data={
                    "payment": str(payment.uuid),
                    "refund": str(refund.uuid),
                    "amount_minor": refund.amount_minor,
                },
            )
        changed = changed or created
    for dispute in Dispute.objects.filter(payment=payment, funds_withdrawn=True).order_by("pk"):
        key = f"dispute:{dispute.provider_ref}:withdrawn"
        withdrawn = LedgerTransaction.objects.filter(
            landlord_id=payment.landlord_id, idempotency_key=key
        ).first()
        created = False
        if withdrawn is None:
            withdrawn, created = ledger_post(
                landlord_id=payment.landlord_id,
                kind=LedgerTransaction.Kind.CHARGEBACK,
                idempotency_key=key,
                legs=take_back(dispute.amount_minor),
                memo=f"Chargeback {dispute.provider_ref}: funds withdrawn",
            )
        changed = changed or created
        if dispute.funds_reinstated:
            _, created = ledger_post(
                landlord_id=payment.landlord_id,
                kind=LedgerTransaction.Kind.CHARGEBACK,
                idempotency_key=f"dispute:{dispute.provider_ref}:reinstated",
                legs=give_back(withdrawn, dispute.amount_minor),
                memo=f"Chargeback {dispute.provider_ref}: funds reinstated",
            )
            changed = changed or created
    if changed:
        bills_allocate(tenancy=tenancy)
        supply_evaluate(unit=tenancy.unit, reason="refund or chargeback")
        unit_changed_notify(
            landlord_id=tenancy.landlord_id, unit_id=tenancy.unit_id, tenancy_ids=[tenancy.pk]
        )


def payment_transition(*, payment: Payment, status: str, provider_ref: str) -> str:
    """Move a payment forward; credit the tenant exactly once when it succeeds."""
    if status == payment.status:
        return f"no change: already {status}"
    if status not in Payment.TRANSITIONS[payment.status]:
        return f"ignored: {payment.status} cannot become {status}"
    payment.status = status
    payment.updated_at = timezone.now()
    newly_linked = bool(provider_ref and not payment.provider_ref)
    if newly_linked:
        payment.provider_ref = provider_ref
    fields = ["status", "updated_at", "provider_ref"]
    tenancy = Tenancy.objects.select_related("unit", "landlord").get(pk=payment.tenancy_id)
    # A deposit is held in its own account: never credit on the balance, never
    # a payment of a bill, no change to the supply (payments.deposits).
    is_deposit = payment.purpose == Payment.Purpose.DEPOSIT
    if status == Payment.Status.SUCCEEDED:
        credited = (
            deposit_account(tenancy=tenancy) if is_deposit else tenant_account(tenancy=tenancy)
        )
        clearing = landlord_account(
            landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency=payment.currency
        )
        txn, _ = ledger_post(
            landlord_id=payment.landlord_id,
            kind=LedgerTransaction.Kind.PAYMENT,
            idempotency_key=f"payment:{payment.uuid}",
            legs=[Leg(debit=clearing, credit=credited, amount_minor=payment.amount_minor)],
            memo=f"{'Deposit' if is_deposit else 'Payment'} via {payment.provider}",
            created_by_id=payment.created_by_id,
        )
        payment.ledger_transaction = txn
        fields.append("ledger_transaction")
        if not is_deposit:
            # Emergency credit is repaid from top-ups, a capped share of each.
            debt_recover(
                tenancy=tenancy,
                topup_minor=payment.amount_minor,
                idempotency_key=f"recovery:{payment.uuid}",
            )
        audit_record(
            landlord_id=payment.landlord_id,
            actor_id=payment.created_by_id,
            action="deposit.paid" if is_deposit else "payment.credited",
            tenancy=tenancy,
            data={"payment": str(payment.uuid), "amount_minor": payment.amount_minor},
        )
    payment.save(update_fields=fields)
    if status == Payment.Status.SUCCEEDED and not is_deposit:
        bills_allocate(tenancy=tenancy)
        supply_evaluate(unit=tenancy.unit, reason="payment received")
    if newly_linked:
        # Refund or chargeback events that arrived before we knew this intent.
        link = {
            "provider": payment.provider,
            "account": payment.stripe_account,
            "object_ref": payment.provider_ref or "",
        }
        _waiting_events_process(**link)
        # One being processed concurrently cannot see this link before we
        # commit, and this sweep cannot see its "waiting" before it commits.
        # Both sides look again after their commit, so whichever commits second
        # finds the other (payment_event_process re-checks a waiting event).
        transaction.on_commit(lambda: _waiting_events_process(**link), robust=True)
    if status == Payment.Status.SUCCEEDED:
        # Refunds or chargebacks recorded before this payment succeeded.
        _reversals_settle(payment=payment)
    unit_changed_notify(
        landlord_id=tenancy.landlord_id, unit_id=tenancy.unit_id, tenancy_ids=[tenancy.pk]
    )
    return f"payment {status}"


def payment_events_redrive(*, now: datetime | None = None) -> int:
    """Apply stored events that nothing else will: a periodic safety net, idempotent.

    An event is acknowledged once stored; if its task is lost (a consumer
    killed mid-way, a queue flushed) or a post-commit look for its payment is
    lost with its process, it would stay unapplied. This applies events not
    processed within ``PAYMENT_EVENT_REDRIVE_SECONDS`` of arriving, and waiting
    events whose payment is linked by now, then reports (once each, at error
    level) events still unresolved after ``PAYMENT_EVENT_ALERT_MINUTES``.
    Returns how many events it applied.
    """
    now = now or timezone.now()
    cfg = settings.SUBMETER
    grace = timedelta(seconds=int(cfg["PAYMENT_EVENT_REDRIVE_SECONDS"]))
    linked = Payment.objects.filter(
        provider=OuterRef("provider"),
        stripe_account=OuterRef("account"),
        provider_ref=OuterRef("object_ref"),
    )
    due = (
        PaymentEvent.objects.filter(processed_at__isnull=True, received_at__lte=now - grace)
        .filter(~Q(outcome=WAITING) | Exists(linked))
        .order_by("pk")
        .values_list("pk", flat=True)[:REDRIVE_BATCH]
    )
    applied = 0
    for pk in list(due):
        try:
            payment_event_process(event_id=pk)
        except Exception:
            # One event that keeps failing must not hold back the others; it
            # stays unprocessed and is reported once it is old.
            logger.exception("payment event %s could not be applied on re-drive", pk)
            continue
        applied += 1
    _unresolved_events_alert(now=now)
    return applied


REDRIVE_BATCH = 500


@transaction.atomic
def _unresolved_events_alert(*, now: datetime) -> None:
    age = timedelta(minutes=int(settings.SUBMETER["PAYMENT_EVENT_ALERT_MINUTES"]))
    stuck = list(
        PaymentEvent.objects.select_for_update(skip_locked=True)
        .filter(processed_at__isnull=True, alerted_at__isnull=True, received_at__lte=now - age)
        .order_by("pk")[:100]
    )
    if not stuck:
        return
    logger.error(
        "%d payment event(s) unresolved for over %s: %s",
        len(stuck),
        age,
        "; ".join(
            f"{e.provider}:{e.event_id} {e.type} ({e.outcome or 'never applied'})" for e in stuck
        ),
    )
    PaymentEvent.objects.filter(pk__in=[e.pk for e in stuck]).update(alerted_at=now)
