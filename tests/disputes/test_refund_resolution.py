"""Resolving a dispute with a refund through the payment provider (the development
provider here): the ledger follows the provider's refund event; four eyes above
the configured amount; bad input refused before anything is recorded."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from disputes import services
from disputes.models import Dispute
from landlord.models import AuditEvent
from payments.ledger import ledger_verify, tenant_account
from payments.models import Payment, Refund
from payments.providers import DevelopmentProvider
from payments.services import payment_create

from .conftest import open_on_invoice

pytestmark = pytest.mark.django_db
S = Dispute.Status


@pytest.fixture
def dev_payments(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.DEVELOPMENT_PAYMENTS = True
    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_FOUR_EYES_ABOVE_MINOR": 2500}


@pytest.fixture
def paid(personas, dev_payments, django_capture_on_commit_callbacks) -> Payment:
    """A 100.00 top-up by the prepaid tenant, paid through the development provider."""
    with django_capture_on_commit_callbacks(execute=True):
        payment = payment_create(
            tenancy=personas.a.prepaid_tenancy,
            amount_minor=10_000,
            provider="dev",
            created_by_id=None,
        )
        DevelopmentProvider().complete(payment=payment, outcome="succeeded")
    payment.refresh_from_db()
    assert payment.status == Payment.Status.SUCCEEDED
    return payment


def _balance(personas) -> int:
    return tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor


def _admin2():
    user, _ = get_user_model().objects.get_or_create(username="admin2", defaults={"is_staff": True})
    return user


def test_a_refund_goes_through_the_provider_and_the_ledger_follows(
    personas, paid, django_capture_on_commit_callbacks
):
    # given a dispute about the payment (taken twice, says the tenant)
    d = services.dispute_open(
        tenancy=personas.a.prepaid_tenancy,
        actor=personas.a.prepaid_tenant,
        item=services.DisputeItem(subject=Dispute.Subject.PAYMENT, payment=paid),
        category=Dispute.Category.DOUBLE_CHARGE,
        message="My card was charged twice for this top-up.",
        amount_minor=3000,
    )
    before = _balance(personas)
    # when an admin resolves it with a refund of 20.00 of that payment
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_resolve_refund(
            dispute=d, actor=personas.admin, payment=paid, amount_minor=2000, note="Refunded."
        )
    # then the refund was recorded through the refund service, sent to the provider,
    # and posted once the provider said it succeeded
    d.refresh_from_db()
    assert d.status == S.RESOLVED and d.refund is not None
    refund = d.refund
    assert refund.payment == paid and refund.amount_minor == 2000
    assert refund.status == Refund.Status.SUCCEEDED
    assert refund.provider_ref == f"re_dev_{refund.uuid.hex}"
    assert refund.ledger_transaction is not None
    assert refund.created_by_id == personas.admin.pk
    assert f"Dispute #{d.pk}" in refund.reason
    # the money went back to the card: it comes off the balance, no adjustment
    assert _balance(personas) == before - 2000
    assert d.adjustment_minor == 0 and d.ledger_transaction is None
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"payment.refund_requested", "payment.refunded", "dispute.resolved"} <= actions
    assert ledger_verify() == []
    # resolving twice is refused, and no second refund is made
    with pytest.raises(services.IllegalTransition):
        services.dispute_resolve_refund(
            dispute=d, actor=personas.admin, payment=paid, amount_minor=1000, note="Again."
        )
    assert Refund.objects.count() == 1


def test_a_wrong_charge_is_credited_then_refunded(
    personas, paid, django_capture_on_commit_callbacks
):
    d = open_on_invoice(personas.a.prepaid_tenancy, amount=2500)
    before = _balance(personas)
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_resolve_refund(
            dispute=d,
            actor=personas.admin,
            payment=paid,
            amount_minor=2500,
            note="The bill was overcharged; refunded to the card.",
            credit=True,
        )
    d.refresh_from_db()
    assert d.adjustment_minor == 2500 and d.ledger_transaction is not None
    assert d.refund is not None and d.refund.status == Refund.Status.SUCCEEDED
    # credited, then refunded: the balance ends where it was, the card has the money
    assert _balance(personas) == before


def test_a_refund_above_the_four_eyes_amount_waits_for_a_second_admin(
    personas, paid, django_capture_on_commit_callbacks
):
    d = open_on_invoice(personas.a.prepaid_tenancy, amount=4000)
    before = _balance(personas)
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_resolve_refund(
            dispute=d, actor=personas.admin, payment=paid, amount_minor=3000, note="Big refund."
        )
    d.refresh_from_db()
    assert d.status == S.AWAITING_APPROVAL
    assert (d.approval_minor, d.approval_payment_id) == (3000, paid.pk)
    assert not Refund.objects.exists()
    with pytest.raises(services.FourEyes):
        services.dispute_approve(dispute=d, actor=personas.admin)
    assert not Refund.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_approve(dispute=d, actor=_admin2())
    d.refresh_from_db()
    assert d.status == S.RESOLVED
    assert d.refund is not None and d.refund.amount_minor == 3000
    assert d.refund.status == Refund.Status.SUCCEEDED
    assert _balance(personas) == before - 3000


def test_a_declined_refund_sends_nothing(personas, paid, django_capture_on_commit_callbacks):
    d = open_on_invoice(personas.a.prepaid_tenancy, amount=4000)
    services.dispute_resolve_refund(
        dispute=d, actor=personas.admin, payment=paid, amount_minor=3000, note="Big refund."
    )
    services.dispute_decline(dispute=d, actor=_admin2(), note="An adjustment is enough.")
    d.refresh_from_db()
    assert d.status == S.ESCALATED
    assert (d.approval_minor, d.approval_payment_id, d.approval_credit) == (None, None, False)
    assert not Refund.objects.exists()


def test_bad_refunds_are_refused_and_record_nothing(personas, paid):
    d = open_on_invoice(personas.a.prepaid_tenancy, amount=1000)
    other = payment_create(
        tenancy=personas.b.prepaid_tenancy, amount_minor=1000, provider="dev", created_by_id=None
    )
    pending = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="dev", created_by_id=None
    )
    cases = [
        (dict(payment=paid, amount_minor=0), "more than zero"),
        (dict(payment=paid, amount_minor=1500), "more than the disputed amount"),
        (dict(payment=other, amount_minor=500), "payment of this tenancy"),
        (dict(payment=pending, amount_minor=500), "succeeded"),
        (dict(payment=paid, amount_minor=20_000, over_reason="fees"), "At most £100.00"),
    ]
    for kwargs, error in cases:
        with pytest.raises(services.DisputeError, match=error):
            services.dispute_resolve_refund(dispute=d, actor=personas.admin, note="No.", **kwargs)
    with pytest.raises(services.DisputeError, match="platform admin"):
        services.dispute_resolve_refund(
            dispute=d, actor=personas.a.staff, payment=paid, amount_minor=500, note="No."
        )
    assert not Refund.objects.exists()
    d.refresh_from_db()
    assert d.status == S.OPEN


def test_the_desk_resolves_with_a_refund(personas, paid, django_capture_on_commit_callbacks):
    d = open_on_invoice(personas.a.prepaid_tenancy, amount=1000)
    admin = Client()
    admin.force_login(personas.admin)
    page = admin.get(reverse("disputes:desk_case", args=[d.pk])).content.decode()
    assert reverse("disputes:desk_refund", args=[d.pk]) in page
    assert str(paid.uuid) in page
    url = reverse("disputes:desk_refund", args=[d.pk])
    # an error keeps what was typed
    resp = admin.post(url, {"payment": str(paid.uuid), "amount": "5.00", "note": ""})
    assert resp.status_code == 400
    assert "Write the reasons for the decision." in resp.content.decode()
    assert 'value="5.00"' in resp.content.decode()
    # another landlord's tenant's payment is not a choice
    other = payment_create(
        tenancy=personas.b.prepaid_tenancy, amount_minor=1000, provider="dev", created_by_id=None
    )
    resp = admin.post(url, {"payment": str(other.uuid), "amount": "5.00", "note": "x"})
    assert resp.status_code == 400 and "Choose the payment to refund." in resp.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        resp = admin.post(url, {"payment": str(paid.uuid), "amount": "5.00", "note": "Refunded."})
    assert resp.status_code == 302
    d.refresh_from_db()
    assert d.status == S.RESOLVED and d.refund is not None
    # both parties see the refund and its status on the case page
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    case = tenant.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "£5.00 refunded to the card" in case and "succeeded" in case
