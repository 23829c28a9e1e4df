"""Refunds (full or partial, with a reason) and chargebacks (charge.dispute.*)."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client
from django.urls import reverse

from landlord.models import AuditEvent
from payments.ledger import ledger_verify, tenant_account
from payments.models import Dispute, LedgerTransaction, Payment, Refund
from payments.services import payment_create, refundable_minor

from .conftest import ACCT_A
from .stripe_fake import event, intent_obj, recorded

PI = "pi_3QfakeIntent0001"


@pytest.fixture
def paid(personas, connected, hook) -> Payment:
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="stripe", created_by_id=None
    )
    Payment.objects.filter(pk=payment.pk).update(stripe_account=ACCT_A)
    payment.refresh_from_db()
    hook(event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A))
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    return payment


def _balance(personas) -> int:
    return tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor


def _landlord(personas) -> Client:
    client = Client()
    client.force_login(personas.a.staff)
    return client


def _refund_event(refund: Refund, status: str, type_: str = "refund.updated"):
    obj = recorded("refund", amount=refund.amount_minor, status=status, payment_intent=PI)
    obj["metadata"] = {"refund_uuid": str(refund.uuid)}
    return event(type_, obj, account=ACCT_A)


def test_partial_refund_calls_stripe_then_reverses_on_the_webhook(
    personas, paid, fake_stripe, hook
):
    fake_stripe.add("post", "/v1/refunds", recorded("refund"))
    # when the landlord refunds 4.00 of 10.00 with a reason
    resp = _landlord(personas).post(
        reverse("payments:refund", args=[paid.uuid]), {"amount": "4", "reason": "Meter misread"}
    )
    assert resp.status_code == 302
    refund = Refund.objects.get()
    [sent] = fake_stripe.sent("/v1/refunds")
    assert sent.headers["Stripe-Account"] == ACCT_A
    assert sent.headers["Idempotency-Key"] == f"submeter:refund:{refund.uuid}"
    assert sent.form["amount"] == "400"
    assert sent.form["payment_intent"] == PI
    assert sent.form["metadata[refund_uuid]"] == str(refund.uuid)
    assert refund.provider_ref == "re_3QfakeRefund0001"
    # the balance changes only when Stripe says the refund succeeded
    assert _balance(personas) == 1000
    hook(_refund_event(refund, "pending", "refund.created"))
    assert _balance(personas) == 1000
    hook(_refund_event(refund, "succeeded"))
    hook(_refund_event(refund, "succeeded"))
    assert _balance(personas) == 600
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    assert refund.ledger_transaction is not None
    assert refund.ledger_transaction.kind == LedgerTransaction.Kind.REFUND
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"payment.refund_requested", "payment.refunded"} <= actions
    audit = AuditEvent.objects.get(action="payment.refund_requested")
    assert audit.reason == "Meter misread" and audit.actor_id == personas.a.staff.pk
    # the landlord's page and the tenant's receipt show it
    assert (
        "Meter misread"
        in _landlord(personas).get(reverse("payments:landlord_payments")).content.decode()
    )


def test_a_failed_refund_reverses_nothing(personas, paid, fake_stripe, hook):
    fake_stripe.add("post", "/v1/refunds", recorded("refund"))
    _landlord(personas).post(
        reverse("payments:refund", args=[paid.uuid]), {"amount": "10", "reason": "x"}
    )
    refund = Refund.objects.get()
    hook(_refund_event(refund, "failed", "refund.failed"))
    refund.refresh_from_db()
    assert refund.status == "failed"
    assert _balance(personas) == 1000
    assert not LedgerTransaction.objects.filter(kind="refund").exists()
    # A late "succeeded" can only tell of the time before it failed: posted and
    # reversed, the tenant keeps the money.
    hook(_refund_event(refund, "succeeded"))
    refund.refresh_from_db()
    assert refund.status == "failed"
    assert _balance(personas) == 1000


def _refund_failed_after_success(refund: Refund):
    """Stripe's ``charge.refund.updated`` for a succeeded refund that then failed."""
    evt = _refund_event(refund, "failed", "charge.refund.updated")
    evt["data"]["previous_attributes"] = {"status": "succeeded"}
    return evt


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["created", "succeeded", "failed"])), ids=str
)
def test_a_refund_that_fails_after_succeeding_gives_the_money_back_in_any_order(
    personas, paid, fake_stripe, hook, order
):
    fake_stripe.add("post", "/v1/refunds", recorded("refund"))
    _landlord(personas).post(
        reverse("payments:refund", args=[paid.uuid]), {"amount": "4", "reason": "Meter misread"}
    )
    refund = Refund.objects.get()
    events = {
        "created": _refund_event(refund, "pending", "refund.created"),
        "succeeded": _refund_event(refund, "succeeded"),
        "failed": _refund_failed_after_success(refund),
    }
    # when the refund's events arrive in this order, one of them twice
    for name in (*order, order[0]):
        hook(events[name])
    # then the refund is failed and its ledger effect is undone
    refund.refresh_from_db()
    assert refund.status == "failed"
    assert _balance(personas) == 1000
    keys = sorted(
        LedgerTransaction.objects.filter(kind="refund").values_list("idempotency_key", flat=True)
    )
    assert keys == [f"refund:{refund.uuid}", f"refund:{refund.uuid}:failed"]
    assert AuditEvent.objects.filter(action="payment.refund_failed").count() == 1
    assert ledger_verify() == []
    # and what failed may be refunded again
    assert refundable_minor(payment=paid) == 1000


