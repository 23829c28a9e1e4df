"""Payment providers behind one gateway interface.

Two implementations: :class:`payments.stripe_gateway.StripeGateway` (used
whenever ``STRIPE_SECRET_KEY`` is set) and :class:`DevelopmentProvider` (used
otherwise, when ``DEVELOPMENT_PAYMENTS`` allows it). Views and services only
talk to :class:`PaymentGateway`; neither credits anything itself. Money moves
in our books only when a provider event (a verified Stripe webhook, or the
development provider's equivalent) goes through ``payment_event_receive`` and
``payment_event_process``.

The development provider never moves real money: every page it touches says
so, and completing its checkout produces the same kind of event a Stripe
webhook delivers.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.urls import reverse

from landlord.models import Landlord

from .models import Payment, Refund, SavedPaymentMethod


@dataclass(frozen=True)
class PayeeStatus:
    """Whether a landlord can take payments through this provider, and why not."""

    ready: bool
    message: str = ""


@dataclass(frozen=True)
class OffSessionResult:
    """What happened to an off-session charge with a saved method."""

    status: str  # "succeeded", "processing", "requires_action" or "failed"
    provider_ref: str = ""
    message: str = ""


class PaymentGateway(Protocol):
    name: str
    is_dev: bool

    def payee_status(self, *, landlord: Landlord) -> PayeeStatus: ...

    def checkout_start(self, *, payment: Payment, site_url: str) -> str:
        """Create the hosted checkout for a pending payment; returns the URL to send the tenant to."""
        ...

    def refund_start(self, *, refund: Refund) -> None:
        """Ask the provider to refund; the ledger follows the provider's refund events."""
        ...

    def onboarding_url(self, *, landlord: Landlord, site_url: str) -> str:
        """Where a landlord goes to set up taking payments."""
        ...

    def payee_refresh(self, *, landlord: Landlord) -> None:
        """Re-read the landlord's account status from the provider."""
        ...

    def off_session_charge(
        self, *, payment: Payment, method: SavedPaymentMethod
    ) -> OffSessionResult: ...

    def saved_method_remove(self, *, method: SavedPaymentMethod) -> None: ...

    def saved_method_card(self, *, method: SavedPaymentMethod) -> dict[str, Any]:
        """The card's brand, last4, exp_month and exp_year as the provider knows them."""
        ...


def dev_event(*, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_dev_{uuid.uuid4().hex}", "type": type_, "data": {"object": obj}}


class DevelopmentProvider:
    name = "dev"
    is_dev = True

    def _deliver(self, event: dict[str, Any]) -> None:
        """Hand an event to the webhook path, as Stripe's call to our endpoint would.

        Imported at call time on purpose: this provider stands in for an outside
        system calling in, so the gateway layer stays below the services that
        use it (services -> providers, never the reverse at import time).
        """
        from .services import payment_event_receive  # late-bound: see the docstring

        payment_event_receive(provider=self.name, event=event)

    def payee_status(self, *, landlord: Landlord) -> PayeeStatus:
        return PayeeStatus(ready=True)

    def checkout_start(self, *, payment: Payment, site_url: str) -> str:
        return reverse("payments:dev_checkout", kwargs={"payment_uuid": payment.uuid})

    def onboarding_url(self, *, landlord: Landlord, site_url: str) -> str:
        return reverse("payments:connect")

    def payee_refresh(self, *, landlord: Landlord) -> None:
        return None

    def _intent(self, payment: Payment) -> dict[str, Any]:
        intent: dict[str, Any] = {
            "id": f"pi_dev_{payment.uuid.hex}",
            "object": "payment_intent",
            "amount": payment.amount_minor,
            "currency": payment.currency.lower(),
            "metadata": {"payment_uuid": str(payment.uuid)},
        }
        if payment.save_method:
            intent["setup_future_usage"] = "off_session"
            intent["customer"] = f"cus_dev_{payment.tenancy_id}"
            intent["payment_method"] = {
                "id": f"pm_dev_{payment.uuid.hex[:12]}",
                "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030},
            }
        return intent

    def complete(self, *, payment: Payment, outcome: str) -> None:
        """Emit the provider event a real checkout would, through the webhook path."""
        event_type = {
            "succeeded": "payment_intent.succeeded",
            "failed": "payment_intent.payment_failed",
            "canceled": "payment_intent.canceled",
        }[outcome]
        self._deliver(dev_event(type_=event_type, obj=self._intent(payment)))

    def refund_start(self, *, refund: Refund) -> None:
        obj = {
            "id": f"re_dev_{refund.uuid.hex}",
            "object": "refund",
            "amount": refund.amount_minor,
            "currency": refund.payment.currency.lower(),
            "status": "succeeded",
            "payment_intent": refund.payment.provider_ref,
            "metadata": {"refund_uuid": str(refund.uuid)},
        }
        self._deliver(dev_event(type_="refund.created", obj=obj))

    def off_session_charge(
        self, *, payment: Payment, method: SavedPaymentMethod
    ) -> OffSessionResult:
        # Development cards ending 3184 ask for authentication, as Stripe's test card does.
        if method.last4 == "3184":
            return OffSessionResult(
                status="requires_action",
                provider_ref=f"pi_dev_{payment.uuid.hex}",
                message="Your bank asks you to confirm this payment.",
            )
        self._deliver(dev_event(type_="payment_intent.succeeded", obj=self._intent(payment)))
        return OffSessionResult(status="succeeded", provider_ref=f"pi_dev_{payment.uuid.hex}")

    def saved_method_remove(self, *, method: SavedPaymentMethod) -> None:
        return None

    def saved_method_card(self, *, method: SavedPaymentMethod) -> dict[str, Any]:
        return {"brand": method.brand, "last4": method.last4}


_dev = DevelopmentProvider()


def get_provider() -> PaymentGateway | None:
    """The configured provider: Stripe when keys are set, else the development one, else None."""
    if settings.STRIPE_SECRET_KEY:
        # Start-up cost: the stripe library is loaded only where keys are set.
        from .stripe_gateway import StripeGateway  # start-up cost, see above

        return StripeGateway()
    if settings.DEVELOPMENT_PAYMENTS:
        return _dev
    return None
