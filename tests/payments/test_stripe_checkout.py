"""Checkout top-ups as direct charges on the landlord's account, entirely offline."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from payments.ledger import tenant_account
from payments.models import ConnectAccount, Payment
from payments.providers import DevelopmentProvider, get_provider
from payments.stripe_gateway import StripeGateway

from .conftest import ACCT_A
from .stripe_fake import recorded

SESSIONS = "/v1/checkout/sessions"


def _tenant(personas) -> Client:
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    return client


def _topup(client: Client, personas, **data):
    return client.post(reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]), data)


def test_stripe_is_chosen_when_keys_are_set(settings, fake_stripe):
    assert isinstance(get_provider(), StripeGateway)
    settings.STRIPE_SECRET_KEY = ""
    assert isinstance(get_provider(), DevelopmentProvider)


def test_topup_is_a_direct_charge_with_fee_and_idempotency_key(personas, connected, fake_stripe):
    fake_stripe.add("post", SESSIONS, recorded("checkout_session"))
    # when
    resp = _topup(_tenant(personas), personas, amount="10")
    # then the tenant goes to Stripe's hosted page
    payment = Payment.objects.get()
    assert resp.status_code == 302
    assert resp["Location"].startswith("https://checkout.stripe.com/")
    [sent] = fake_stripe.sent(SESSIONS)
    assert sent.headers["Stripe-Account"] == ACCT_A
    assert sent.headers["Idempotency-Key"] == f"submeter:checkout:{payment.uuid}"
    assert sent.form["payment_intent_data[application_fee_amount]"] == "10"
    assert sent.form["line_items[0][price_data][unit_amount]"] == "1000"
    assert sent.form["line_items[0][price_data][currency]"] == "gbp"
    assert sent.form["metadata[payment_uuid]"] == str(payment.uuid)
    assert sent.form["payment_intent_data[metadata][payment_uuid]"] == str(payment.uuid)
    assert sent.form["mode"] == "payment"
    assert sent.form["success_url"].endswith(reverse("payments:status", args=[payment.uuid]))
    assert "payment_intent_data[setup_future_usage]" not in sent.form
    assert payment.stripe_account == ACCT_A
    assert payment.application_fee_minor == 10
    assert payment.checkout_session_id == "cs_test_a1B2c3D4e5F6g7H8i9J0"
    assert payment.status == "pending"
    # nothing is credited by starting a checkout
    assert tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor == 0


@pytest.mark.parametrize(
    ("bps", "fixed", "amount", "fee"),
    [
        (100, 0, "10", "10"),
        (250, 20, "10", "45"),
        (0, 30, "12.34", "30"),
        (10_000, 500, "1", "100"),
    ],
)
def test_application_fee_is_configurable(
    personas, connected, fake_stripe, settings, bps, fixed, amount, fee
):
    settings.STRIPE_APPLICATION_FEE_BPS = bps
    settings.STRIPE_APPLICATION_FEE_FIXED_MINOR = fixed
    fake_stripe.add("post", SESSIONS, recorded("checkout_session"))
    _topup(_tenant(personas), personas, amount=amount)
    [sent] = fake_stripe.sent(SESSIONS)
    assert sent.form["payment_intent_data[application_fee_amount]"] == fee


def test_the_same_payment_always_sends_the_same_idempotency_key(personas, connected, fake_stripe):
    fake_stripe.add("post", SESSIONS, recorded("checkout_session"))
    _topup(_tenant(personas), personas, amount="10")
    payment = Payment.objects.get()
    StripeGateway().checkout_start(payment=payment, site_url="http://testserver/")
    first, second = fake_stripe.sent(SESSIONS)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_saving_the_card_asks_for_off_session_use(personas, connected, fake_stripe):
    fake_stripe.add("post", SESSIONS, recorded("checkout_session"))
    _topup(_tenant(personas), personas, amount="10", save_card="on")
    [sent] = fake_stripe.sent(SESSIONS)
    assert sent.form["payment_intent_data[setup_future_usage]"] == "off_session"


@pytest.mark.parametrize("state", ["none", "charges_disabled"])
def test_a_landlord_who_cannot_take_payments_is_said_plainly(personas, fake_stripe, state):
    if state == "charges_disabled":
        ConnectAccount.objects.create(landlord=personas.a.landlord, stripe_account_id=ACCT_A)
    client = _tenant(personas)
    page = client.get(reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk]))
    assert page.status_code == 200
    assert 'data-testid="payee-not-ready"' in page.content.decode()
    resp = _topup(client, personas, amount="10")
    assert resp.status_code == 409
    assert "cannot pay online" in resp.content.decode()
    assert Payment.objects.count() == 0
    assert fake_stripe.requests == []


def test_stripe_unreachable_cancels_the_payment_and_charges_nothing(
    personas, connected, fake_stripe
):
    fake_stripe.add("post", SESSIONS, recorded("error_api"), status=500)
    resp = _topup(_tenant(personas), personas, amount="10")
    assert resp.status_code == 502
    assert "Nothing was charged" in resp.content.decode()
    assert Payment.objects.get().status == "canceled"


def test_stripe_pages_show_no_development_label(personas, connected, fake_stripe):
    page = _tenant(personas).get(reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk]))
    assert "Development payment provider" not in page.content.decode()


def test_development_provider_is_labelled_on_the_pages_it_touches(personas):
    client = _tenant(personas)
    home = client.get(reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk]))
    assert 'data-testid="dev-provider"' in home.content.decode()
    _topup(client, personas, amount="10")
    payment = Payment.objects.get()
    for url in (
        reverse("payments:dev_checkout", args=[payment.uuid]),
        reverse("payments:status", args=[payment.uuid]),
        reverse("payments:automatic", args=[personas.a.prepaid_tenancy.pk]),
    ):
        assert "Development payment provider" in client.get(url).content.decode(), url


def test_a_tampered_return_from_checkout_credits_nothing(personas, connected, fake_stripe):
    fake_stripe.add("post", SESSIONS, recorded("checkout_session"))
    client = _tenant(personas)
    _topup(client, personas, amount="10")
    payment = Payment.objects.get()
    url = reverse("payments:status", args=[payment.uuid])
    for query in (
        "?session_id=cs_test_a1B2c3D4e5F6g7H8i9J0",
        "?status=paid&amount=1000",
        "?cancelled=1",
    ):
        resp = client.get(url + query)
        assert resp.status_code == 200
    assert "left the checkout" in resp.content.decode()
    payment.refresh_from_db()
    assert payment.status == "pending"
    assert tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor == 0


def test_another_tenants_payment_page_is_a_404(personas, connected, fake_stripe):
    fake_stripe.add("post", SESSIONS, recorded("checkout_session"))
    _topup(_tenant(personas), personas, amount="10")
    payment = Payment.objects.get()
    other = Client()
    other.force_login(personas.b.prepaid_tenant)
    assert other.get(reverse("payments:status", args=[payment.uuid])).status_code == 404
    assert other.post(reverse("payments:resume", args=[payment.uuid])).status_code == 404
    resp = other.post(
        reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]), {"amount": "10"}
    )
    assert resp.status_code == 404


def test_tenant_sees_their_payments_with_links_to_receipts(
    personas, django_capture_on_commit_callbacks
):
    client = _tenant(personas)
    with django_capture_on_commit_callbacks(execute=True):
        _topup(client, personas, amount="10")
        payment = Payment.objects.get()
        client.post(reverse("payments:dev_checkout", args=[payment.uuid]), {"outcome": "succeeded"})
    home = client.get(reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk])).content.decode()
    assert reverse("payments:status", args=[payment.uuid]) in home
    receipt = client.get(reverse("payments:status", args=[payment.uuid])).content.decode()
    assert 'data-testid="receipt"' in receipt and "Top-up" in receipt
