"""Payments applied to postpaid bills, oldest first: partial payments, overpayment
carried as credit to the next bill, refunds taking an application back."""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from payments import allocation, billing
from payments.allocation import Fund, Owed, allocation_compose
from payments.ledger import ledger_verify
from payments.models import BillAllocation, Invoice, Payment, Refund
from payments.services import invoice_amount_due, refund_transition

from .test_billing import _pay


def _issue(world, period_start: date, now: datetime) -> Invoice:
    return billing.invoice_issue(tenancy=world.postpaid_tenancy, period_start=period_start, now=now)


def _state(invoice: Invoice) -> tuple[int, int]:
    invoice.refresh_from_db()
    return (
        allocation.invoice_paid_minor(invoice=invoice),
        allocation.invoice_outstanding_minor(invoice=invoice),
    )


def _refund(payment: Payment, amount: int) -> None:
    refund = Refund.objects.create(
        landlord_id=payment.landlord_id, payment=payment, amount_minor=amount, reason="goodwill"
    )
    with transaction.atomic():
        refund_transition(refund=refund, status=Refund.Status.SUCCEEDED)


def test_compose_applies_oldest_payment_to_oldest_bill():
    bills = [Owed(1, 500), Owed(2, 0), Owed(3, 300)]
    funds = [Fund(10, 200), Fund(11, 450), Fund(12, 1000)]
    assert allocation_compose(bills=bills, funds=funds) == {
        (1, 10): 200,
        (1, 11): 300,
        (3, 11): 150,
        (3, 12): 150,
    }
    assert allocation_compose(bills=bills, funds=[]) == {}
    assert allocation_compose(bills=[], funds=funds) == {}


def test_partial_payment_then_overpayment_carried_to_the_next_bill(postpaid_tou):
    # given: the tenancy runs from 1 Dec; January's bill charges 31 days of
    # standing at 52.5p (1628p: half a penny carried in from December)
    world = postpaid_tou
    tenancy = world.postpaid_tenancy
    january = _issue(world, date(2026, 1, 1), datetime(2026, 2, 1, 9, tzinfo=UTC))
    assert january.total_minor == 1628
    assert _state(january) == (0, 1628)
    # when: a partial payment
    first = _pay(tenancy, 1000)
    # then: it is applied to January
    assert _state(january) == (1000, 628)
    assert invoice_amount_due(invoice=january) == 628
    assert allocation.tenancy_credit_minor(tenancy_id=tenancy.pk) == 0
    # when: an overpayment
    second = _pay(tenancy, 2000)
    # then: January is paid and 1372p is carried as credit
    assert _state(january) == (1628, 0)
    assert invoice_amount_due(invoice=january) == 0
    assert allocation.tenancy_credit_minor(tenancy_id=tenancy.pk) == 1372
    # when: February's bill (28 days at 52.5p: 1470p) is issued
    february = _issue(world, date(2026, 2, 1), datetime(2026, 3, 1, 9, tzinfo=UTC))
    assert february.total_minor == 1470
    # then: the credit pays most of it
    assert _state(february) == (1372, 98)
    assert allocation.tenancy_credit_minor(tenancy_id=tenancy.pk) == 0
    rows = {
        (row.invoice_id, row.payment_id): row.amount_minor for row in BillAllocation.objects.all()
    }
    assert rows == {
        (january.pk, first.pk): 1000,
        (january.pk, second.pk): 628,
        (february.pk, second.pk): 1372,
    }
    # when: 500p of the first payment is refunded
    _refund(first, 500)
    # then: the later payment moves up to cover January, and February owes more
    assert _state(january) == (1628, 0)
    assert _state(february) == (872, 598)
    assert ledger_verify() == []


def test_invoice_page_shows_due_date_paid_and_outstanding(postpaid_tou, client):
    world = postpaid_tou
    january = _issue(world, date(2026, 1, 1), datetime(2026, 2, 1, 9, tzinfo=UTC))
    _pay(world.postpaid_tenancy, 1000)
    client.force_login(world.postpaid_tenant)
    body = client.get(f"/payments/invoices/{january.pk}/").content.decode()
    assert "Due 15 Feb 2026" in body
    assert 'data-testid="invoice-paid">£10.00' in body
    assert 'data-testid="invoice-outstanding">£6.28' in body


def test_allocations_beyond_a_bill_or_a_payment_are_reported(postpaid_tou):
    world = postpaid_tou
    january = _issue(world, date(2026, 1, 1), datetime(2026, 2, 1, 9, tzinfo=UTC))
    payment = _pay(world.postpaid_tenancy, 1000)
    row = BillAllocation.objects.get()
    BillAllocation.objects.filter(pk=row.pk).update(amount_minor=5000)
    problems = ledger_verify()
    assert f"invoice {january.pk}: payments applied exceed its total" in problems
    assert any(p.startswith(f"payment {payment.pk}: 5000 applied") for p in problems)
    BillAllocation.objects.filter(pk=row.pk).update(amount_minor=999)
    assert ledger_verify() == [
        f"tenancy {world.postpaid_tenancy.pk}: allocations are not oldest first"
    ]
    BillAllocation.objects.filter(pk=row.pk).update(amount_minor=1000)
    assert ledger_verify() == []


def test_admin_shows_a_bills_payments(postpaid_tou, client):
    january = _issue(postpaid_tou, date(2026, 1, 1), datetime(2026, 2, 1, 9, tzinfo=UTC))
    _pay(postpaid_tou.postpaid_tenancy, 1000)
    admin = get_user_model().objects.create_superuser("root_alloc", password="pw")
    client.force_login(admin)
    page = client.get(f"/admin/payments/invoice/{january.pk}/change/")
    assert page.status_code == 200
    assert "payments applied" in page.content.decode().lower()
