"""A landlord accepts a dispute with a refund to the tenant's card.

The offer moves no money: it is asked of the payment provider (the development
provider here) when the tenant accepts, or when their window to answer passes,
and the ledger follows the provider's refund event. The checks are the admin
refund's; no second admin is needed, whatever the amount.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from disputes import services
from disputes.models import Dispute, DisputeMessage
from landlord.models import AuditEvent
from payments.ledger import ledger_verify, tenant_account
from payments.models import Payment, Refund
from payments.providers import DevelopmentProvider
from payments.refunds import refund_request
from payments.services import payment_create

from .conftest import open_on_invoice

pytestmark = pytest.mark.django_db
S = Dispute.Status
REFUND = Dispute.Response.REFUND


@pytest.fixture
def dev_payments(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.DEVELOPMENT_PAYMENTS = True
    # Low, so the landlord's refunds below are above it: it is not theirs to wait for.
    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_FOUR_EYES_ABOVE_MINOR": 1000}


def _pay(tenancy, amount: int, outcome: str, capture) -> Payment:
    with capture(execute=True):
        payment = payment_create(
            tenancy=tenancy, amount_minor=amount, provider="dev", created_by_id=None
        )
        DevelopmentProvider().complete(payment=payment, outcome=outcome)
    payment.refresh_from_db()
    return payment


@pytest.fixture
def paid(personas, dev_payments, django_capture_on_commit_callbacks) -> Payment:
    """A 100.00 top-up by A's prepaid tenant, paid through the development provider."""
    payment = _pay(
        personas.a.prepaid_tenancy, 10_000, "succeeded", django_capture_on_commit_callbacks
    )
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


def _balance(personas) -> int:
    return tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor


def _on_payment(personas, payment: Payment, amount: int = 3000) -> Dispute:
    tenancy = personas.a.prepaid_tenancy
    return services.dispute_open(
        tenancy=tenancy,
        actor=tenancy.tenant,
        item=services.DisputeItem(subject=Dispute.Subject.PAYMENT, payment=payment),
        category=Dispute.Category.DOUBLE_CHARGE,
        message="My card was charged twice for this top-up.",
        amount_minor=amount,
    )


def _offer(d: Dispute, actor, payment: Payment, amount: int, **kwargs) -> Dispute:
    return services.dispute_respond(
        dispute=d,
        actor=actor,
        response=REFUND,
        note=kwargs.pop("note", "Sorry, taken twice."),
        adjustment_minor=amount,
        payment=payment,
        **kwargs,
    )


def test_the_tenant_accepts_and_the_refund_goes_through_the_provider(
    personas, paid, django_capture_on_commit_callbacks
):
    # given a dispute about a payment taken twice
    landlord, tenant = personas.a.staff, personas.a.prepaid_tenant
    for user, email in [(landlord, "owner@example.test"), (tenant, "tenant@example.test")]:
        user.email = email
        user.save(update_fields=["email"])
    d = _on_payment(personas, paid)
    before = _balance(personas)
    mail.outbox.clear()
    # when the landlord accepts it with a refund of the disputed 30.00 (above the
    # admins' four-eyes amount: the landlord refunds their own money)
    with django_capture_on_commit_callbacks(execute=True):
        _offer(d, landlord, paid, 3000)
    # then the case waits for the tenant, and nothing has moved yet
    d.refresh_from_db()
    assert d.status == S.LANDLORD_RESPONDED and d.response == REFUND
    assert (d.proposed_minor, d.proposed_payment_id, d.proposed_credit) == (3000, paid.pk, False)
    assert not Refund.objects.exists() and _balance(personas) == before
    responded = DisputeMessage.objects.get(dispute=d, step="responded")
    assert "a refund of £30.00 to the card" in responded.body
    assert len(mail.outbox) == 1 and "offers a refund of £30.00" in mail.outbox[0].subject
    assert set(mail.outbox[0].to) == {"owner@example.test", "tenant@example.test"}
    # when the tenant accepts
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_tenant_accept(dispute=d, actor=tenant)
    # then the refund is recorded in the landlord's name, sent, and posted once confirmed
    d.refresh_from_db()
    assert d.status == S.RESOLVED and d.closed_at is not None
    refund = d.refund
    assert refund is not None and refund.payment == paid and refund.amount_minor == 3000
    assert refund.status == Refund.Status.SUCCEEDED and refund.ledger_transaction is not None
    assert refund.created_by_id == landlord.pk and f"Dispute #{d.pk}" in refund.reason
    assert _balance(personas) == before - 3000
    assert d.adjustment_minor == 0 and d.ledger_transaction is None
    assert ledger_verify() == []
    accepted = DisputeMessage.objects.get(dispute=d, step="accepted")
    assert "asked of the payment provider" in accepted.body
    assert len(mail.outbox) == 1 and "offer: a refund of £30.00" in mail.outbox[0].subject
    assert set(mail.outbox[0].to) == {"owner@example.test", "tenant@example.test"}
    # every step audit-logged with its actor
    actors = dict(
        AuditEvent.objects.filter(
            action__in=["dispute.responded", "dispute.accepted", "payment.refund_requested"]
        ).values_list("action", "actor_id")
    )
    assert actors == {
        "dispute.responded": landlord.pk,
        "dispute.accepted": tenant.pk,
        "payment.refund_requested": landlord.pk,
    }
    # accepting twice is refused and refunds nothing more
    with pytest.raises(services.IllegalTransition):
        services.dispute_tenant_accept(dispute=d, actor=tenant)
    assert Refund.objects.count() == 1


