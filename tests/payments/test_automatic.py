"""Saved cards, postpaid autopay and prepaid auto top-up (off-session, idempotent, capped)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from payments.automatic import (
    auto_topup_check,
    auto_topups_run,
    autopay_charge,
    payment_settings_update,
)
from payments.ledger import tenant_account
from payments.models import Payment, PaymentSettings, SavedPaymentMethod
from payments.services import payment_create

from .conftest import ACCT_A
from .stripe_fake import deliver, event, intent_obj, recorded

INTENTS = "/v1/payment_intents"


@pytest.fixture
def card(personas, connected) -> SavedPaymentMethod:
    PaymentSettings.objects.create(
        landlord=personas.a.landlord, tenancy=personas.a.postpaid_tenancy, autopay_enabled=True
    )
    return SavedPaymentMethod.objects.create(
        landlord=personas.a.landlord,
        tenancy=personas.a.postpaid_tenancy,
        provider="stripe",
        provider_ref="pm_1QfakeCard4242",
        customer_ref="cus_QfakeTenant",
        brand="visa",
        last4="4242",
    )


def test_autopay_charges_the_saved_card_off_session_once_per_reference(
    personas, card, fake_stripe, django_capture_on_commit_callbacks
):
    fake_stripe.add("post", INTENTS, recorded("payment_intent_succeeded"))
    tenancy = personas.a.postpaid_tenancy
    payment = autopay_charge(tenancy=tenancy, amount_minor=2000, reference="INV-0042")
    assert payment is not None
    [sent] = fake_stripe.sent(INTENTS)
    assert sent.headers["Stripe-Account"] == ACCT_A
    assert sent.headers["Idempotency-Key"] == f"submeter:off-session:{payment.uuid}"
    assert sent.form["off_session"] == "true" and sent.form["confirm"] == "true"
    assert sent.form["customer"] == "cus_QfakeTenant"
    assert sent.form["payment_method"] == "pm_1QfakeCard4242"
    assert sent.form["application_fee_amount"] == "20"
    assert sent.form["metadata[reference]"] == "INV-0042"
    # the API's "succeeded" answer credits nothing: the webhook does
    assert payment.status == "pending" and payment.purpose == "autopay"
    assert tenant_account(tenancy=tenancy).balance_minor == 0
    # issuing the same invoice again charges nothing new
    again = autopay_charge(tenancy=tenancy, amount_minor=2000, reference="INV-0042")
    assert again == payment
    assert len(fake_stripe.sent(INTENTS)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        deliver(Client(), event("payment_intent.succeeded", intent_obj(payment), account=ACCT_A))
    assert tenant_account(tenancy=tenancy).balance_minor == 2000


def test_authentication_required_gives_the_tenant_a_link_to_pay_on_session(
    personas, card, fake_stripe
):
    fake_stripe.add("post", INTENTS, recorded("error_authentication_required"), status=402)
    fake_stripe.add("post", "/v1/checkout/sessions", recorded("checkout_session"))
    tenancy = personas.a.postpaid_tenancy
    payment = autopay_charge(tenancy=tenancy, amount_minor=2000, reference="INV-0043")
    assert payment is not None
    assert payment.status == "pending"
    assert payment.action_url == reverse("payments:resume", args=[payment.uuid])
    tenant = Client()
    tenant.force_login(personas.a.postpaid_tenant)
    home = tenant.get(reverse("tenant:home", args=[tenancy.pk])).content.decode()
    assert "Your bank asks you to confirm" in home
    resp = tenant.post(reverse("payments:resume", args=[payment.uuid]))
    assert resp.status_code == 302
    assert resp["Location"].startswith("https://checkout.stripe.com/")
    [session] = fake_stripe.sent("/v1/checkout/sessions")
    assert session.headers["Idempotency-Key"] == f"submeter:checkout:{payment.uuid}"
    assert session.form["metadata[payment_uuid]"] == str(payment.uuid)


def test_a_declined_card_fails_the_payment_and_charges_nothing(personas, card, fake_stripe):
    declined = recorded("error_authentication_required")
    declined["error"]["code"] = "card_declined"
    fake_stripe.add("post", INTENTS, declined, status=402)
    payment = autopay_charge(
        tenancy=personas.a.postpaid_tenancy, amount_minor=2000, reference="INV-0044"
    )
    assert payment is not None and payment.status == "canceled"
    assert tenant_account(tenancy=personas.a.postpaid_tenancy).balance_minor == 0


def test_no_autopay_unless_the_tenant_turned_it_on(personas, card, fake_stripe):
    PaymentSettings.objects.update(autopay_enabled=False)
    assert (
        autopay_charge(tenancy=personas.a.postpaid_tenancy, amount_minor=2000, reference="X")
        is None
    )
    assert fake_stripe.requests == []


def test_no_saved_card_means_no_autopay(personas, connected, fake_stripe):
    assert (
        autopay_charge(tenancy=personas.a.postpaid_tenancy, amount_minor=2000, reference="X")
        is None
    )
    assert fake_stripe.requests == []


def _prepaid_card(personas, provider="stripe"):
    return SavedPaymentMethod.objects.create(
        landlord=personas.a.landlord,
        tenancy=personas.a.prepaid_tenancy,
        provider=provider,
        provider_ref=f"pm_{provider}_pre",
        customer_ref="cus_QfakeTenant",
        last4="4242",
    )


def _enable(personas, **kw):
    args = dict(
        tenancy=personas.a.prepaid_tenancy,
        auto_topup_enabled=True,
        threshold_minor=500,
        amount_minor=2000,
        monthly_cap_minor=5000,
        autopay_enabled=False,
    )
    args.update(kw)
    return payment_settings_update(**args)


def test_auto_top_up_below_threshold_at_most_once_per_period_within_the_cap(
    personas, connected, fake_stripe
):
    fake_stripe.add("post", INTENTS, recorded("payment_intent_succeeded"))
    _prepaid_card(personas)
    _enable(personas)
    tenancy = personas.a.prepaid_tenancy
    first = auto_topup_check(tenancy=tenancy)
    assert first is not None and first.purpose == "auto_topup" and first.amount_minor == 2000
    # within the period: nothing more, however often it is checked
    assert auto_topup_check(tenancy=tenancy) is None
    assert auto_topups_run() == 0
    assert len(fake_stripe.sent(INTENTS)) == 1
    # a period later: another one (2 x 20.00 <= 50.00)
    PaymentSettings.objects.update(last_auto_topup_at=timezone.now() - timedelta(hours=25))
    assert auto_topups_run() == 1
    # and then the monthly cap stops a third (60.00 > 50.00)
    PaymentSettings.objects.update(last_auto_topup_at=timezone.now() - timedelta(hours=25))
    assert auto_topup_check(tenancy=tenancy) is None
    assert len(fake_stripe.sent(INTENTS)) == 2


def test_no_auto_top_up_above_threshold_or_when_off(
    personas, connected, fake_stripe, django_capture_on_commit_callbacks
):
    _prepaid_card(personas)
    _enable(personas, auto_topup_enabled=False)
    assert auto_topup_check(tenancy=personas.a.prepaid_tenancy) is None
    _enable(personas, threshold_minor=0)
    assert auto_topup_check(tenancy=personas.a.prepaid_tenancy) is None
    assert fake_stripe.requests == []


def test_checkout_with_save_card_keeps_the_card_and_tenant_can_remove_it(
    personas, django_capture_on_commit_callbacks
):
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    tenancy = personas.a.prepaid_tenancy
    with django_capture_on_commit_callbacks(execute=True):
        tenant.post(
            reverse("payments:topup", args=[tenancy.pk]), {"amount": "10", "save_card": "on"}
        )
        payment = Payment.objects.get()
        tenant.post(reverse("payments:dev_checkout", args=[payment.uuid]), {"outcome": "succeeded"})
    method = SavedPaymentMethod.objects.get()
    assert (method.brand, method.last4) == ("visa", "4242")
    page = tenant.get(reverse("payments:automatic", args=[tenancy.pk])).content.decode()
    assert "visa ending 4242" in page
    # turn auto top-up on, then remove the card: it switches off with it
    resp = tenant.post(
        reverse("payments:automatic", args=[tenancy.pk]),
        {"auto_topup_enabled": "on", "threshold": "5", "amount": "20", "monthly_cap": "100"},
    )
    assert resp.status_code == 302
    assert PaymentSettings.objects.get().auto_topup_enabled
    other = Client()
    other.force_login(personas.b.prepaid_tenant)
    remove = reverse("payments:method_remove", args=[tenancy.pk, method.pk])
    assert other.post(remove).status_code == 404
    assert tenant.post(remove).status_code == 302
    assert not SavedPaymentMethod.objects.exists()
    assert not PaymentSettings.objects.get().auto_topup_enabled


def test_removing_a_stripe_card_detaches_it_on_the_connected_account(personas, card, fake_stripe):
    fake_stripe.add(
        "post",
        f"/v1/payment_methods/{card.provider_ref}/detach",
        recorded("payment_method_detached"),
    )
    tenant = Client()
    tenant.force_login(personas.a.postpaid_tenant)
    tenant.post(reverse("payments:method_remove", args=[personas.a.postpaid_tenancy.pk, card.pk]))
    [sent] = fake_stripe.sent(f"/v1/payment_methods/{card.provider_ref}/detach")
    assert sent.headers["Stripe-Account"] == ACCT_A
    assert not SavedPaymentMethod.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"auto_topup_enabled": "on", "threshold": "5", "amount": "0.5", "monthly_cap": "100"},
            "between",
        ),
        (
            {"auto_topup_enabled": "on", "threshold": "5", "amount": "20", "monthly_cap": "10"},
            "at least one",
        ),
        (
            {"auto_topup_enabled": "on", "threshold": "x", "amount": "20", "monthly_cap": "100"},
            "such as",
        ),
        (
            {"auto_topup_enabled": "on", "threshold": "5", "amount": "20", "monthly_cap": "100"},
            "Save a card first",
        ),
    ],
)
def test_bad_automatic_settings_are_refused(personas, data, message):
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    resp = tenant.post(reverse("payments:automatic", args=[personas.a.prepaid_tenancy.pk]), data)
    assert resp.status_code == 400
    assert message in resp.content.decode()
    assert not PaymentSettings.objects.filter(auto_topup_enabled=True).exists()


def test_development_autopay_goes_through_the_event_path(
    personas, django_capture_on_commit_callbacks
):
    tenancy = personas.a.postpaid_tenancy
    PaymentSettings.objects.create(
        landlord=personas.a.landlord, tenancy=tenancy, autopay_enabled=True
    )
    method = SavedPaymentMethod.objects.create(
        landlord=personas.a.landlord, tenancy=tenancy, provider="dev", provider_ref="pm_dev_1"
    )
    with django_capture_on_commit_callbacks(execute=True):
        paid = autopay_charge(tenancy=tenancy, amount_minor=1500, reference="INV-1")
    assert paid is not None
    paid.refresh_from_db()
    assert paid.status == "succeeded"
    assert tenant_account(tenancy=tenancy).balance_minor == 1500
    # a development card ending 3184 asks for authentication, like Stripe's test card
    SavedPaymentMethod.objects.filter(pk=method.pk).update(last4="3184")
    with django_capture_on_commit_callbacks(execute=True):
        asked = autopay_charge(tenancy=tenancy, amount_minor=1500, reference="INV-2")
    assert asked is not None and asked.status == "pending" and asked.action_url
    tenant = Client()
    tenant.force_login(personas.a.postpaid_tenant)
    resp = tenant.post(reverse("payments:resume", args=[asked.uuid]))
    assert resp["Location"] == reverse("payments:dev_checkout", args=[asked.uuid])


def test_a_card_saved_at_stripe_checkout_is_kept_and_described(
    personas, connected, fake_stripe, django_capture_on_commit_callbacks
):
    fake_stripe.add(
        "get", "/v1/payment_methods/pm_1QfakeCard4242", recorded("payment_method_detached")
    )
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="stripe", created_by_id=None
    )
    Payment.objects.filter(pk=payment.pk).update(stripe_account=ACCT_A)
    obj = intent_obj(
        payment,
        customer="cus_QfakeTenant",
        payment_method="pm_1QfakeCard4242",
        setup_future_usage="off_session",
    )
    with django_capture_on_commit_callbacks(execute=True):
        deliver(Client(), event("payment_intent.succeeded", obj, account=ACCT_A))
    method = SavedPaymentMethod.objects.get()
    assert (method.customer_ref, method.tenancy_id) == ("cus_QfakeTenant", payment.tenancy_id)
    assert (method.brand, method.last4, method.exp_year) == ("visa", "4242", 2030)
    [sent] = fake_stripe.sent("/v1/payment_methods/pm_1QfakeCard4242")
    assert sent.headers["Stripe-Account"] == ACCT_A


def test_a_card_not_meant_to_be_saved_is_not_kept(
    personas, connected, fake_stripe, django_capture_on_commit_callbacks
):
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="stripe", created_by_id=None
    )
    Payment.objects.filter(pk=payment.pk).update(stripe_account=ACCT_A)
    obj = intent_obj(payment, customer="cus_QfakeTenant", payment_method="pm_1QfakeCard4242")
    with django_capture_on_commit_callbacks(execute=True):
        deliver(Client(), event("payment_intent.succeeded", obj, account=ACCT_A))
    assert not SavedPaymentMethod.objects.exists()
