"""Asking for a refund: record it (audit-logged), then ask the provider outside the transaction.

The ledger reversal follows the provider's refund event, like every money
movement. If the provider cannot be reached the refund stays pending with no
provider reference; asking again sends the same idempotency key.
"""

from __future__ import annotations

import logging

import stripe

from .models import Payment, Refund
from .providers import get_provider
from .services import PaymentError, refund_create

logger = logging.getLogger(__name__)


def refund_request(
    *, payment: Payment, amount_minor: int, reason: str, created_by_id: int | None
) -> Refund:
    provider = get_provider()
    if provider is None or provider.name != payment.provider:
        raise PaymentError("This payment's provider is not available.")
    refund = refund_create(
        payment=payment, amount_minor=amount_minor, reason=reason, created_by_id=created_by_id
    )
    try:
        provider.refund_start(refund=refund)
    except stripe.StripeError:
        logger.exception("refund %s could not be sent to the provider", refund.uuid)
    return refund
