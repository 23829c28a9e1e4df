"""Payment providers behind one interface.

Only the development provider exists so far. It never moves real money: its
checkout page is labelled as such, and completing it produces the same kind
of event a Stripe webhook delivers, entering ``payment_event_receive`` like a
verified webhook would.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from django.conf import settings
from django.urls import reverse

from .models import Payment
from .services import payment_event_receive


class PaymentProvider(Protocol):
    name: str
    is_dev: bool

    def checkout_url(self, *, payment: Payment) -> str: ...


class DevelopmentProvider:
    name = "dev"
    is_dev = True

    def checkout_url(self, *, payment: Payment) -> str:
        return reverse("payments:dev_checkout", kwargs={"payment_uuid": payment.uuid})

    def complete(self, *, payment: Payment, outcome: str) -> None:
        """Emit the provider event a real checkout would, through the webhook path."""
        event_type = {
            "succeeded": "payment_intent.succeeded",
            "failed": "payment_intent.payment_failed",
            "canceled": "payment_intent.canceled",
        }[outcome]
        event: dict[str, Any] = {
            "id": f"evt_dev_{uuid.uuid4().hex}",
            "type": event_type,
            "data": {
                "object": {
                    "id": f"pi_dev_{payment.uuid.hex}",
                    "amount": payment.amount_minor,
                    "currency": payment.currency.lower(),
                    "metadata": {"payment_uuid": str(payment.uuid)},
                }
            },
        }
        payment_event_receive(provider=self.name, event=event)


_dev = DevelopmentProvider()


def get_provider() -> DevelopmentProvider | None:
    """The configured provider, or None when no way to pay is set up."""
    if settings.DEVELOPMENT_PAYMENTS:
        return _dev
    return None
