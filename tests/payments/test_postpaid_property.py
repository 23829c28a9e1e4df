"""Property: any interleaving of usage, bills, payments, late fees and refunds keeps the bills'
allocations exact (docs/billing.md, "Payments applied to bills").

The invariant, per tenancy, with ``received`` read from the ledger (the tenant
account's payment, refund and chargeback postings) and ``billed`` the sum of
the bills' totals:

    sum of bills' outstanding = max(0, billed - received)
    credit carried            = max(0, received - billed)

and ``ledger_verify()`` (which checks every allocation against its bill and
payment) stays clean. Late fees count as billed once the next bill shows them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from payments import allocation, billing
from payments.billing import cycle_bounds
from payments.late_fees import late_fees_post_due
from payments.ledger import ledger_verify, tenant_account
from payments.models import Invoice, LedgerTransaction, Payment, Posting, Refund
from payments.services import refund_transition, refundable_minor

from .test_billing import _pay, _record


class _Rollback(Exception):
    pass


MONEY_KINDS = [
    LedgerTransaction.Kind.PAYMENT,
    LedgerTransaction.Kind.REFUND,
    LedgerTransaction.Kind.CHARGEBACK,
]


# An explicit example that reaches every kind of step, a late fee included.
EVERY_KIND = [
    ("use", 1500),
    ("wait", 20),
    ("bill", 0),
    ("pay", 100),
    ("wait", 20),
    ("late_fees", 0),
    ("wait", 20),
    ("bill", 0),
    ("pay", 4000),
    ("refund", 50),
    ("refund_fails", 0),
    ("wait", 20),
    ("bill", 0),
]


def _received(tenancy) -> int:
    account = tenant_account(tenancy=tenancy)
    money = Posting.objects.filter(transaction__kind__in=MONEY_KINDS)
    credit = money.filter(credit=account).aggregate(s=Sum("amount_minor"))["s"] or 0
    debit = money.filter(debit=account).aggregate(s=Sum("amount_minor"))["s"] or 0
    return credit - debit


def _check(tenancy) -> None:
    invoices = list(Invoice.objects.filter(tenancy=tenancy))
    billed = sum(max(i.total_minor, 0) for i in invoices)
    outstanding = sum(allocation.invoice_outstanding_minor(invoice=i) for i in invoices)
    received = _received(tenancy)
    assert all(allocation.invoice_outstanding_minor(invoice=i) >= 0 for i in invoices)
    assert outstanding == max(0, billed - received)
    assert allocation.tenancy_credit_minor(tenancy_id=tenancy.pk) == max(0, received - billed)
    assert ledger_verify() == []


def _bill_closed_cycles(tenancy, cycle_day: int, now: datetime) -> None:
    start, _ = cycle_bounds(tenancy.start_date, cycle_day)
    today = now.date()
    while cycle_bounds(start, cycle_day)[1] <= today:
        billing.invoice_issue(tenancy=tenancy, period_start=start, now=now)
        start = cycle_bounds(start, cycle_day)[1]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("use"), st.integers(1, 4000)),
        st.tuples(st.just("wait"), st.integers(1, 20)),
        st.tuples(st.just("bill"), st.just(0)),
        st.tuples(st.just("pay"), st.integers(100, 4000)),
        st.tuples(st.just("refund"), st.integers(1, 100)),
        st.tuples(st.just("refund_fails"), st.just(0)),
        st.tuples(st.just("late_fees"), st.just(0)),
    ),
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cycle_day=st.sampled_from([1, 15, 28]), ops=operations)
@example(cycle_day=15, ops=EVERY_KIND)
def test_property_bills_outstanding_match_what_was_billed_less_received(
    postpaid_tou, cycle_day, ops
):
    world = postpaid_tou
    tenancy = world.postpaid_tenancy
    dev = world.postpaid_device.device
    try:
        with transaction.atomic():
            world.prop.bill_cycle_day = cycle_day
            world.prop.late_fee_grace_days = 2
            world.prop.late_fee_fixed_minor = 300
            world.prop.late_fee_percent = Decimal("5")
            world.prop.late_fee_cap_minor = 400
            world.prop.save()
            tenancy.start_date = date(2026, 1, 10)
            tenancy.save()
            clock = datetime(2026, 1, 10, 0, 30, tzinfo=UTC)
            seq, register = 1, 0
            _record(dev, (seq, 0, register), base=clock)
            for kind, value in ops:
                if kind == "use":
                    clock += timedelta(minutes=30)
                    seq, register = seq + 1, register + value
                    _record(dev, (seq, 0, register), base=clock)
                elif kind == "wait":
                    clock += timedelta(days=value)
                elif kind == "bill":
                    _bill_closed_cycles(tenancy, cycle_day, clock)
                elif kind == "late_fees":
                    late_fees_post_due(now=clock)
                elif kind == "pay":
                    _pay(tenancy, value)
                elif kind == "refund":
                    payment = (
                        Payment.objects.filter(tenancy=tenancy, status="succeeded")
                        .order_by("-pk")
                        .first()
                    )
                    if payment is not None and refundable_minor(payment=payment) > 0:
                        amount = max(1, refundable_minor(payment=payment) * value // 100)
                        refund = Refund.objects.create(
                            landlord_id=payment.landlord_id,
                            payment=payment,
                            amount_minor=amount,
                            reason="test",
                        )
                        refund_transition(refund=refund, status=Refund.Status.SUCCEEDED)
                else:
                    succeeded = (
                        Refund.objects.filter(Q(status=Refund.Status.SUCCEEDED))
                        .order_by("pk")
                        .first()
                    )
                    if succeeded is not None:
                        refund_transition(refund=succeeded, status=Refund.Status.FAILED)
                _check(tenancy)
            if ops == EVERY_KIND:  # not a generated list that merely looks like it
                assert LedgerTransaction.objects.filter(kind="late_fee").exists()
                assert Refund.objects.filter(status=Refund.Status.FAILED).exists()
                assert Invoice.objects.filter(late_fee_billed_on__isnull=False).exists()
            raise _Rollback
    except _Rollback:
        pass
