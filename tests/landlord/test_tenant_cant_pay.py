"""'I can't top up right now': emergency credit if eligible, the landlord's
contact, and a payment-plan request the landlord sees."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from landlord.models import AuditEvent, PaymentPlanRequest, Unit

pytestmark = pytest.mark.django_db


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_offers_emergency_credit_when_eligible_and_the_landlords_contact(personas):
    a = personas.a
    a.staff.email = "owner@example.com"
    a.staff.save(update_fields=["email"])
    url = reverse("tenant:cant_pay", args=[a.prepaid_tenancy.pk])
    body = _client(a.prepaid_tenant).get(url).content.decode()
    assert 'data-testid="emergency-none"' in body  # the unit offers none
    assert "owner@example.com" in body
    Unit.objects.filter(pk=a.prepaid.pk).update(emergency_credit_minor=300)
    body = _client(a.prepaid_tenant).get(url).content.decode()
    assert 'data-testid="emergency-offer"' in body and "Take £3.00 emergency credit" in body
    home = _client(a.prepaid_tenant).get(reverse("tenant:home", args=[a.prepaid_tenancy.pk]))
    assert url in home.content.decode()


def test_plan_request_reaches_the_landlord_once(personas):
    a = personas.a
    client = _client(a.prepaid_tenant)
    post = reverse("tenant:plan_request", args=[a.prepaid_tenancy.pk])
    bad = client.post(post, {"weekly": "-3", "message": "I lost my job"})
    assert bad.status_code == 400
    assert "above zero" in bad.content.decode() and "I lost my job" in bad.content.decode()
    ok = client.post(post, {"weekly": "10", "message": "I lost my job"})
    assert ok.status_code == 302
    request = PaymentPlanRequest.objects.get()
    assert (request.weekly_minor, request.status, request.tenancy_id) == (
        1000,
        "open",
        a.prepaid_tenancy.pk,
    )
    row = AuditEvent.objects.get(action="payment_plan.requested")
    assert row.actor_id == a.prepaid_tenant.pk and row.tenancy_id == a.prepaid_tenancy.pk
    page = client.get(reverse("tenant:cant_pay", args=[a.prepaid_tenancy.pk])).content.decode()
    assert 'data-testid="plan-open"' in page and "£10.00 a week" in page
    again = client.post(post, {"message": "again"})
    assert again.status_code == 400 and "already asked" in again.content.decode()
    assert PaymentPlanRequest.objects.count() == 1
    # The landlord sees it; the other landlord does not.
    flagged = _client(a.staff).get(reverse("landlord:flagged")).content.decode()
    assert 'data-testid="plan-requests"' in flagged and "I lost my job" in flagged
    other = _client(personas.b.staff).get(reverse("landlord:flagged")).content.decode()
    assert "I lost my job" not in other