def test_a_wrong_charge_is_credited_then_refunded(
    personas, paid, django_capture_on_commit_callbacks
):
    d = open_on_invoice(personas.a.prepaid_tenancy, amount=2500)
    before = _balance(personas)
    _offer(d, personas.a.staff, paid, 2500, credit=True, note="The bill was wrong.")
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_tenant_accept(dispute=d, actor=personas.a.prepaid_tenant)
    d.refresh_from_db()
    assert d.adjustment_minor == 2500 and d.ledger_transaction is not None
    assert d.refund is not None and d.refund.status == Refund.Status.SUCCEEDED
    # credited from the landlord's revenue, then refunded: the card has the money
    assert _balance(personas) == before
    assert ledger_verify() == []


def test_the_tenant_escalates_instead_and_nothing_is_refunded(personas, paid):
    d = _on_payment(personas, paid)
    _offer(d, personas.a.staff, paid, 3000)
    services.dispute_escalate(
        dispute=d, actor=personas.a.prepaid_tenant, role="tenant", note="I want more."
    )
    d.refresh_from_db()
    assert d.status == S.ESCALATED
    assert not Refund.objects.exists()


def test_the_tenants_window_passes_and_the_refund_is_made(
    personas, paid, django_capture_on_commit_callbacks
):
    d = _on_payment(personas, paid)
    _offer(d, personas.a.staff, paid, 3000)
    before = _balance(personas)
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_deadlines_run(now=timezone.now() + timedelta(days=30))
    d.refresh_from_db()
    assert d.status == S.RESOLVED
    assert d.refund is not None and d.refund.status == Refund.Status.SUCCEEDED
    assert d.refund.created_by_id == personas.a.staff.pk
    assert _balance(personas) == before - 3000
    assert ledger_verify() == []


def test_an_offer_overtaken_by_another_refund_goes_to_the_admins(
    personas, paid, django_capture_on_commit_callbacks
):
    # given an offer of 30.00, then 80.00 of the same payment refunded from the payments page
    d = _on_payment(personas, paid)
    _offer(d, personas.a.staff, paid, 3000)
    with django_capture_on_commit_callbacks(execute=True):
        refund_request(payment=paid, amount_minor=8000, reason="Moved out", created_by_id=None)
    # the tenant cannot accept an offer nobody can honour: they are told to escalate
    with pytest.raises(services.RefundOfferLapsed, match=r"At most £20\.00"):
        services.dispute_tenant_accept(dispute=d, actor=personas.a.prepaid_tenant)
    d.refresh_from_db()
    assert d.status == S.LANDLORD_RESPONDED and d.refund is None
    # and when their window passes, the admins decide rather than the case closing
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_deadlines_run(now=timezone.now() + timedelta(days=30))
    d.refresh_from_db()
    assert d.status == S.ESCALATED and d.refund is None
    assert Refund.objects.count() == 1
    assert ledger_verify() == []


