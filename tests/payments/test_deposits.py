"""Deposits: paid through the provider, held apart, applied at move-out, the rest refunded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord import people
from landlord.models import AuditEvent, Tenancy
from meters.readings import ReadingInput, readings_record
from payments import deposits
from payments.allocation import tenancy_credit_minor, tenancy_funds
from payments.ledger import deposit_account, ledger_verify, tenant_account
from payments.models import Account, BillAllocation, Invoice, LedgerTransaction, Payment, Refund
from payments.services import PaymentError, payment_create

from .conftest import ACCT_A
from .stripe_fake import event, intent_obj, recorded

PI = "pi_3QfakeDeposit001"


def _pay_deposit(tenancy: Tenancy, amount: int, hook) -> Payment:
    payment = payment_create(
        tenancy=tenancy,
        amount_minor=amount,
        provider="stripe",
        created_by_id=tenancy.tenant_id,
        purpose=Payment.Purpose.DEPOSIT,
    )
    Payment.objects.filter(pk=payment.pk).update(stripe_account=ACCT_A)
    payment.refresh_from_db()
    hook(event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A))
    payment.refresh_from_db()
    return payment


def _use(tenancy: Tenancy, device, wh: int) -> None:
    now = timezone.now()
    readings_record(
        device_id=device.pk,
        readings=[
            ReadingInput(seq=1, taken_at=now - timedelta(minutes=20), register_wh=1000),
            ReadingInput(seq=2, taken_at=now - timedelta(minutes=5), register_wh=1000 + wh),
        ],
    )


def _held(tenancy: Tenancy) -> int:
    return deposit_account(tenancy=tenancy).balance_minor


def _balance(tenancy: Tenancy) -> int:
    return tenant_account(tenancy=tenancy).balance_minor


def _refund_event(refund: Refund, status: str, type_: str = "refund.updated"):
    obj = recorded(
        "refund", id=f"re_{refund.uuid.hex[:16]}", amount=refund.amount_minor, status=status
    )
    obj["payment_intent"] = PI
    obj["metadata"] = {"refund_uuid": str(refund.uuid)}
    return event(type_, obj, account=ACCT_A)


def _move_out(tenancy: Tenancy, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        people.tenancy_move_out(
            tenancy=tenancy, end_date=timezone.localdate(), closing_wh=3000, actor_id=None
        )


def test_a_paid_deposit_is_held_apart_never_credit_nor_a_bill_payment(personas, connected, hook):
    tenancy = personas.a.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=personas.a.staff.pk)
    with pytest.raises(PaymentError, match=r"50\.00"):
        payment_create(
            tenancy=tenancy,
            amount_minor=4000,
            provider="stripe",
            created_by_id=None,
            purpose=Payment.Purpose.DEPOSIT,
        )
    # when the tenant pays it and the provider's event arrives (twice)
    payment = _pay_deposit(tenancy, 5000, hook)
    duplicate = event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A)
    hook(duplicate)
    assert hook(duplicate).json().get("duplicate") is True
    # then it is held, once, and the tenant's balance is untouched
    assert payment.status == Payment.Status.SUCCEEDED
    assert _held(tenancy) == 5000
    assert _balance(tenancy) == 0
    assert payment.ledger_transaction is not None
    [posting] = payment.ledger_transaction.postings.all()
    assert posting.credit.kind == Account.Kind.DEPOSIT
    assert posting.debit.kind == Account.Kind.CLEARING
    # and it is no payment of a bill: no funds, no credit carried, no allocation
    assert tenancy_funds(tenancy_id=tenancy.pk) == []
    assert tenancy_credit_minor(tenancy_id=tenancy.pk) == 0
    assert not BillAllocation.objects.exists()
    assert AuditEvent.objects.filter(action="deposit.paid").count() == 1
    status = deposits.deposit_status(tenancy=tenancy)
    assert status is not None
    assert (status.asked_minor, status.held_minor, status.to_pay_minor) == (5000, 5000, 0)
    with pytest.raises(PaymentError, match="No deposit is due"):
        payment_create(
            tenancy=tenancy,
            amount_minor=5000,
            provider="stripe",
            created_by_id=None,
            purpose=Payment.Purpose.DEPOSIT,
        )
    assert ledger_verify() == []


def test_a_prepaid_deposit_does_not_switch_the_supply_on(personas, connected, hook):
    tenancy = personas.a.prepaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=3000, actor_id=None)
    _pay_deposit(tenancy, 3000, hook)
    assert _balance(tenancy) == 0
    assert _held(tenancy) == 3000
    assert not AuditEvent.objects.filter(action="payment.credited").exists()


def test_move_out_applies_the_deposit_to_a_smaller_debt_and_refunds_the_rest(
    personas, connected, fake_stripe, hook, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=None)
    _pay_deposit(tenancy, 5000, hook)
    _use(tenancy, world.postpaid_device.device, 2000)  # 2 kWh at 30p
    fake_stripe.add("post", "/v1/refunds", recorded("refund", amount=4940))
    # when the tenant moves out owing 0.60 on the closing bill
    _move_out(tenancy, django_capture_on_commit_callbacks)
    # then 0.60 of the deposit pays it, and 49.40 is asked back from the provider
    assert Invoice.objects.get(tenancy=tenancy).total_minor == 60
    assert _balance(tenancy) == 0
    applied = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.DEPOSIT)
    assert [p.amount_minor for p in applied.postings.all()] == [60]
    refund = Refund.objects.get()
    assert refund.amount_minor == 4940 and refund.reason == deposits.REFUND_REASON
    [sent] = fake_stripe.sent("/v1/refunds")
    assert sent.form["amount"] == "4940" and sent.form["payment_intent"] == PI
    status = deposits.deposit_status(tenancy=tenancy)
    assert status is not None
    assert (status.applied_minor, status.refunding_minor, status.owed_back_minor) == (60, 4940, 0)
    assert people.final_statement(tenancy=tenancy).balance_minor == 0
    # and when the provider says the refund succeeded, nothing is held any more
    hook(_refund_event(refund, "succeeded"))
    assert _held(tenancy) == 0
    status = deposits.deposit_status(tenancy=tenancy)
    assert status is not None and status.refunded_minor == 4940
    assert AuditEvent.objects.get(action="deposit.settled").data["applied_minor"] == 60
    assert ledger_verify() == []


def test_move_out_applies_all_of_a_deposit_smaller_than_the_debt(
    personas, connected, hook, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=40, actor_id=None)
    _pay_deposit(tenancy, 40, hook)
    _use(tenancy, world.postpaid_device.device, 2000)
    _move_out(tenancy, django_capture_on_commit_callbacks)
    assert _held(tenancy) == 0
    assert _balance(tenancy) == -20
    assert not Refund.objects.exists()
    assert people.final_statement(tenancy=tenancy).owed_by_tenant_minor == 20
    assert ledger_verify() == []


def test_a_failed_deposit_refund_is_owed_back_and_can_be_asked_again(
    personas, connected, fake_stripe, hook, django_capture_on_commit_callbacks
):
    tenancy = personas.a.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=None)
    _pay_deposit(tenancy, 5000, hook)
    fake_stripe.add("post", "/v1/refunds", recorded("refund", amount=5000))
    _move_out(tenancy, django_capture_on_commit_callbacks)
    refund = Refund.objects.get()
    # when the refund succeeds and then fails
    hook(_refund_event(refund, "succeeded"))
    assert _held(tenancy) == 0
    failed = _refund_event(refund, "failed", "charge.refund.updated")
    failed["data"]["previous_attributes"] = {"status": "succeeded"}
    hook(failed)
    # then the money is held again and shown as owed back to the tenant
    assert _held(tenancy) == 5000
    assert _balance(tenancy) == 0
    status = deposits.deposit_status(tenancy=tenancy)
    assert status is not None and status.owed_back_minor == 5000
    # and the landlord can ask again
    fake_stripe.routes[("post", "/v1/refunds")] = [
        (200, recorded("refund", id="re_3QfakeRefundAgain", amount=5000))
    ]
    with django_capture_on_commit_callbacks(execute=True):
        asked = deposits.deposit_refund_rest(tenancy=tenancy, actor_id=personas.a.staff.pk)
    assert asked == 5000
    status = deposits.deposit_status(tenancy=tenancy)
    assert status is not None and status.owed_back_minor == 0 and status.refunding_minor == 5000
    assert ledger_verify() == []


def test_without_a_provider_the_rest_is_shown_owed_back(
    personas, connected, hook, settings, django_capture_on_commit_callbacks
):
    tenancy = personas.a.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=None)
    _pay_deposit(tenancy, 5000, hook)
    settings.STRIPE_SECRET_KEY = ""
    settings.DEVELOPMENT_PAYMENTS = False
    _move_out(tenancy, django_capture_on_commit_callbacks)
    assert not Refund.objects.exists()
    status = deposits.deposit_status(tenancy=tenancy)
    assert status is not None and status.owed_back_minor == 5000
    with pytest.raises(deposits.DepositError, match="yourself"):
        deposits.deposit_refund_rest(tenancy=tenancy, actor_id=None)
    assert ledger_verify() == []


def _dispute(amount: int, status: str = "needs_response"):
    return {
        "id": "du_1QfakeDeposit01",
        "object": "dispute",
        "amount": amount,
        "currency": "gbp",
        "charge": "ch_3QfakeCharge0001",
        "payment_intent": PI,
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": 1796000000},
    }


def test_a_deposit_chargeback_takes_back_what_is_held_and_reinstated_funds_return(
    personas, connected, hook
):
    tenancy = personas.a.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=None)
    _pay_deposit(tenancy, 5000, hook)
    hook(event("charge.dispute.funds_withdrawn", _dispute(5000), account=ACCT_A))
    assert _held(tenancy) == 0
    assert _balance(tenancy) == 0
    hook(event("charge.dispute.funds_reinstated", _dispute(5000, "won"), account=ACCT_A))
    assert _held(tenancy) == 5000
    assert _balance(tenancy) == 0
    assert ledger_verify() == []


def test_a_chargeback_of_a_deposit_already_applied_comes_from_the_balance(
    personas, connected, hook, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=40, actor_id=None)
    _pay_deposit(tenancy, 40, hook)
    _use(tenancy, world.postpaid_device.device, 2000)
    _move_out(tenancy, django_capture_on_commit_callbacks)
    assert (_held(tenancy), _balance(tenancy)) == (0, -20)
    # the deposit paid 0.40 of the debt; its chargeback puts that debt back
    hook(event("charge.dispute.funds_withdrawn", _dispute(40, "lost"), account=ACCT_A))
    assert (_held(tenancy), _balance(tenancy)) == (0, -60)
    assert ledger_verify() == []


def test_a_deposit_cannot_be_asked_below_what_is_held_nor_after_move_out(
    personas, connected, hook, django_capture_on_commit_callbacks
):
    tenancy = personas.a.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=None)
    _pay_deposit(tenancy, 5000, hook)
    with pytest.raises(deposits.DepositError, match="held already"):
        deposits.deposit_request(tenancy=tenancy, amount_minor=100, actor_id=None)
    deposits.deposit_request(tenancy=tenancy, amount_minor=6000, actor_id=None)
    status = deposits.deposit_status(tenancy=tenancy)
    assert status is not None and status.to_pay_minor == 1000
    with pytest.raises(deposits.DepositError, match="between"):
        deposits.deposit_request(tenancy=tenancy, amount_minor=0, actor_id=None)


# --- pages, through the development provider ------------------------------------------


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_landlord_asks_at_move_in_tenant_pays_and_both_see_it_through_move_out(
    personas, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    landlord = _client(world.staff)
    _use(tenancy, world.postpaid_device.device, 2000)  # 2 kWh at 30p
    # the landlord asks for a deposit with the move-in reading; a bad amount loses nothing
    url = reverse("landlord:people:move_in", args=[tenancy.pk])
    bad = landlord.post(url, {"opening": "1", "deposit": "-5"})
    assert bad.status_code == 400 and 'value="1"' in bad.content.decode()
    done = landlord.post(url, {"opening": "1", "deposit": "250"})
    assert done.status_code == 200
    assert "£250.00" in done.content.decode()
    assert AuditEvent.objects.get(action="deposit.requested").actor_id == world.staff.pk
    # the tenant sees it on their history and pays it at the development provider
    tenant = _client(world.postpaid_tenant)
    history = tenant.get(reverse("tenant:history", args=[tenancy.pk])).content.decode()
    assert 'data-testid="deposit-pay"' in history and "£250.00" in history
    with django_capture_on_commit_callbacks(execute=True):
        resp = tenant.post(reverse("payments:deposit_pay", args=[tenancy.pk]))
    assert resp.status_code == 302
    payment = Payment.objects.get(purpose=Payment.Purpose.DEPOSIT)
    with django_capture_on_commit_callbacks(execute=True):
        tenant.post(reverse("payments:dev_checkout", args=[payment.uuid]), {"outcome": "succeeded"})
    status = tenant.get(reverse("payments:status", args=[payment.uuid])).content.decode()
    assert "holds your deposit" in status
    assert _held(tenancy) == 25000 and _balance(tenancy) == 0
    history = tenant.get(reverse("tenant:history", args=[tenancy.pk])).content.decode()
    assert 'data-testid="deposit-pay"' not in history
    unit_page = landlord.get(reverse("landlord:unit", args=[world.postpaid.pk])).content.decode()
    assert 'data-testid="deposit-held">£250.00' in unit_page
    # at move-out it pays the closing bill and the rest goes back through the provider
    with django_capture_on_commit_callbacks(execute=True):
        moved = landlord.post(
            reverse("landlord:people:move_out", args=[tenancy.pk]),
            {"end_date": timezone.localdate().isoformat(), "closing": "3"},
        )
    assert moved.status_code == 302
    assert _balance(tenancy) == 0 and _held(tenancy) == 0
    statement = landlord.get(reverse("landlord:people:statement", args=[tenancy.pk]))
    page = statement.content.decode()
    assert 'data-testid="deposit-applied">£0.60' in page and "£249.40" in page
    history = tenant.get(reverse("tenant:history", args=[tenancy.pk])).content.decode()
    assert "Refunded to you" in history and "£249.40" in history
    assert ledger_verify() == []


def test_the_deposit_page_asks_and_refuses_with_a_clear_error(personas):
    world = personas.a
    tenancy = world.prepaid_tenancy
    landlord = _client(world.staff)
    url = reverse("landlord:people:deposit", args=[tenancy.pk])
    assert landlord.get(url).status_code == 200
    refused = landlord.post(url, {"deposit": "abc"})
    assert refused.status_code == 400 and 'value="abc"' in refused.content.decode()
    assert landlord.post(url, {"deposit": "80"}).status_code == 302
    assert deposits.deposit_status(tenancy=tenancy).asked_minor == 8000  # type: ignore[union-attr]
    other = _client(personas.b.staff)
    assert other.get(url).status_code == 404
    assert other.post(url, {"deposit": "1"}).status_code == 404
