"""Late fees: off by default; after the grace days, fixed plus a percentage of what
is still owed, capped, charged once through the ledger and shown on the next bill;
never on an amount in dispute."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from payments import billing, late_fees
from payments.late_fees import late_fee_amount, late_fees_post_due
from payments.ledger import tenant_account
from payments.models import Invoice, LedgerTransaction

from .test_billing import _pay


def test_late_fee_amount():
    ten = Decimal("10")
    # 500 + 62.8 rounded down
    assert late_fee_amount(owed_minor=628, fixed_minor=500, percent=ten, cap_minor=0) == 562
    assert late_fee_amount(owed_minor=628, fixed_minor=500, percent=ten, cap_minor=550) == 550
    assert late_fee_amount(owed_minor=0, fixed_minor=500, percent=ten, cap_minor=0) == 0
    assert late_fee_amount(owed_minor=999, fixed_minor=0, percent=Decimal("2.5"), cap_minor=0) == 24


def _january(world) -> Invoice:
    return billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        now=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )


def _charge_late_fees(world, *, grace=3, fixed=500, percent="10", cap=550) -> None:
    prop = world.prop
    prop.late_fee_grace_days = grace
    prop.late_fee_fixed_minor = fixed
    prop.late_fee_percent = Decimal(percent)
    prop.late_fee_cap_minor = cap
    prop.save()


def test_no_late_fee_by_default(postpaid_tou):
    _january(postpaid_tou)
    assert late_fees_post_due(now=datetime(2026, 3, 20, tzinfo=UTC)) == 0
    assert not LedgerTransaction.objects.filter(kind="late_fee").exists()


def test_late_fee_after_grace_capped_once_and_on_the_next_bill(postpaid_tou):
    # given: January's bill of 1628p, due 15 Feb, 1000p paid; 3 grace days;
    # 500p + 10% of what is owed, at most 550p
    world = postpaid_tou
    _charge_late_fees(world)
    january = _january(world)
    assert january.due_date == date(2026, 2, 15)
    _pay(world.postpaid_tenancy, 1000)
    balance = tenant_account(tenancy=world.postpaid_tenancy).balance_minor
    # within the grace days: nothing
    assert late_fees_post_due(now=datetime(2026, 2, 18, 23, tzinfo=UTC)) == 0
    # after them: 500p + 62p (10% of 628p) = 562p, capped at 550p
    assert late_fees_post_due(now=datetime(2026, 2, 19, 9, tzinfo=UTC)) == 1
    assert late_fees_post_due(now=datetime(2026, 2, 20, 9, tzinfo=UTC)) == 0
    january.refresh_from_db()
    assert january.late_fee_minor == 550
    [fee] = LedgerTransaction.objects.filter(kind="late_fee")
    assert fee.idempotency_key == f"late-fee:{january.pk}"
    assert tenant_account(tenancy=world.postpaid_tenancy).balance_minor == balance - 550
    # then: February's bill (1470p of standing) shows and charges it
    february = billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 2, 1),
        now=datetime(2026, 3, 1, 9, tzinfo=UTC),
    )
    fee_lines = [
        (line.description, line.amount_minor) for line in february.lines.filter(kind="fee")
    ]
    assert fee_lines == [(f"Late fee: bill {january.number} unpaid after its due date", 550)]
    assert february.total_minor == 1470 + 550
    january.refresh_from_db()
    assert january.late_fee_billed_on == february
    # a bill is charged one late fee only, whatever happens next
    assert late_fees_post_due(now=datetime(2026, 6, 1, tzinfo=UTC)) == 1  # February's own
    january.refresh_from_db()
    assert january.late_fee_minor == 550
    assert LedgerTransaction.objects.filter(kind="late_fee").count() == 2


def test_no_late_fee_on_a_paid_bill_or_on_an_amount_in_dispute(postpaid_tou, monkeypatch):
    world = postpaid_tou
    _charge_late_fees(world, cap=0)
    january = _january(world)
    _pay(world.postpaid_tenancy, 1000)
    # the 628p still owed is all disputed: no fee
    monkeypatch.setattr(late_fees, "amount_in_dispute", lambda invoice: 628)
    assert late_fees_post_due(now=datetime(2026, 2, 20, tzinfo=UTC)) == 0
    # 128p of it disputed: the fee is on the 500p not disputed
    monkeypatch.setattr(late_fees, "amount_in_dispute", lambda invoice: 128)
    assert late_fees_post_due(now=datetime(2026, 2, 20, tzinfo=UTC)) == 1
    january.refresh_from_db()
    assert january.late_fee_minor == 550  # 500p + 10% of 500p


def test_no_late_fee_when_paid_in_full(postpaid_tou):
    world = postpaid_tou
    _charge_late_fees(world)
    january = _january(world)
    _pay(world.postpaid_tenancy, january.total_minor)
    assert late_fees_post_due(now=datetime(2026, 2, 20, tzinfo=UTC)) == 0


def test_bill_pages_show_the_late_fee_payments_and_outstanding(postpaid_tou, personas, client):
    world = postpaid_tou
    _charge_late_fees(world)
    january = _january(world)
    _pay(world.postpaid_tenancy, 1000)
    late_fees_post_due(now=datetime(2026, 2, 19, 9, tzinfo=UTC))
    client.force_login(world.postpaid_tenant)
    page = client.get(f"/payments/invoices/{january.pk}/").content.decode()
    assert "A late fee of £5.50 was charged on 19 Feb 2026" in page
    assert "it will be on the next bill" in page
    assert 'data-testid="invoice-applied"' in page and "£10.00 of" not in page
    assert f'href="/payments/invoices/{january.pk}/print/"' in page
    printable = client.get(f"/payments/invoices/{january.pk}/print/")
    body = printable.content.decode()
    assert printable.status_code == 200
    assert "Due 15 Feb 2026" in body and 'data-testid="invoice-outstanding">£6.28' in body
    assert "Pay this bill" not in body and 'class="top"' not in body
    february = billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 2, 1),
        now=datetime(2026, 3, 1, 9, tzinfo=UTC),
    )
    page = client.get(f"/payments/invoices/{january.pk}/").content.decode()
    assert "it is on the bill for February 2026" in page
    page = client.get(f"/payments/invoices/{february.pk}/").content.decode()
    assert f"Late fee: bill {january.number} unpaid after its due date" in page
    for user, status in [
        (world.staff, 200),
        (personas.a.prepaid_tenant, 404),
        (personas.b.staff, 404),
        (personas.b.postpaid_tenant, 404),
    ]:
        client.force_login(user)
        assert client.get(f"/payments/invoices/{january.pk}/print/").status_code == status
