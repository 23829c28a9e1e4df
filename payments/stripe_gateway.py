"""The Stripe implementation of the payment gateway: the only module that calls Stripe.

Tenant payments are *direct charges* on the landlord's connected account
(every call that touches them passes ``stripe_account``), with the platform's
application fee. Every call that moves money carries a deterministic
idempotency key built from our own objects (a payment's or refund's uuid), so
a retried request can never charge or refund twice.

Stripe's answers only record references (session id, refund id). Money moves
in the ledger only from verified webhooks.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from landlord.models import Landlord

from .models import ConnectAccount, Payment, Refund, SavedPaymentMethod
from .providers import OffSessionResult, PayeeStatus
from .services import PaymentError, application_fee_minor, connect_account_apply

logger = logging.getLogger(__name__)

# Tests install a fake ``stripe.HTTPClient`` here; production leaves it None
# (stripe-python's default client).
HTTP_CLIENT: stripe.HTTPClient | None = None


def stripe_client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, http_client=HTTP_CLIENT, max_network_retries=2
    )


def idempotency_key(kind: str, ref: object) -> str:
    """Deterministic: the same object always yields the same key."""
    return f"submeter:{kind}:{ref}"


def _absolute(site_url: str, path: str) -> str:
    return site_url.rstrip("/") + path


class StripeGateway:
    name = "stripe"
    is_dev = False

    def __init__(self, client: stripe.StripeClient | None = None) -> None:
        self.client = client or stripe_client()

    # --- Connect ---------------------------------------------------------
    def payee_status(self, *, landlord: Landlord) -> PayeeStatus:
        account = ConnectAccount.objects.filter(landlord_id=landlord.pk).first()
        if account is None:
            return PayeeStatus(False, "Your landlord has not set up card payments yet.")
        if not account.charges_enabled:
            return PayeeStatus(False, "Your landlord's payment account is not ready yet.")
        return PayeeStatus(True)

    def _connect_account(self, landlord: Landlord) -> ConnectAccount:
        account = ConnectAccount.objects.filter(landlord_id=landlord.pk).first()
        if account is not None:
            return account
        created = self.client.v1.accounts.create(
            params={
                "type": "standard",
                "business_profile": {"name": landlord.name},
                "metadata": {"landlord_id": str(landlord.pk)},
            },
            options={"idempotency_key": idempotency_key("connect-account", landlord.pk)},
        )
        account, _ = ConnectAccount.objects.get_or_create(
            landlord_id=landlord.pk, defaults={"stripe_account_id": created.id}
        )
        connect_account_apply(obj=created.to_dict())
        return account

    def onboarding_url(self, *, landlord: Landlord, site_url: str) -> str:
        account = self._connect_account(landlord)
        link = self.client.v1.account_links.create(
            params={
                "account": account.stripe_account_id,
                "type": "account_onboarding",
                "refresh_url": _absolute(site_url, reverse("payments:connect_start")),
                "return_url": _absolute(site_url, reverse("payments:connect") + "?returned=1"),
            }
        )
        return str(link.url)

    def payee_refresh(self, *, landlord: Landlord) -> None:
        account = ConnectAccount.objects.filter(landlord_id=landlord.pk).first()
        if account is None:
            return
        fresh = self.client.v1.accounts.retrieve(account.stripe_account_id)
        connect_account_apply(obj=fresh.to_dict())

    # --- Checkout --------------------------------------------------------
    def checkout_start(self, *, payment: Payment, site_url: str) -> str:
        account = ConnectAccount.objects.filter(landlord_id=payment.landlord_id).first()
        if account is None or not account.charges_enabled:
            raise PaymentError("Your landlord cannot take card payments yet.")
        fee = application_fee_minor(amount_minor=payment.amount_minor)
        tenancy = payment.tenancy
        label = {
            Payment.Purpose.TOPUP: "Electricity top-up",
            Payment.Purpose.DEPOSIT: "Deposit",
        }.get(Payment.Purpose(payment.purpose), "Electricity bill")
        metadata = {
            "payment_uuid": str(payment.uuid),
            "tenancy_id": str(tenancy.pk),
            "landlord_id": str(payment.landlord_id),
        }
        if payment.reference:
            metadata["reference"] = payment.reference
        intent_data: dict[str, Any] = {
            "application_fee_amount": fee,
            "metadata": metadata,
            "description": f"{label} · {tenancy.unit.property.name} · {tenancy.unit.name}",
        }
        if payment.save_method:
            # Keep the card on the landlord's account for auto top-up and autopay.
            intent_data["setup_future_usage"] = "off_session"
        email = getattr(tenancy.tenant, "email", "")
        if email:
            intent_data["receipt_email"] = email
        status_url = _absolute(site_url, reverse("payments:status", args=[payment.uuid]))
        params: Any = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": payment.currency.lower(),
                        "unit_amount": payment.amount_minor,
                        "product_data": {"name": label},
                    },
                }
            ],
            "client_reference_id": str(payment.uuid),
            "metadata": metadata,
            "payment_intent_data": intent_data,
            "customer_creation": "always",
            "success_url": status_url,
            "cancel_url": status_url + "?cancelled=1",
        }
        session = self.client.v1.checkout.sessions.create(
            params=params,
            options={
                "stripe_account": account.stripe_account_id,
                "idempotency_key": idempotency_key("checkout", payment.uuid),
            },
        )
        payment.stripe_account = account.stripe_account_id
        payment.application_fee_minor = fee
        payment.checkout_session_id = str(session.id)
        payment.updated_at = timezone.now()
        payment.save(
            update_fields=[
                "stripe_account",
                "application_fee_minor",
                "checkout_session_id",
                "updated_at",
            ]
        )
        return str(session.url)

    # --- Refunds ---------------------------------------------------------
    def refund_start(self, *, refund: Refund) -> None:
        payment = refund.payment
        created = self.client.v1.refunds.create(
            params={
                "payment_intent": str(payment.provider_ref),
                "amount": refund.amount_minor,
                # Direct charges: the platform gives its fee back pro rata.
                "refund_application_fee": True,
                "metadata": {"refund_uuid": str(refund.uuid), "payment_uuid": str(payment.uuid)},
            },
            options={
                "stripe_account": payment.stripe_account,
                "idempotency_key": idempotency_key("refund", refund.uuid),
            },
        )
        Refund.objects.filter(pk=refund.pk, provider_ref__isnull=True).update(
            provider_ref=str(created.id)
        )

    # --- Saved methods ---------------------------------------------------
    def off_session_charge(
        self, *, payment: Payment, method: SavedPaymentMethod
    ) -> OffSessionResult:
        account = ConnectAccount.objects.filter(landlord_id=payment.landlord_id).first()
        if account is None or not account.charges_enabled:
            return OffSessionResult(status="failed", message="The landlord cannot take payments.")
        fee = application_fee_minor(amount_minor=payment.amount_minor)
        Payment.objects.filter(pk=payment.pk).update(
            stripe_account=account.stripe_account_id, application_fee_minor=fee
        )
        metadata = {"payment_uuid": str(payment.uuid), "tenancy_id": str(payment.tenancy_id)}
        if payment.reference:
            metadata["reference"] = payment.reference
        try:
            intent = self.client.v1.payment_intents.create(
                params={
                    "amount": payment.amount_minor,
                    "currency": payment.currency.lower(),
                    "customer": method.customer_ref,
                    "payment_method": method.provider_ref,
                    "off_session": True,
                    "confirm": True,
                    "application_fee_amount": fee,
                    "metadata": metadata,
                },
                options={
                    "stripe_account": account.stripe_account_id,
                    "idempotency_key": idempotency_key("off-session", payment.uuid),
                },
            )
        except stripe.CardError as exc:
            err = exc.error
            intent_obj = getattr(err, "payment_intent", None) if err else None
            ref = str(intent_obj["id"]) if intent_obj else ""
            code = (err.code if err else "") or ""
            if code == "authentication_required":
                return OffSessionResult(
                    status="requires_action",
                    provider_ref=ref,
                    message="Your bank asks you to confirm this payment.",
                )
            return OffSessionResult(
                status="failed", provider_ref=ref, message=str(exc.user_message)
            )
        status = {"succeeded": "succeeded", "processing": "processing"}.get(
            str(intent.status), "requires_action"
        )
        return OffSessionResult(status=status, provider_ref=str(intent.id))

    def saved_method_remove(self, *, method: SavedPaymentMethod) -> None:
        account = ConnectAccount.objects.filter(landlord_id=method.landlord_id).first()
        if account is None:
            return
        self.client.v1.payment_methods.detach(
            method.provider_ref, options={"stripe_account": account.stripe_account_id}
        )

    def saved_method_card(self, *, method: SavedPaymentMethod) -> dict[str, Any]:
        account = ConnectAccount.objects.filter(landlord_id=method.landlord_id).first()
        if account is None:
            return {}
        found = self.client.v1.payment_methods.retrieve(
            method.provider_ref, options={"stripe_account": account.stripe_account_id}
        )
        card = found.to_dict().get("card") or {}
        return {k: card.get(k) for k in ("brand", "last4", "exp_month", "exp_year")}
