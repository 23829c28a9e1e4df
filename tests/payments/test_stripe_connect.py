"""Landlord onboarding on Stripe Connect: hosted onboarding, status tracked and shown."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from payments.models import ConnectAccount

from .conftest import ACCT_A
from .stripe_fake import deliver, event, recorded


def _landlord(personas) -> Client:
    client = Client()
    client.force_login(personas.a.staff)
    return client


def test_onboarding_creates_the_account_once_and_sends_the_landlord_to_stripe(
    personas, fake_stripe
):
    fake_stripe.add("post", "/v1/accounts", recorded("account"))
    fake_stripe.add("post", "/v1/account_links", recorded("account_link"))
    client = _landlord(personas)
    # when
    resp = client.post(reverse("payments:connect_start"))
    # then
    assert resp.status_code == 302
    assert resp["Location"].startswith("https://connect.stripe.com/setup/")
    [created] = fake_stripe.sent("/v1/accounts")
    assert (
        created.headers["Idempotency-Key"] == f"submeter:connect-account:{personas.a.landlord.pk}"
    )
    assert created.form["type"] == "standard"
    assert created.form["metadata[landlord_id]"] == str(personas.a.landlord.pk)
    [link] = fake_stripe.sent("/v1/account_links")
    assert link.form["account"] == ACCT_A
    assert link.form["type"] == "account_onboarding"
    assert link.form["return_url"].endswith(reverse("payments:connect") + "?returned=1")
    assert link.form["refresh_url"].endswith(reverse("payments:connect_start"))
    account = ConnectAccount.objects.get(landlord=personas.a.landlord)
    assert account.stripe_account_id == ACCT_A
    assert not account.charges_enabled
    assert "external_account" in account.requirements_due
    # Stripe's refresh_url (a GET) makes a new link for the same account
    assert client.get(reverse("payments:connect_start")).status_code == 302
    assert len(fake_stripe.sent("/v1/accounts")) == 1
    assert len(fake_stripe.sent("/v1/account_links")) == 2


def test_returning_from_onboarding_reads_the_status_from_stripe(personas, fake_stripe):
    ConnectAccount.objects.create(landlord=personas.a.landlord, stripe_account_id=ACCT_A)
    fake_stripe.add("get", f"/v1/accounts/{ACCT_A}", recorded("account_enabled"))
    page = _landlord(personas).get(reverse("payments:connect") + "?returned=1")
    body = page.content.decode()
    assert page.status_code == 200
    assert "Card payments</dt><dd>enabled" in body
    assert "Payouts</dt><dd>enabled" in body
    account = ConnectAccount.objects.get()
    assert account.charges_enabled and account.payouts_enabled and account.details_submitted


def test_status_page_shows_what_stripe_still_needs(personas, fake_stripe):
    ConnectAccount.objects.create(
        landlord=personas.a.landlord,
        stripe_account_id=ACCT_A,
        requirements_due=["external_account"],
    )
    body = _landlord(personas).get(reverse("payments:connect")).content.decode()
    assert "Stripe still needs: external_account" in body
    assert "Continue setting up with Stripe" in body
    assert "Your tenants cannot pay online until card payments are enabled" in body


def test_account_updated_webhook_enables_tenant_payments(
    personas, fake_stripe, django_capture_on_commit_callbacks
):
    ConnectAccount.objects.create(landlord=personas.a.landlord, stripe_account_id=ACCT_A)
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    home = reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk])
    assert 'data-testid="payee-not-ready"' in tenant.get(home).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        resp = deliver(
            Client(), event("account.updated", recorded("account_enabled"), account=ACCT_A)
        )
    assert resp.status_code == 200
    assert ConnectAccount.objects.get().charges_enabled
    assert 'data-testid="payee-not-ready"' not in tenant.get(home).content.decode()


def test_stripe_unreachable_during_onboarding_is_a_clear_error(personas, fake_stripe):
    fake_stripe.add("post", "/v1/accounts", recorded("error_api"), status=500)
    resp = _landlord(personas).post(reverse("payments:connect_start"))
    assert resp.status_code == 502
    assert "could not be reached" in resp.content.decode()
    assert not ConnectAccount.objects.exists()


@pytest.mark.parametrize("who", ["anonymous", "tenant", "admin_without_membership"])
def test_only_landlord_staff_reach_the_payment_account(personas, fake_stripe, who):
    client = Client()
    if who == "tenant":
        client.force_login(personas.a.prepaid_tenant)
    elif who == "admin_without_membership":
        client.force_login(personas.admin)
    for name in ("payments:connect", "payments:connect_start", "payments:landlord_payments"):
        resp = client.get(reverse(name))
        assert resp.status_code in (302, 404), name
        if who != "anonymous":
            assert resp.status_code == 404
    assert fake_stripe.requests == []


def test_each_landlord_sees_only_their_own_account(personas, connected):
    client = Client()
    client.force_login(personas.b.staff)
    body = client.get(reverse("payments:connect")).content.decode()
    assert "acct_1QfakeLandlordB" in body and ACCT_A not in body


def test_development_provider_needs_no_onboarding(personas):
    client = _landlord(personas)
    body = client.get(reverse("payments:connect")).content.decode()
    assert "Development payment provider" in body
    assert client.post(reverse("payments:connect_start")).status_code == 302


def test_a_landlord_disconnecting_the_platform_stops_tenant_payments(
    personas, connected, django_capture_on_commit_callbacks
):
    obj = {"id": "ca_platform", "object": "application", "name": "Submeter"}
    with django_capture_on_commit_callbacks(execute=True):
        resp = deliver(Client(), event("account.application.deauthorized", obj, account=ACCT_A))
    assert resp.status_code == 200
    assert not ConnectAccount.objects.get(stripe_account_id=ACCT_A).charges_enabled
    assert ConnectAccount.objects.get(landlord=personas.b.landlord).charges_enabled
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    page = tenant.get(reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk]))
    assert 'data-testid="payee-not-ready"' in page.content.decode()


@pytest.mark.parametrize("order", ["in order", "newest first"])
def test_account_events_apply_by_when_stripe_created_them_not_arrival(
    personas, fake_stripe, django_capture_on_commit_callbacks, order
):
    # given onboarding that went "not ready" (older) then "ready" (newer)
    ConnectAccount.objects.create(landlord=personas.a.landlord, stripe_account_id=ACCT_A)
    older = event("account.updated", recorded("account"), account=ACCT_A)
    newer = event("account.updated", recorded("account_enabled"), account=ACCT_A)
    older["created"] = 1_780_000_000
    newer["created"] = 1_780_000_060
    deliveries = [older, newer] if order == "in order" else [newer, older]
    # when both arrive, in either order
    for evt in deliveries:
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(Client(), evt).status_code == 200
    # then the newer status stands and the landlord's tenants can pay
    account = ConnectAccount.objects.get()
    assert account.charges_enabled and not account.requirements_due
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    page = tenant.get(reverse("tenant:home", args=[personas.a.prepaid_tenancy.pk]))
    assert 'data-testid="payee-not-ready"' not in page.content.decode()


def test_an_account_update_from_before_a_disconnection_does_not_undo_it(
    personas, connected, django_capture_on_commit_callbacks
):
    deauthorized = event(
        "account.application.deauthorized",
        {"id": "ca_platform", "object": "application"},
        account=ACCT_A,
    )
    stale = event("account.updated", recorded("account_enabled"), account=ACCT_A)
    deauthorized["created"] = 1_780_000_060
    stale["created"] = 1_780_000_000
    for evt in (deauthorized, stale):
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(Client(), evt).status_code == 200
    assert not ConnectAccount.objects.get(stripe_account_id=ACCT_A).charges_enabled
