"""Pricing consumption, posting it, bills, emergency credit and crediting payments."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.live import broadcast_on_commit, landlord_group, tenancy_group
from landlord.models import AuditEvent, Tenancy

from .ledger import Leg, landlord_account, ledger_post, tenant_account
from .models import Account, LedgerTransaction, Payment, PaymentEvent

logger = logging.getLogger(__name__)


def usage_post(
    *, tenancy: Tenancy, amount_minor: int, energy_wh: int, idempotency_key: str, memo: str
) -> LedgerTransaction | None:
    """Debit the tenant and credit the landlord's revenue for energy used."""
    if amount_minor <= 0:
        return None
    tenant = tenant_account(tenancy=tenancy)
    revenue = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.REVENUE, currency=tenant.currency
    )
    txn, _ = ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.USAGE,
        idempotency_key=idempotency_key,
        legs=[Leg(debit=tenant, credit=revenue, amount_minor=amount_minor, energy_wh=energy_wh)],
        memo=memo,
    )
    return txn


class PaymentError(Exception):
    """A payment request a person made that cannot be accepted; the message is for them."""


def topup_limits() -> tuple[int, int]:
    cfg = settings.SUBMETER
    return int(cfg["TOPUP_MIN_MINOR"]), int(cfg["TOPUP_MAX_MINOR"])


@transaction.atomic
def payment_create(
    *, tenancy: Tenancy, amount_minor: int, provider: str, created_by_id: int | None
) -> Payment:
    low, high = topup_limits()
    if amount_minor < low or amount_minor > high:
        raise PaymentError(f"Choose an amount between {low / 100:.2f} and {high / 100:.2f}.")
    return Payment.objects.create(
        landlord_id=tenancy.landlord_id,
        tenancy=tenancy,
        amount_minor=amount_minor,
        currency=tenancy.unit.property.currency,
        provider=provider,
        created_by_id=created_by_id,
    )


def payment_event_receive(*, provider: str, event: dict[str, Any]) -> tuple[PaymentEvent, bool]:
    """Store a provider event once and queue its processing on commit.

    Stripe's verified webhooks and the development provider both enter here.
    """
    from .tasks import payment_event_process_task

    event_id = str(event["id"])
    try:
        with transaction.atomic():
            stored = PaymentEvent.objects.create(
                provider=provider, event_id=event_id, type=str(event.get("type", "")), payload=event
            )
            transaction.on_commit(
                lambda: payment_event_process_task.enqueue(stored.pk), robust=True
            )
    except IntegrityError:
        return PaymentEvent.objects.get(provider=provider, event_id=event_id), False
    return stored, True


def _payment_for_event(provider: str, obj: dict[str, Any]) -> Payment | None:
    metadata = obj.get("metadata") or {}
    payment_uuid = metadata.get("payment_uuid")
    if not payment_uuid:
        return None
    try:
        return Payment.objects.select_for_update().get(
            uuid=uuid.UUID(str(payment_uuid)), provider=provider
        )
    except (Payment.DoesNotExist, ValueError):
        return None


@transaction.atomic
def payment_event_process(*, event_id: int) -> str:
    """Apply one stored event. Idempotent, and tolerant of any delivery order."""
    event = PaymentEvent.objects.select_for_update().get(pk=event_id)
    if event.processed_at is not None:
        return event.outcome
    obj = (event.payload.get("data") or {}).get("object") or {}
    status_by_type = {
        "payment_intent.succeeded": Payment.Status.SUCCEEDED,
        "payment_intent.processing": Payment.Status.PROCESSING,
        "payment_intent.payment_failed": Payment.Status.FAILED,
        "payment_intent.canceled": Payment.Status.CANCELED,
    }
    new_status = status_by_type.get(event.type)
    if new_status is None:
        outcome = "ignored: event type not handled"
    else:
        payment = _payment_for_event(event.provider, obj)
        if payment is None:
            outcome = "ignored: no matching payment"
        elif (
            int(obj.get("amount", -1)) != payment.amount_minor
            or str(obj.get("currency", "")).upper() != payment.currency.upper()
        ):
            outcome = "ignored: amount or currency does not match the payment"
            logger.warning("payment event %s does not match payment %s", event.pk, payment.pk)
        else:
            outcome = payment_transition(
                payment=payment, status=new_status, provider_ref=str(obj.get("id") or "")
            )
    event.processed_at = timezone.now()
    event.outcome = outcome
    event.save(update_fields=["processed_at", "outcome"])
    return outcome


def payment_transition(*, payment: Payment, status: str, provider_ref: str) -> str:
    """Move a payment forward; credit the tenant exactly once when it succeeds."""
    if status == payment.status:
        return f"no change: already {status}"
    if status not in Payment.TRANSITIONS[payment.status]:
        return f"ignored: {payment.status} cannot become {status}"
    payment.status = status
    payment.updated_at = timezone.now()
    if provider_ref and not payment.provider_ref:
        payment.provider_ref = provider_ref
    fields = ["status", "updated_at", "provider_ref"]
    tenancy = Tenancy.objects.select_related("unit", "landlord").get(pk=payment.tenancy_id)
    if status == Payment.Status.SUCCEEDED:
        tenant = tenant_account(tenancy=tenancy)
        clearing = landlord_account(
            landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency=payment.currency
        )
        txn, _ = ledger_post(
            landlord_id=payment.landlord_id,
            kind=LedgerTransaction.Kind.PAYMENT,
            idempotency_key=f"payment:{payment.uuid}",
            legs=[Leg(debit=clearing, credit=tenant, amount_minor=payment.amount_minor)],
            memo=f"Payment via {payment.provider}",
            created_by_id=payment.created_by_id,
        )
        payment.ledger_transaction = txn
        fields.append("ledger_transaction")
        # Emergency credit is repaid from top-ups, a capped share of each.
        from .billing import debt_recover

        debt_recover(
            tenancy=tenancy,
            topup_minor=payment.amount_minor,
            idempotency_key=f"recovery:{payment.uuid}",
        )
        AuditEvent.objects.create(
            landlord_id=payment.landlord_id,
            actor_id=payment.created_by_id,
            action="payment.credited",
            subject=f"tenancy {tenancy.pk}",
            data={"payment": str(payment.uuid), "amount_minor": payment.amount_minor},
        )
    payment.save(update_fields=fields)
    if status == Payment.Status.SUCCEEDED:
        from meters.services import supply_evaluate

        supply_evaluate(unit=tenancy.unit, reason="payment received")
    msg = {"type": "unit.changed", "unit_id": tenancy.unit_id}
    broadcast_on_commit(tenancy_group(tenancy.pk), msg)
    broadcast_on_commit(landlord_group(tenancy.landlord_id), msg)
    return f"payment {status}"
