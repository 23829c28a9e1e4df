"""Arrears ageing: the pure bucketing, and a landlord's bills read through the selector."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from payments import allocation
from payments.arrears import (
    BUCKET_KEYS,
    BillDue,
    arrears_age,
    bucket_days,
    bucket_for,
    landlord_arrears,
    outstanding_bills,
)
from payments.models import Invoice

from .test_billing import _pay

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
TODAY = date(2026, 3, 31)


def _bill(pk: int, tenancy: int, days_late: int, owed: int, currency: str = "GBP") -> BillDue:
    return BillDue(
        invoice_id=pk,
        tenancy_id=tenancy,
        currency=currency,
        due_date=TODAY - timedelta(days=days_late),
        tz="Europe/London",
        outstanding_minor=owed,
    )


def test_bucket_edges():
    assert [bucket_for(d) for d in (-3, 0)] == [None, None]  # not late yet
    assert [bucket_for(d) for d in (1, 15)] == ["1-15", "1-15"]
    assert [bucket_for(d) for d in (16, 30)] == ["16-30", "16-30"]
    assert [bucket_for(d) for d in (31, 60)] == ["31-60", "31-60"]
    assert [bucket_for(d) for d in (61, 4000)] == ["60+", "60+"]
    assert bucket_days("16-30") == (16, 30) and bucket_days("60+") == (61, None)


def test_ageing_per_tenancy_and_in_total():
    bills = [
        _bill(1, 10, 5, 1000),
        _bill(2, 10, 40, 250),
        _bill(3, 10, 0, 999),  # due today: not late
        _bill(4, 11, 12, 300),
        _bill(5, 11, 90, 0),  # paid
        _bill(6, 12, 61, 700, "EUR"),
    ]
    ageing = arrears_age(bills=bills, now=NOW)
    rows = {row.tenancy_id: row for row in ageing.tenancies}
    assert rows[10].buckets == {"1-15": 1000, "16-30": 0, "31-60": 250, "60+": 0}
    assert rows[10].total_minor == 1250 and rows[10].oldest_bucket == "31-60"
    assert rows[10].invoice_ids == [1, 2]
    assert rows[11].buckets["1-15"] == 300 and rows[11].total_minor == 300
    assert rows[12].currency == "EUR" and rows[12].buckets["60+"] == 700
    assert ageing.totals == {
        "1-15": {"GBP": 1300},
        "16-30": {},
        "31-60": {"GBP": 250},
        "60+": {"EUR": 700},
    }
    assert ageing.counts == {"1-15": 2, "16-30": 0, "31-60": 1, "60+": 1}
    assert ageing.invoice_ids["1-15"] == [1, 4]
    assert ageing.total == {"GBP": 1550, "EUR": 700}


def test_the_due_date_is_a_local_day():
    # 22:30 UTC on 31 March is already 1 April in Auckland: a bill due on
    # 31 March is one day late there, not yet in London.
    late_evening = datetime(2026, 3, 31, 22, 30, tzinfo=UTC)
    london = _bill(1, 1, 0, 100)
    auckland = BillDue(2, 2, "NZD", TODAY, "Pacific/Auckland", 100)
    ageing = arrears_age(bills=[london, auckland], now=late_evening)
    assert [row.tenancy_id for row in ageing.tenancies] == [2]


@given(
    st.lists(
        st.tuples(
            st.integers(1, 5),
            st.integers(-10, 400),
            st.integers(-500, 10_000),
            st.sampled_from("AB"),
        ),
        max_size=30,
    )
)
def test_every_late_amount_is_counted_once(items):
    bills = [
        _bill(i, tenancy, late, owed, currency)
        for i, (tenancy, late, owed, currency) in enumerate(items)
    ]
    ageing = arrears_age(bills=bills, now=NOW)
    late = [
        b
        for b in bills
        if b.outstanding_minor > 0 and bucket_for(TODAY.toordinal() - b.due_date.toordinal())
    ]
    for currency in "AB":
        expected = sum(b.outstanding_minor for b in late if b.currency == currency)
        assert ageing.total.get(currency, 0) == expected
        assert expected == sum(
            row.total_minor for row in ageing.tenancies if row.currency == currency
        )
    assert sorted(i for key in BUCKET_KEYS for i in ageing.invoice_ids[key]) == sorted(
        b.invoice_id for b in late
    )


# --- from the database ------------------------------------------------------------------


def _invoice(tenancy, start: date, total: int, due: date | None) -> Invoice:
    return Invoice.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        period_start=start,
        period_end=start + timedelta(days=28),
        currency="GBP",
        total_minor=total,
        due_date=due,
    )


def test_selector_reads_what_is_outstanding_after_payments(personas):
    # given: three bills of the postpaid tenancy, 40, 20 and 3 days late, and one without a due date
    world = personas.a
    tenancy = world.postpaid_tenancy
    today = date.today()
    old = _invoice(tenancy, date(2025, 1, 1), 1000, today - timedelta(days=40))
    mid = _invoice(tenancy, date(2025, 2, 1), 800, today - timedelta(days=20))
    new = _invoice(tenancy, date(2025, 3, 1), 500, today - timedelta(days=3))
    _invoice(tenancy, date(2024, 12, 1), 400, None)
    # and another landlord's late bill
    _invoice(personas.b.postpaid_tenancy, date(2025, 1, 1), 900, today - timedelta(days=40))
    # when: a payment pays the oldest bill (no due date: 400) and part of the next
    _pay(tenancy, 1100)
    # then: the outstanding amounts are those of invoice_outstanding_minor
    bills = outstanding_bills(landlord_id=world.landlord.pk)
    assert {b.invoice_id: b.outstanding_minor for b in bills} == {
        inv.pk: allocation.invoice_outstanding_minor(invoice=inv) for inv in (old, mid, new)
    }
    assert allocation.invoice_outstanding_minor(invoice=old) == 300
    ageing = landlord_arrears(landlord_id=world.landlord.pk)
    [row] = ageing.tenancies
    assert row.tenancy_id == tenancy.pk
    assert row.buckets == {"1-15": 500, "16-30": 800, "31-60": 300, "60+": 0}
    assert ageing.total == {"GBP": 1600}


def test_a_paid_bill_is_not_in_arrears(personas):
    tenancy = personas.a.postpaid_tenancy
    _invoice(tenancy, date(2025, 1, 1), 1000, date.today() - timedelta(days=70))
    _pay(tenancy, 1000)
    assert outstanding_bills(landlord_id=personas.a.landlord.pk) == []
    assert landlord_arrears(landlord_id=personas.a.landlord.pk).tenancies == []
