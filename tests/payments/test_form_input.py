"""Amounts a person may type into the payment forms: anything odd is a form error, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from payments.models import Payment, PaymentSettings, Refund
from payments.providers import DevelopmentProvider, get_provider
from payments.services import payment_create

ODD_AMOUNTS = ["1e30", "-1e30", "1E+999999", "1e-30", "NaN", "Infinity", "12.345", "ten"]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _paid(personas, capture) -> Payment:
    provider = get_provider()
    assert isinstance(provider, DevelopmentProvider)
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy,
        amount_minor=1000,
        provider=provider.name,
        created_by_id=None,
    )
    with capture(execute=True):
        provider.complete(payment=payment, outcome="succeeded")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


@pytest.mark.parametrize("amount", ODD_AMOUNTS)
def test_top_up_amount_is_a_form_error(personas, amount):
    url = reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk])
    resp = _client(personas.a.prepaid_tenant).post(url, {"amount": amount})
    assert resp.status_code == 400
    assert 'id="amount-error"' in resp.content.decode()
    assert not Payment.objects.exists()


@pytest.mark.parametrize("amount", ODD_AMOUNTS)
def test_refund_amount_is_a_form_error(personas, amount, django_capture_on_commit_callbacks):
    payment = _paid(personas, django_capture_on_commit_callbacks)
    url = reverse("payments:refund", args=[payment.uuid])
    resp = _client(personas.a.staff).post(url, {"amount": amount, "reason": "misread"})
    assert resp.status_code == 400
    assert "Enter an amount" in resp.content.decode() or "two decimal" in resp.content.decode()
    assert not Refund.objects.exists()


@pytest.mark.parametrize("field", ["threshold", "amount", "monthly_cap"])
@pytest.mark.parametrize("amount", ["1e30", "NaN", "-1e30"])
def test_automatic_payment_amounts_are_form_errors(personas, field, amount):
    data = {"threshold": "2", "amount": "10", "monthly_cap": "50", field: amount}
    url = reverse("payments:automatic", args=[personas.a.prepaid_tenancy.pk])
    resp = _client(personas.a.prepaid_tenant).post(url, data)
    assert resp.status_code == 400
    assert not PaymentSettings.objects.filter(auto_topup_threshold_minor__gt=100_000).exists()


def test_a_nul_byte_in_a_refund_reason_is_a_form_error(
    personas, django_capture_on_commit_callbacks
):
    payment = _paid(personas, django_capture_on_commit_callbacks)
    url = reverse("payments:refund", args=[payment.uuid])
    resp = _client(personas.a.staff).post(url, {"amount": "1", "reason": "mis\x00read"})
    assert resp.status_code == 400
    assert "Null characters are not allowed" in resp.content.decode()
    assert not Refund.objects.exists()
