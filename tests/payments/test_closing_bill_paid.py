"""A closing bill shows paid when what paid it was not a bill payment as such: the
deposit applied at move-out, or top-ups after the unit turned prepaid
(``payments.allocation``)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from io import StringIO

from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone

from landlord import people
from payments import allocation, deposits
from payments.ledger import ledger_verify, tenant_account
from payments.models import BillAllocation, Invoice, Payment
from payments.services import payment_create, payment_transition

from .conftest import ACCT_A
from .stripe_fake import event, recorded
from .test_billing import _pay, _record
from .test_deposits import _client, _dispute, _move_out, _pay_deposit, _use

SWITCH = datetime(2026, 1, 10, 12, tzinfo=UTC)  # London: UTC in January


def _outstanding(invoice: Invoice) -> int:
    invoice.refresh_from_db()
    return allocation.invoice_outstanding_minor(invoice=invoice)


def _balance(tenancy) -> int:
    return tenant_account(tenancy=tenancy).balance_minor


# --- the deposit pays the closing bill ------------------------------------------------------


def test_the_deposit_applied_at_move_out_pays_the_closing_bill(
    personas, connected, fake_stripe, hook, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=None)
    deposit = _pay_deposit(tenancy, 5000, hook)
    _use(tenancy, world.postpaid_device.device, 2000)  # 2 kWh at 30p = 60p
    fake_stripe.add("post", "/v1/refunds", recorded("refund", amount=4940))
    # when the tenant moves out: 60p of the deposit pays the 60p closing bill
    _move_out(tenancy, django_capture_on_commit_callbacks)
    bill = Invoice.objects.get(tenancy=tenancy)
    assert bill.total_minor == 60
    # then the bill is paid by the deposit payment, and nothing is carried as credit
    assert _outstanding(bill) == 0
    [row] = BillAllocation.objects.filter(invoice=bill)
    assert (row.payment_id, row.amount_minor) == (deposit.pk, 60)
    assert allocation.tenancy_credit_minor(tenancy_id=tenancy.pk) == 0
    assert _balance(tenancy) == 0
    # and both sides' pages say so
    tenant_page = _client(world.postpaid_tenant).get(f"/payments/invoices/{bill.pk}/")
    body = tenant_page.content.decode()
    assert 'data-testid="invoice-outstanding">£0.00' in body
    assert 'data-testid="invoice-paid">£0.60' in body
    assert "Nothing is owed on this bill." in body
    landlord_page = _client(world.staff).get(f"/landlord/units/{world.postpaid.pk}/")
    assert landlord_page.status_code == 200
    assert '£0.60</td><td class="num">paid</td>' in landlord_page.content.decode()
    assert ledger_verify() == []


def test_a_deposit_smaller_than_the_closing_bill_pays_part_and_a_payment_the_rest(
    personas, connected, hook, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=400, actor_id=None)
    _pay_deposit(tenancy, 400, hook)
    _use(tenancy, world.postpaid_device.device, 20_000)  # 20 kWh at 30p = 600p
    with django_capture_on_commit_callbacks(execute=True):
        people.tenancy_move_out(
            tenancy=tenancy, end_date=timezone.localdate(), closing_wh=21_000, actor_id=None
        )
    bill = Invoice.objects.get(tenancy=tenancy)
    assert bill.total_minor == 600
    # 400p of the deposit: 200p still to pay, as the balance says
    assert _outstanding(bill) == 200 == -_balance(tenancy)
    assert ledger_verify() == []
    # when the tenant pays the 200p left after moving out: the bill is paid
    payment = payment_create(
        tenancy=tenancy, amount_minor=200, provider="dev", created_by_id=None, invoice=bill
    )
    with transaction.atomic():
        payment_transition(payment=payment, status=Payment.Status.SUCCEEDED, provider_ref="pi_x")
    assert _outstanding(bill) == 0
    assert allocation.tenancy_credit_minor(tenancy_id=tenancy.pk) == 0 == _balance(tenancy)
    assert ledger_verify() == []


def test_a_chargeback_of_the_deposit_applied_puts_the_closing_bill_back_to_unpaid(
    personas, connected, hook, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=40, actor_id=None)
    _pay_deposit(tenancy, 40, hook)
    _use(tenancy, world.postpaid_device.device, 2000)  # 60p
    _move_out(tenancy, django_capture_on_commit_callbacks)
    bill = Invoice.objects.get(tenancy=tenancy)
    assert _outstanding(bill) == 20
    # when the deposit payment is charged back: it no longer paid anything
    hook(event("charge.dispute.funds_withdrawn", _dispute(40, "lost"), account=ACCT_A))
    assert _outstanding(bill) == 60 == -_balance(tenancy)
    assert not BillAllocation.objects.filter(invoice=bill).exists()
    assert ledger_verify() == []


# --- top-ups after a switch to prepaid pay the closing bill ---------------------------------


def test_top_ups_after_a_switch_to_prepaid_pay_the_closing_bill_first(personas):
    world = personas.a
    tenancy = world.postpaid_tenancy
    tenancy.start_date = date(2026, 1, 1)
    tenancy.save()
    dev = world.postpaid_device.device
    # 20 kWh (600p) used postpaid on 5 Jan, then the unit turns prepaid on 10 Jan
    _record(dev, (1, 0, 1000), (2, 60, 21_000), base=datetime(2026, 1, 5, 1, tzinfo=UTC))
    switch = people.unit_billing_mode_switch(
        unit=world.postpaid, mode="prepaid", confirmed=True, actor_id=None, now=SWITCH
    )
    bill = switch.invoice
    assert bill is not None and bill.total_minor == 600
    assert _outstanding(bill) == 600 == -_balance(tenancy)
    # when the tenant tops up 500p: it pays the bill, not prepaid credit
    _pay(tenancy, 500)
    assert _outstanding(bill) == 100
    # 10 kWh (300p) used prepaid on 20 Jan: the bill still asks for 100p, the balance is -400p
    _record(dev, (3, 0, 21_000), (4, 60, 31_000), base=datetime(2026, 1, 20, 1, tzinfo=UTC))
    assert _balance(tenancy) == -400
    assert _outstanding(bill) == 100
    assert ledger_verify() == []
    client = Client()
    client.force_login(world.postpaid_tenant)
    home = client.get(f"/tenant/{tenancy.pk}/").content.decode()
    assert 'data-testid="closing-bill-owed">£1.00 is still to pay' in home
    page = client.get(f"/payments/invoices/{bill.pk}/").content.decode()
    assert 'data-testid="invoice-outstanding">£1.00' in page
    assert 'data-testid="invoice-turned-prepaid"' in page
    # when a 1000p top-up follows: 100p pays the rest of the bill, 600p is left as credit
    second = _pay(tenancy, 1000)
    assert _outstanding(bill) == 0
    assert BillAllocation.objects.get(invoice=bill, payment=second).amount_minor == 100
    assert _balance(tenancy) == 600
    home = client.get(f"/tenant/{tenancy.pk}/").content.decode()
    assert "closing-bill-owed" not in home
    page = client.get(f"/payments/invoices/{bill.pk}/").content.decode()
    assert 'data-testid="invoice-outstanding">£0.00' in page
    assert "Nothing is owed on this bill." in page
    assert Payment.objects.filter(tenancy=tenancy, status="succeeded").count() == 2
    assert ledger_verify() == []


def test_bills_reallocate_rewrites_allocations_stored_under_older_rules(
    personas, connected, fake_stripe, hook, django_capture_on_commit_callbacks
):
    world = personas.a
    tenancy = world.postpaid_tenancy
    deposits.deposit_request(tenancy=tenancy, amount_minor=5000, actor_id=None)
    deposit = _pay_deposit(tenancy, 5000, hook)
    _use(tenancy, world.postpaid_device.device, 2000)
    fake_stripe.add("post", "/v1/refunds", recorded("refund", amount=4940))
    _move_out(tenancy, django_capture_on_commit_callbacks)
    bill = Invoice.objects.get(tenancy=tenancy)
    # given an allocation stored before the deposit counted as paying the bill
    BillAllocation.objects.filter(invoice=bill).update(amount_minor=10)
    assert f"tenancy {tenancy.pk}: allocations are not oldest first" in ledger_verify()
    # when the operator runs the command (twice: it changes nothing the second time)
    out = StringIO()
    call_command("bills_reallocate", stdout=out)
    call_command("bills_reallocate", stdout=StringIO())
    # then the deposit pays the bill and the ledger is clean
    assert "allocations recomputed; tenancies with bills: 1" in out.getvalue()
    [row] = BillAllocation.objects.filter(invoice=bill)
    assert (row.payment_id, row.amount_minor) == (deposit.pk, 60)
    assert ledger_verify() == []
