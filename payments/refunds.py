"""Asking for a refund: record it (audit-logged), then ask the provider outside the transaction.

The ledger reversal follows the provider's refund event, like every money
movement. If the provider cannot be reached the refund stays pending with no
provider reference; asking again sends the same idempotency key.

A caller that records the refund inside its own transaction (a dispute
resolved with a refund, ``disputes.services``) checks the provider first
with ``refund_provider_check`` and has ``refund_send`` run on commit.
"""

from __future__ import annotations

import logging

import stripe

from .models import Payment, Refund
from .providers import get_provider
from .services import PaymentError, refund_create

logger = logging.getLogger(__name__)


def refund_provider_check(*, payment: Payment) -> None:
    """Refuse before anything is recorded when the payment's provider is not available."""
    provider = get_provider()
    if provider is None or provider.name != payment.provider:
        raise PaymentError("This payment's provider is not available.")


def refund_send(*, refund: Refund) -> None:
    """Ask the provider for a recorded refund; call it outside any transaction."""
    provider = get_provider()
    if provider is None or provider.name != refund.payment.provider:
        logger.error("refund %s: its payment's provider is not available", refund.uuid)
        return
    try:
        provider.refund_start(refund=refund)
    except stripe.StripeError:
        logger.exception("refund %s could not be sent to the provider", refund.uuid)


def refund_request(
    *, payment: Payment, amount_minor: int, reason: str, created_by_id: int | None
) -> Refund:
    refund_provider_check(payment=payment)
    refund = refund_create(
        payment=payment, amount_minor=amount_minor, reason=reason, created_by_id=created_by_id
    )
    refund_send(refund=refund)
    return refund
