"""A unit switched from prepaid to postpaid: its first bill starts at the switch, and
only the credit left then (or the debt) meets the bills (docs/billing.md,
"Switching a unit to postpaid")."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.db.models import Sum
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from landlord import people
from payments import allocation, billing
from payments.errors import BillingError
from payments.ledger import ledger_verify, tenant_account
from payments.models import (
    BillingState,
    Invoice,
    LedgerTransaction,
    Payment,
    Posting,
    Refund,
    Tariff,
)
from payments.services import refund_transition, refundable_minor

from .test_billing import _pay, _record

SWITCH = datetime(2026, 1, 10, 12, tzinfo=UTC)  # London: UTC in January
BILLED = datetime(2026, 2, 1, 9, tzinfo=UTC)


def _prepaid_from_new_year(world) -> None:
    """30p a kWh and 10p a day, the tenancy from 1 Jan 2026."""
    world.prepaid.tariff = Tariff.objects.create_flat(
        landlord=world.landlord,
        name="With standing charge",
        price_per_kwh_minor="30",
        standing_charge_per_day_minor="10",
    )
    world.prepaid.save()
    world.prepaid_tenancy.start_date = date(2026, 1, 1)
    world.prepaid_tenancy.save()


def _switch(world, now: datetime) -> None:
    people.unit_billing_mode_switch(
        unit=world.prepaid, mode="postpaid", confirmed=False, actor_id=None, now=now
    )
    world.prepaid.refresh_from_db()


def _balance(world) -> int:
    return tenant_account(tenancy=world.prepaid_tenancy).balance_minor


def _switch_after_prepaid_use(world, topup: int) -> None:
    """``topup`` paid, 5 kWh (150p) used on 10 Jan, switched at noon (10 days of
    standing charge, 100p, posted by then)."""
    _prepaid_from_new_year(world)
    dev = world.prepaid_device.device
    _pay(world.prepaid_tenancy, topup)
    _record(dev, (1, 0, 0), (2, 60, 5000), base=datetime(2026, 1, 10, 1, tzinfo=UTC))
    _switch(world, SWITCH)
    assert _balance(world) == topup - 150 - 100
    # 2 kWh (60p) on 20 Jan, postpaid
    _record(dev, (3, 0, 5000), (4, 60, 7000), base=datetime(2026, 1, 20, 1, tzinfo=UTC))


def _january(world) -> Invoice:
    return billing.invoice_issue(
        tenancy=world.prepaid_tenancy, period_start=date(2026, 1, 1), now=BILLED
    )


def _outstanding(invoice: Invoice) -> int:
    invoice.refresh_from_db()
    return allocation.invoice_outstanding_minor(invoice=invoice)


def test_the_first_bill_after_the_switch_charges_only_what_came_after_it(personas):
    world = personas.a
    _switch_after_prepaid_use(world, topup=300)
    january = _january(world)
    lines = [(line.kind, line.quantity, line.amount_minor) for line in january.lines.all()]
    # the 5 kWh and the ten days paid from credit are not on it
    assert lines == [("energy", "2.000 kWh", 60), ("standing", "21 days", 210)]
    assert january.total_minor == 270
    assert _balance(world) == 50 - 270
    # the 50p of credit left at the switch pays part of it, not the whole 300p top-up
    assert _outstanding(january) == 220
    assert allocation.tenancy_credit_minor(tenancy_id=world.prepaid_tenancy.pk) == 0
    _pay(world.prepaid_tenancy, 100)
    assert _outstanding(january) == 120 == -_balance(world)
    _pay(world.prepaid_tenancy, 200)
    assert _outstanding(january) == 0
    assert allocation.tenancy_credit_minor(tenancy_id=world.prepaid_tenancy.pk) == 80
    assert _balance(world) == 80
    assert ledger_verify() == []


def test_a_debt_left_at_the_switch_is_paid_before_the_bills(personas):
    world = personas.a
    _switch_after_prepaid_use(world, topup=100)  # 150p owed at the switch
    tenancy_id = world.prepaid_tenancy.pk
    assert allocation.tenancy_carried_debt_minor(tenancy_id=tenancy_id) == 150
    january = _january(world)
    assert january.total_minor == 270
    assert _outstanding(january) == 270
    _pay(world.prepaid_tenancy, 200)
    # 150p pays the carried debt, 50p the bill
    assert allocation.tenancy_carried_debt_minor(tenancy_id=tenancy_id) == 0
    assert _outstanding(january) == 220 == -_balance(world)
    assert ledger_verify() == []


def test_the_cycle_before_the_switch_is_never_billed(personas):
    world = personas.a
    _prepaid_from_new_year(world)
    world.prepaid_tenancy.start_date = date(2025, 12, 1)
    world.prepaid_tenancy.save()
    _switch(world, SWITCH)
    # December was prepaid throughout: the sweep's bill for it is refused
    assert billing.invoices_issue_due(now=datetime(2026, 1, 11, 9, tzinfo=UTC)) == []
    assert not Invoice.objects.filter(tenancy=world.prepaid_tenancy).exists()
    january = _january(world)
    assert [(line.kind, line.quantity) for line in january.lines.all()] == [("standing", "21 days")]
    assert ledger_verify() == []


def test_energy_of_the_half_hour_in_progress_at_the_switch_reaches_the_bill(personas):
    world = personas.a
    _prepaid_from_new_year(world)
    dev = world.prepaid_device.device
    _pay(world.prepaid_tenancy, 1000)
    # 11:50 to 12:00: 1 kWh before the switch at 12:10
    _record(dev, (1, 0, 0), (2, 10, 1000), base=datetime(2026, 1, 10, 11, 50, tzinfo=UTC))
    switch_at = datetime(2026, 1, 10, 12, 10, tzinfo=UTC)
    _switch(world, switch_at)
    opening = _balance(world)
    # 12:00 to 12:20: 1 kWh more, half of it after the switch, in the slot that began before it
    _record(dev, (3, 30, 2000), base=datetime(2026, 1, 10, 11, 50, tzinfo=UTC))
    january = _january(world)
    # whatever was posted after the switch is on the bill, to the penny
    assert _balance(world) == opening - january.total_minor
    lines = {line.kind: line.amount_minor for line in january.lines.all()}
    assert lines["standing"] == 210
    assert sum(lines.values()) == january.total_minor
    assert ledger_verify() == []


def test_the_bill_page_says_when_the_unit_turned_postpaid_and_what_is_still_owed(personas, client):
    world = personas.a
    _switch_after_prepaid_use(world, topup=100)
    january = _january(world)
    client.force_login(world.prepaid_tenant)
    body = client.get(f"/payments/invoices/{january.pk}/").content.decode()
    assert "Postpaid from 10 Jan 2026 12:00" in body
    assert 'data-testid="invoice-carried-debt">£1.50 is still owed' in body
    _pay(world.prepaid_tenancy, 150)
    body = client.get(f"/payments/invoices/{january.pk}/").content.decode()
    assert "invoice-carried-debt" not in body
    assert 'data-testid="invoice-outstanding">£2.70' in body


# --- property: any prepaid history, then a switch, then postpaid -------------------------

MONEY_KINDS = [
    LedgerTransaction.Kind.PAYMENT,
    LedgerTransaction.Kind.REFUND,
    LedgerTransaction.Kind.CHARGEBACK,
]


class _Rollback(Exception):
    pass


def _available(tenancy, opening: int, after_transaction: int) -> int:
    """The balance at the switch plus the money in and out of the tenant's account
    since (payments, refunds, chargebacks), read from the ledger."""
    account = tenant_account(tenancy=tenancy)
    money = Posting.objects.filter(
        transaction__kind__in=MONEY_KINDS, transaction_id__gt=after_transaction
    )
    credit = money.filter(credit=account).aggregate(s=Sum("amount_minor"))["s"] or 0
    debit = money.filter(debit=account).aggregate(s=Sum("amount_minor"))["s"] or 0
    return opening + credit - debit


def _check_since_switch(tenancy) -> None:
    state = BillingState.objects.get(tenancy=tenancy)
    bills = list(Invoice.objects.filter(tenancy=tenancy, pk__gt=state.postpaid_after_invoice))
    billed = sum(max(i.total_minor, 0) for i in bills)
    outstanding = sum(allocation.invoice_outstanding_minor(invoice=i) for i in bills)
    debt = allocation.tenancy_carried_debt_minor(tenancy_id=tenancy.pk)
    available = _available(
        tenancy, state.postpaid_opening_minor, state.postpaid_after_transaction or 0
    )
    assert outstanding + debt == max(0, billed - available)
    assert allocation.tenancy_credit_minor(tenancy_id=tenancy.pk) == max(0, available - billed)
    assert ledger_verify() == []


def _refund_some(tenancy, pick: int, percent: int) -> None:
    payments = list(Payment.objects.filter(tenancy=tenancy, status="succeeded").order_by("pk"))
    if not payments:
        return
    payment = payments[pick % len(payments)]
    if refundable_minor(payment=payment) > 0:
        amount = max(1, refundable_minor(payment=payment) * percent // 100)
        refund = Refund.objects.create(
            landlord_id=payment.landlord_id, payment=payment, amount_minor=amount, reason="test"
        )
        refund_transition(refund=refund, status=Refund.Status.SUCCEEDED)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("use"), st.integers(1, 4000)),
        st.tuples(st.just("wait"), st.integers(1, 20)),
        st.tuples(st.just("pay"), st.integers(100, 3000)),
        st.tuples(st.just("refund"), st.integers(0, 5), st.integers(1, 100)),
    ),
    max_size=8,
)
postpaid_steps = st.lists(
    st.one_of(
        st.tuples(st.just("use"), st.integers(1, 4000)),
        st.tuples(st.just("wait"), st.integers(1, 20)),
        st.tuples(st.just("bill")),
        st.tuples(st.just("pay"), st.integers(100, 3000)),
        st.tuples(st.just("refund"), st.integers(0, 5), st.integers(1, 100)),
        st.tuples(st.just("refund_fails")),
    ),
    max_size=15,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=steps, after=postpaid_steps)
@example(
    before=[("pay", 300), ("use", 2000), ("refund", 0, 50)],
    after=[("pay", 100), ("refund", 0, 100), ("wait", 20), ("bill",), ("pay", 200)],
)
def test_property_bills_since_the_switch_meet_only_what_was_left_and_paid_since(
    personas, before, after
):
    world = personas.a
    tenancy = world.prepaid_tenancy
    dev = world.prepaid_device.device
    try:
        with transaction.atomic():
            # the fixture's objects outlive each example's rollback
            world.prepaid.refresh_from_db()
            tenancy.refresh_from_db()
            _prepaid_from_new_year(world)
            clock = datetime(2026, 1, 3, 0, 30, tzinfo=UTC)
            seq, register = 1, 0
            _record(dev, (seq, 0, register), base=clock)
            for phase, ops in (("prepaid", before), ("postpaid", after)):
                for kind, *values in ops:
                    if kind == "use":
                        clock += timedelta(minutes=30)
                        seq, register = seq + 1, register + values[0]
                        _record(dev, (seq, 0, register), base=clock)
                    elif kind == "wait":
                        clock += timedelta(days=values[0])
                    elif kind == "bill":
                        start, _ = billing.cycle_bounds(date(2026, 1, 1))
                        while billing.cycle_bounds(start)[1] <= clock.date():
                            with contextlib.suppress(BillingError):
                                billing.invoice_issue(
                                    tenancy=tenancy, period_start=start, now=clock
                                )
                            start = billing.cycle_bounds(start)[1]
                    elif kind == "pay":
                        _pay(tenancy, values[0])
                    elif kind == "refund":
                        _refund_some(tenancy, *values)
                    else:
                        refund = Refund.objects.filter(status=Refund.Status.SUCCEEDED).first()
                        if refund is not None:
                            refund_transition(refund=refund, status=Refund.Status.FAILED)
                    if phase == "postpaid":
                        _check_since_switch(tenancy)
                if phase == "prepaid":
                    clock += timedelta(minutes=45)
                    _switch(world, clock)
                    tenancy.refresh_from_db()
                    _check_since_switch(tenancy)
            raise _Rollback
    except _Rollback:
        pass
