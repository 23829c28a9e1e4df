"""Top-ups through the development provider and the event path Stripe webhooks will share."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from payments.ledger import tenant_account
from payments.models import LedgerTransaction, Payment, PaymentEvent
from payments.services import payment_create, payment_event_process, payment_event_receive


def _event(payment: Payment, type_: str, *, event_id: str | None = None, amount: int | None = None):
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "type": type_,
        "data": {
            "object": {
                "id": f"pi_{payment.uuid.hex}",
                "amount": payment.amount_minor if amount is None else amount,
                "currency": payment.currency.lower(),
                "metadata": {"payment_uuid": str(payment.uuid)},
            }
        },
    }


def _receive_and_process(event, capture):
    with capture(execute=True):
        stored, created = payment_event_receive(provider="dev", event=event)
    return stored, created


@pytest.fixture
def payment(personas):
    return payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="dev", created_by_id=None
    )


def _balance(personas) -> int:
    return tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor


def test_succeeded_event_credits_once(personas, payment, django_capture_on_commit_callbacks):
    event = _event(payment, "payment_intent.succeeded", event_id="evt_1")
    _receive_and_process(event, django_capture_on_commit_callbacks)
    _stored, created = _receive_and_process(event, django_capture_on_commit_callbacks)
    assert created is False
    assert _balance(personas) == 1000
    assert PaymentEvent.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="payment").count() == 1


def test_two_events_for_one_payment_credit_once(
    personas, payment, django_capture_on_commit_callbacks
):
    _receive_and_process(
        _event(payment, "payment_intent.succeeded"), django_capture_on_commit_callbacks
    )
    _receive_and_process(
        _event(payment, "payment_intent.succeeded"), django_capture_on_commit_callbacks
    )
    assert _balance(personas) == 1000


def test_a_late_processing_event_never_moves_a_payment_backwards(
    personas, payment, django_capture_on_commit_callbacks
):
    _receive_and_process(
        _event(payment, "payment_intent.succeeded"), django_capture_on_commit_callbacks
    )
    stored, _ = _receive_and_process(
        _event(payment, "payment_intent.processing"), django_capture_on_commit_callbacks
    )
    payment.refresh_from_db()
    stored.refresh_from_db()
    assert payment.status == "succeeded"
    assert stored.outcome.startswith("ignored")


def test_processing_then_failed_credits_nothing(
    personas, payment, django_capture_on_commit_callbacks
):
    _receive_and_process(
        _event(payment, "payment_intent.processing"), django_capture_on_commit_callbacks
    )
    _receive_and_process(
        _event(payment, "payment_intent.payment_failed"), django_capture_on_commit_callbacks
    )
    payment.refresh_from_db()
    assert payment.status == "failed"
    assert _balance(personas) == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e["data"]["object"].update(amount=999_999),
        lambda e: e["data"]["object"].update(currency="usd"),
        lambda e: e["data"]["object"]["metadata"].update(payment_uuid=str(uuid.uuid4())),
        lambda e: e["data"]["object"]["metadata"].update(payment_uuid="not-a-uuid"),
        lambda e: e["data"]["object"].pop("metadata"),
        lambda e: e.update(type="customer.created"),
    ],
    ids=["amount", "currency", "unknown-payment", "bad-uuid", "no-metadata", "unknown-type"],
)
def test_mismatched_or_unknown_events_are_harmless(
    personas, payment, mutate, django_capture_on_commit_callbacks
):
    event = _event(payment, "payment_intent.succeeded")
    mutate(event)
    stored, _ = _receive_and_process(event, django_capture_on_commit_callbacks)
    stored.refresh_from_db()
    assert stored.processed_at is not None and stored.outcome.startswith("ignored")
    assert _balance(personas) == 0


def test_processing_an_event_twice_is_a_no_op(
    personas, payment, django_capture_on_commit_callbacks
):
    stored, _ = _receive_and_process(
        _event(payment, "payment_intent.succeeded"), django_capture_on_commit_callbacks
    )
    assert payment_event_process(event_id=stored.pk) == "payment succeeded"
    assert _balance(personas) == 1000


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "between"),
        ("0.99", "between"),
        ("500.01", "between"),
        ("1000000000000", "between"),
        ("-5", "between"),
        ("abc", "such as"),
        ("", "required"),
        ("1.234", "two decimal"),
        ("NaN", "two decimal"),
        ("Infinity", "two decimal"),
    ],
)
def test_topup_bad_amounts_get_a_form_error_and_store_nothing(personas, amount, message):
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    resp = client.post(
        reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]), {"amount": amount}
    )
    assert resp.status_code == 400
    assert message in resp.content.decode()
    assert Payment.objects.count() == 0


@pytest.mark.parametrize("amount", ["1", "£12.50", "12.5", "500", " 7 "])
def test_topup_good_amounts_go_to_checkout(personas, amount):
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    resp = client.post(
        reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]), {"amount": amount}
    )
    assert resp.status_code == 302
    payment = Payment.objects.get()
    assert resp["Location"] == reverse("payments:dev_checkout", args=[payment.uuid])


def test_preset_button_amount(personas):
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    resp = client.post(
        reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]),
        {"preset": "10.00", "amount": ""},
    )
    assert resp.status_code == 302
    assert Payment.objects.get().amount_minor == 1000


def test_redirect_alone_never_credits(personas, payment):
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    # Visiting the status page (the "success" redirect) does not credit anything.
    resp = client.get(reverse("payments:status", args=[payment.uuid]))
    assert "Waiting for the payment provider" in resp.content.decode()
    assert _balance(personas) == 0


def test_checkout_of_a_finished_payment_does_nothing(
    personas, payment, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    url = reverse("payments:dev_checkout", args=[payment.uuid])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"outcome": "succeeded"})
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"outcome": "succeeded"})
    assert _balance(personas) == 1000
    assert client.post(url, {"outcome": "bogus"}).status_code == 400


def test_without_a_payment_provider_topups_are_refused_plainly(personas, settings):
    settings.DEVELOPMENT_PAYMENTS = False
    client = Client()
    client.force_login(personas.a.prepaid_tenant)
    resp = client.post(
        reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]), {"amount": "10"}
    )
    assert resp.status_code == 503
    assert "not available" in resp.content.decode()
    assert "Development payment provider" not in resp.content.decode()
    assert Payment.objects.count() == 0


def test_production_settings_refuse_to_start_without_shared_services(monkeypatch):
    import importlib
    import sys

    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("SECRET_KEY", "x" * 60)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    sys.modules.pop("config.settings.production", None)
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        importlib.import_module("config.settings.production")
    sys.modules.pop("config.settings.production", None)