def test_a_dashboard_refund_that_fails_after_succeeding_is_reversed(personas, paid, hook):
    obj = recorded("refund", id="re_dash_fail", amount=300, status="succeeded", payment_intent=PI)
    hook(event("refund.updated", obj, account=ACCT_A))
    assert _balance(personas) == 700
    failed = event("charge.refund.updated", {**obj, "status": "failed"}, account=ACCT_A)
    failed["data"]["previous_attributes"] = {"status": "succeeded"}
    hook(failed)
    assert Refund.objects.get().status == "failed"
    assert _balance(personas) == 1000


@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        ("10.01", "too much", "between 0.01 and 10.00"),
        ("0", "zero", "between"),
        ("5", "  ", "reason"),
        ("abc", "x", "such as"),
    ],
)
def test_bad_refunds_are_refused_and_call_nothing(
    personas, paid, fake_stripe, amount, reason, message
):
    resp = _landlord(personas).post(
        reverse("payments:refund", args=[paid.uuid]), {"amount": amount, "reason": reason}
    )
    assert resp.status_code == 400
    assert message in resp.content.decode()
    assert not Refund.objects.exists()
    assert fake_stripe.sent("/v1/refunds") == []


def test_refunds_never_exceed_the_payment(personas, paid, fake_stripe):
    fake_stripe.add("post", "/v1/refunds", recorded("refund"))
    client = _landlord(personas)
    url = reverse("payments:refund", args=[paid.uuid])
    assert client.post(url, {"amount": "6", "reason": "a"}).status_code == 302
    resp = client.post(url, {"amount": "5", "reason": "b"})
    assert resp.status_code == 400 and "between 0.01 and 4.00" in resp.content.decode()


def test_another_landlords_payment_cannot_be_refunded(personas, paid, fake_stripe):
    other = Client()
    other.force_login(personas.b.staff)
    url = reverse("payments:refund", args=[paid.uuid])
    assert other.get(url).status_code == 404
    assert other.post(url, {"amount": "1", "reason": "x"}).status_code == 404
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    assert tenant.post(url, {"amount": "1", "reason": "x"}).status_code == 404
    assert not Refund.objects.exists()


def test_a_refund_made_in_the_stripe_dashboard_is_recorded_and_reversed(personas, paid, hook):
    obj = recorded("refund", id="re_dashboard1", amount=250, status="succeeded", payment_intent=PI)
    hook(event("refund.created", obj, account=ACCT_A))
    refund = Refund.objects.get()
    assert refund.provider_ref == "re_dashboard1" and refund.amount_minor == 250
    assert _balance(personas) == 750


