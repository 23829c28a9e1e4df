"""After a tenancy ends its tenant sees their own history and bills and can pay what they
owe on a bill; nothing of the unit as it is now, and no money moves by any other way."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from config.live import tenancy_group
from landlord.models import Tenancy
from payments import billing, emergency
from payments.automatic import auto_topups_run, payment_settings_update
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import (
    Account,
    Invoice,
    LedgerTransaction,
    Payment,
    PaymentSettings,
    SavedPaymentMethod,
)
from payments.providers import get_provider
from payments.services import PaymentError, payment_create
from tests.wsutil import browser_communicator


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _owe(tenancy: Tenancy, amount_minor: int) -> Invoice:
    """Usage the tenant did not pay for, and the bill that says so."""
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.USAGE,
        idempotency_key=f"usage-{tenancy.pk}",
        legs=[
            Leg(
                debit=tenant_account(tenancy=tenancy),
                credit=landlord_account(
                    landlord=tenancy.landlord, kind=Account.Kind.REVENUE, currency="GBP"
                ),
                amount_minor=amount_minor,
                energy_wh=1000,
            )
        ],
    )
    return Invoice.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 11, 1),
        currency="GBP",
        total_minor=amount_minor,
    )


def _saved_card(tenancy: Tenancy) -> SavedPaymentMethod:
    provider = get_provider()
    assert provider is not None
    return SavedPaymentMethod.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        provider=provider.name,
        provider_ref=f"pm_dev_{tenancy.pk}",
        last4="4242",
    )


def test_the_former_tenants_page_is_their_history_not_the_unit_now(everyone):
    former = everyone.former_tenancy
    _owe(former, 1234)
    body = _client(former.tenant).get(reverse("tenant:home", args=[former.pk])).content.decode()
    assert 'data-testid="ended"' in body
    assert "£12.34" in body  # what they owe
    assert "ws-connect" not in body  # no live unit
    assert 'id="tenancy-panel"' not in body  # no current balance, supply or usage
    assert reverse("payments:topup", args=[former.pk]) not in body
    assert reverse("payments:automatic", args=[former.pk]) not in body


def test_a_former_tenant_cannot_reach_the_current_tenancy(everyone):
    client = _client(everyone.former_tenancy.tenant)
    current = everyone.a.prepaid_tenancy
    assert client.get(reverse("tenant:home", args=[current.pk])).status_code == 404
    assert client.get(reverse("api-tenancy", args=[current.pk])).status_code == 404


def test_a_former_tenant_cannot_top_up(everyone):
    former = everyone.former_tenancy
    resp = _client(former.tenant).post(
        reverse("payments:topup", args=[former.pk]), {"amount": "10"}
    )
    assert resp.status_code == 404
    assert not Payment.objects.exists()
    with pytest.raises(PaymentError, match="ended"):
        payment_create(tenancy=former, amount_minor=1000, provider="dev", created_by_id=None)


def test_the_service_holds_a_former_tenants_bill_payment_to_what_is_owed(everyone):
    former = everyone.former_tenancy
    invoice = _owe(former, 1234)
    with pytest.raises(PaymentError, match=r"at most 12\.34"):
        payment_create(
            tenancy=former, amount_minor=1235, provider="dev", created_by_id=None, invoice=invoice
        )
    payment = payment_create(
        tenancy=former, amount_minor=1234, provider="dev", created_by_id=None, invoice=invoice
    )
    assert payment.reference == f"invoice:{invoice.number}" and payment.is_bill_payment()


def test_a_former_tenant_pays_what_they_owe_on_a_bill_and_no_more(everyone):
    former = everyone.former_tenancy
    invoice = _owe(former, 1234)
    url = reverse("payments:topup", args=[former.pk])
    client = _client(former.tenant)
    resp = client.post(url, {"amount": "12.35", "invoice": str(invoice.pk)})
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "at most 12.34" in body
    assert 'id="tenancy-panel"' not in body  # the refusal shows their history, not the unit
    assert not Payment.objects.exists()
    resp = client.post(url, {"amount": "12.34", "invoice": str(invoice.pk)})
    assert resp.status_code == 302
    payment = Payment.objects.get()
    assert payment.purpose == Payment.Purpose.BILL
    assert payment.reference == f"invoice:{invoice.number}"
    # and they can go on to pay it at the provider's checkout
    checkout = client.get(reverse("payments:dev_checkout", args=[payment.uuid]))
    assert checkout.status_code == 200


def test_a_former_tenant_cannot_take_emergency_credit(everyone):
    former = everyone.former_tenancy
    former.unit.emergency_credit_minor = 300
    former.unit.save(update_fields=["emergency_credit_minor"])
    resp = _client(former.tenant).post(reverse("payments:emergency_credit", args=[former.pk]))
    assert resp.status_code == 404
    with pytest.raises(billing.BillingError, match="ended"):
        emergency.emergency_credit_take(tenancy=former, actor_id=None)
    assert not LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.EMERGENCY).exists()
    # the tenant living there now still can
    emergency.emergency_credit_take(tenancy=everyone.a.prepaid_tenancy, actor_id=None)


def test_auto_top_up_skips_an_ended_tenancy(everyone, django_capture_on_commit_callbacks):
    # given auto top-up on, a saved card and no credit, for the former and the current tenant
    for tenancy in (everyone.former_tenancy, everyone.a.prepaid_tenancy):
        _saved_card(tenancy)
        PaymentSettings.objects.create(
            landlord=tenancy.landlord,
            tenancy=tenancy,
            auto_topup_enabled=True,
            auto_topup_threshold_minor=500,
            auto_topup_amount_minor=2000,
        )
    # when the periodic check runs
    with django_capture_on_commit_callbacks(execute=True):
        charged = auto_topups_run()
    # then only the running tenancy is charged
    assert charged == 1
    assert list(Payment.objects.values_list("tenancy_id", flat=True)) == [
        everyone.a.prepaid_tenancy.pk
    ]


def test_a_former_tenants_automatic_payments_and_cards_are_not_theirs_to_change(everyone):
    former = everyone.former_tenancy
    card = _saved_card(former)
    payment_settings_update(
        tenancy=former,
        auto_topup_enabled=False,
        threshold_minor=500,
        amount_minor=2000,
        monthly_cap_minor=5000,
        autopay_enabled=False,
    )
    client = _client(former.tenant)
    url = reverse("payments:automatic", args=[former.pk])
    assert client.get(url).status_code == 404
    data = {"auto_topup_enabled": "on", "threshold": "5", "amount": "20", "monthly_cap": "50"}
    assert client.post(url, data).status_code == 404
    assert not PaymentSettings.objects.get(tenancy=former).auto_topup_enabled
    remove = reverse("payments:method_remove", args=[former.pk, card.pk])
    assert client.post(remove).status_code == 404
    assert SavedPaymentMethod.objects.filter(pk=card.pk).exists()


def test_a_tenancy_that_has_not_started_shows_no_live_unit_either(everyone):
    upcoming = Tenancy.objects.create(
        landlord=everyone.a.landlord,
        unit=everyone.a.postpaid,
        tenant=everyone.former_tenancy.tenant,
        start_date=timezone.localdate() + timedelta(days=7),
    )
    client = _client(upcoming.tenant)
    body = client.get(reverse("tenant:home", args=[upcoming.pk])).content.decode()
    assert 'data-testid="not-started"' in body and "ws-connect" not in body
    assert client.get(reverse("api-tenancy", args=[upcoming.pk])).status_code == 404


@database_sync_to_async
def _session(user) -> str:
    return _client(user).cookies["sessionid"].value


@database_sync_to_async
def _end_yesterday(tenancy: Tenancy) -> None:
    Tenancy.objects.filter(pk=tenancy.pk).update(
        start_date=timezone.localdate() - timedelta(days=30),
        end_date=timezone.localdate() - timedelta(days=1),
    )


@pytest.mark.django_db(transaction=True)
async def test_an_open_page_stops_showing_the_unit_when_the_tenancy_ends(teveryone):
    tenancy = teveryone.a.prepaid_tenancy
    comm = browser_communicator(f"/ws/live/tenancy/{tenancy.pk}/", await _session(tenancy.tenant))
    assert (await comm.connect())[0]
    await comm.receive_from(timeout=5)  # the snapshot
    await _end_yesterday(tenancy)
    await get_channel_layer().group_send(
        tenancy_group(tenancy.pk), {"type": "unit.changed", "unit_id": tenancy.unit_id}
    )
    closed = await comm.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4404}