def test_bad_offers_are_refused_and_record_nothing(
    personas, paid, django_capture_on_commit_callbacks
):
    d = _on_payment(personas, paid)
    landlord = personas.a.staff
    other = _pay(personas.b.prepaid_tenancy, 1000, "succeeded", django_capture_on_commit_callbacks)
    failed = _pay(personas.a.prepaid_tenancy, 1000, "failed", django_capture_on_commit_callbacks)
    assert failed.status == Payment.Status.FAILED
    elsewhere = _pay(
        personas.a.prepaid_tenancy, 1000, "succeeded", django_capture_on_commit_callbacks
    )
    Payment.objects.filter(pk=elsewhere.pk).update(provider="stripe")
    cases = [
        (dict(payment=paid, amount=0), "more than zero"),
        (dict(payment=paid, amount=4000), "more than the disputed amount"),
        (dict(payment=paid, amount=20_000, over_reason="fees"), "At most £100.00"),
        (dict(payment=other, amount=500), "payment of this tenancy"),
        (dict(payment=failed, amount=500), "succeeded"),
        (dict(payment=elsewhere, amount=500), "provider is not available"),
        (dict(payment=None, amount=500), "Choose the payment"),
    ]
    for kwargs, error in cases:
        with pytest.raises(services.DisputeError, match=error):
            _offer(d, landlord, kwargs.pop("payment"), kwargs.pop("amount"), **kwargs)
    # nobody but an owner of the landlord offers a refund
    from tests.factories import make_staff_member

    for actor, error in [
        (personas.a.prepaid_tenant, "Only the landlord"),
        (personas.b.staff, "Only the landlord"),
        (personas.admin, "Only the landlord"),
        (make_staff_member(personas.a), "Only an owner"),
    ]:
        with pytest.raises(services.DisputeError, match=error):
            _offer(d, actor, paid, 1000)
    assert not Refund.objects.exists()
    d.refresh_from_db()
    assert d.status == S.OPEN and d.proposed_payment_id is None
    # a second response is refused
    _offer(d, landlord, paid, 1000)
    with pytest.raises(services.IllegalTransition):
        _offer(d, landlord, paid, 1000)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_landlord_refunds_through_the_case_page(
    personas, paid, django_capture_on_commit_callbacks
):
    d = _on_payment(personas, paid)
    owner = _client(personas.a.staff)
    url = reverse("disputes:respond", args=[d.pk])
    # the form offers the refund, the disputed payment and amount filled in
    page = owner.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "Accept with a refund to the tenant&#x27;s card" in page
    assert f'value="{paid.uuid}"' in page and "the disputed payment" in page
    assert 'name="refund_amount" inputmode="decimal" value="30.00"' in page
    # an error keeps everything typed
    typed = {
        "response": REFUND,
        "payment": str(paid.uuid),
        "refund_amount": "150.00",
        "over_reason": "Fees as well",
        "note": "Charged twice, sorry.",
        "credit": "1",
    }
    bad = owner.post(url, typed)
    body = bad.content.decode()
    assert bad.status_code == 400 and "At most £100.00 of that payment" in body
    assert 'value="150.00"' in body and 'value="Fees as well"' in body
    assert "Charged twice, sorry." in body
    assert f'value="{paid.uuid}" selected' in body and 'value="1" checked' in body
    assert f'value="{REFUND}" selected' in body
    bad = owner.post(url, {**typed, "refund_amount": "12.345"})
    assert bad.status_code == 400 and "two decimal places" in bad.content.decode()
    assert not Refund.objects.exists()
    # a staff member without the refund permission is refused, with the reason
    from tests.factories import make_staff_member

    staff = _client(make_staff_member(personas.a))
    resp = staff.post(url, {**typed, "refund_amount": "30.00"})
    assert resp.status_code == 400 and "Only an owner" in resp.content.decode()
    # the owner sends it
    resp = owner.post(url, {**typed, "refund_amount": "30.00", "credit": ""})
    assert resp.status_code == 302
    d.refresh_from_db()
    assert (d.status, d.proposed_minor, d.proposed_payment_id) == (
        S.LANDLORD_RESPONDED,
        3000,
        paid.pk,
    )
    # the tenant sees the offer and accepts it
    tenant = _client(personas.a.prepaid_tenant)
    page = tenant.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "a refund of £30.00 to the tenant's card" in page
    assert "Accept the refund of £30.00 to your card" in page
    with django_capture_on_commit_callbacks(execute=True):
        assert tenant.post(reverse("disputes:accept", args=[d.pk])).status_code == 302
    # both parties see the refund, its status and the step
    for client in (tenant, owner):
        page = client.get(reverse("disputes:detail", args=[d.pk])).content.decode()
        assert "£30.00 refunded to the card" in page and "succeeded" in page
        assert "asked of the payment provider" in page