def _dispute(status: str = "needs_response", amount: int = 1000):
    return {
        "id": "du_1QfakeDispute01",
        "object": "dispute",
        "amount": amount,
        "currency": "gbp",
        "charge": "ch_3QfakeCharge0001",
        "payment_intent": PI,
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": 1796000000},
    }


def test_a_chargeback_is_recorded_and_moves_the_disputed_amount(personas, paid, hook):
    hook(event("charge.dispute.created", _dispute(), account=ACCT_A))
    dispute = Dispute.objects.get()
    assert dispute.payment == paid and dispute.reason == "fraudulent"
    assert dispute.evidence_due_by is not None
    assert _balance(personas) == 1000
    hook(event("charge.dispute.funds_withdrawn", _dispute(), account=ACCT_A))
    assert _balance(personas) == 0
    # visible to the landlord and in the admin, not to the other landlord
    assert (
        "fraudulent"
        in _landlord(personas).get(reverse("payments:landlord_payments")).content.decode()
    )
    other = Client()
    other.force_login(personas.b.staff)
    assert "fraudulent" not in other.get(reverse("payments:landlord_payments")).content.decode()
    admin = Client()
    admin.force_login(personas.admin)
    assert "du_1QfakeDispute01" in admin.get("/admin/payments/dispute/").content.decode()
    # won: the funds come back, once
    hook(event("charge.dispute.closed", _dispute("won"), account=ACCT_A))
    hook(event("charge.dispute.funds_reinstated", _dispute("won"), account=ACCT_A))
    assert _balance(personas) == 1000
    hook(event("charge.dispute.updated", _dispute("under_review"), account=ACCT_A))
    dispute.refresh_from_db()
    assert dispute.status == "won"
    assert AuditEvent.objects.filter(action="payment.disputed").count() == 1


def test_a_chargeback_before_the_success_event_waits_for_it(personas, connected, hook):
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="stripe", created_by_id=None
    )
    Payment.objects.filter(pk=payment.pk).update(stripe_account=ACCT_A)
    hook(event("charge.dispute.funds_withdrawn", _dispute("lost"), account=ACCT_A))
    assert not Dispute.objects.exists()
    hook(event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A))
    assert Dispute.objects.get().status == "lost"
    assert _balance(personas) == 0


def test_development_refund_goes_through_the_same_event_path(
    personas, django_capture_on_commit_callbacks
):
    tenant = Client()
    tenant.force_login(personas.a.prepaid_tenant)
    with django_capture_on_commit_callbacks(execute=True):
        tenant.post(
            reverse("payments:topup", args=[personas.a.prepaid_tenancy.pk]), {"amount": "10"}
        )
        payment = Payment.objects.get()
        tenant.post(reverse("payments:dev_checkout", args=[payment.uuid]), {"outcome": "succeeded"})
    assert _balance(personas) == 1000
    with django_capture_on_commit_callbacks(execute=True):
        resp = _landlord(personas).post(
            reverse("payments:refund", args=[payment.uuid]),
            {"amount": "2.50", "reason": "goodwill"},
        )
    assert resp.status_code == 302
    assert Refund.objects.get().status == "succeeded"
    assert _balance(personas) == 750
    receipt = tenant.get(reverse("payments:status", args=[payment.uuid])).content.decode()
    assert "goodwill" in receipt


def test_platform_admin_refunds_with_a_reason_from_the_admin(personas, paid, fake_stripe, hook):
    fake_stripe.add("post", "/v1/refunds", recorded("refund"))
    admin = Client()
    admin.force_login(personas.admin)
    change = admin.get(f"/admin/payments/payment/{paid.pk}/change/").content.decode()
    url = reverse("admin:payments_payment_refund", args=[paid.pk])
    assert url in change
    assert admin.post(url, {"amount": "20", "reason": "x"}).status_code == 400
    resp = admin.post(url, {"amount": "10", "reason": "Dispute resolved for the tenant"})
    assert resp.status_code == 302
    refund = Refund.objects.get()
    assert refund.created_by_id == personas.admin.pk
    hook(_refund_event(refund, "succeeded"))
    assert _balance(personas) == 0
    # landlord staff are not admins
    staff = _landlord(personas)
    assert staff.get(url).status_code == 302  # to the admin login
