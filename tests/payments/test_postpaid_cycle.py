"""Postpaid billing cycles: a cycle day per property, pro-rated first and last
bills, due dates, and a cycle with a clock change inside it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from payments import billing
from payments.billing import BillingError, cycle_bounds
from payments.models import Invoice

from .test_billing import _record


@pytest.mark.parametrize(
    ("day", "cycle_day", "bounds"),
    [
        (date(2026, 1, 1), 1, (date(2026, 1, 1), date(2026, 2, 1))),
        (date(2026, 1, 31), 1, (date(2026, 1, 1), date(2026, 2, 1))),
        (date(2026, 1, 14), 15, (date(2025, 12, 15), date(2026, 1, 15))),
        (date(2026, 1, 15), 15, (date(2026, 1, 15), date(2026, 2, 15))),
        (date(2026, 12, 20), 15, (date(2026, 12, 15), date(2027, 1, 15))),
        (date(2026, 3, 1), 28, (date(2026, 2, 28), date(2026, 3, 28))),
        (date(2024, 2, 29), 28, (date(2024, 2, 28), date(2024, 3, 28))),
    ],
)
def test_cycle_bounds(day, cycle_day, bounds):
    assert cycle_bounds(day, cycle_day) == bounds
    assert billing.month_bounds(day) == cycle_bounds(day, 1)


def _cycle_on_15th(world, *, start: date, end: date | None) -> None:
    world.prop.bill_cycle_day = 15
    world.prop.bill_due_days = 10
    world.prop.save()
    world.postpaid_tenancy.start_date = start
    world.postpaid_tenancy.end_date = end
    world.postpaid_tenancy.save()


def _lines(invoice: Invoice) -> list[tuple[str, int]]:
    return [(line.kind, line.amount_minor) for line in invoice.lines.all()]


def test_first_and_last_cycles_are_pro_rated_by_days(postpaid_tou):
    # given: cycles from the 15th, a tenancy from 20 Jan to 4 Mar (inclusive);
    # the tariff charges 50p a day standing and adds 5% tax (52.5p a day)
    world = postpaid_tou
    _cycle_on_15th(world, start=date(2026, 1, 20), end=date(2026, 3, 4))
    tenancy = world.postpaid_tenancy
    # not before the cycle closes in the property's zone (London: GMT in February)
    assert billing.invoices_issue_due(now=datetime(2026, 2, 14, 23, 59, tzinfo=UTC)) == []
    with pytest.raises(BillingError, match="day 15"):
        billing.invoice_issue(
            tenancy=tenancy, period_start=date(2026, 1, 1), now=datetime(2026, 3, 1, tzinfo=UTC)
        )
    # when: the first cycle closes
    [first] = billing.invoices_issue_due(now=datetime(2026, 2, 15, 0, 5, tzinfo=UTC))
    # then: 20 Jan to 14 Feb is 26 days: 1300p standing + 65p tax
    assert (first.period_start, first.period_end) == (date(2026, 1, 15), date(2026, 2, 15))
    assert _lines(first) == [("standing", 1300), ("tax", 65)]
    assert first.total_minor == 1365
    assert first.due_date == date(2026, 2, 25)
    # the last cycle: 15 Feb to 4 Mar is 18 days, 900p + 45p tax, issued on 15 Mar
    billing.invoices_issue_due(now=datetime(2026, 3, 14, 12, tzinfo=UTC))
    assert Invoice.objects.count() == 1
    billing.invoices_issue_due(now=datetime(2026, 3, 15, 9, tzinfo=UTC))
    last = Invoice.objects.get(period_start=date(2026, 2, 15))
    assert (last.period_start, last.period_end) == (date(2026, 2, 15), date(2026, 3, 5))
    assert _lines(last) == [("standing", 900), ("tax", 45)]
    assert last.total_minor == 945
    assert last.due_date == date(2026, 3, 25)
    assert last.number != first.number
    # nothing after the tenancy ended
    assert billing.invoices_issue_due(now=datetime(2026, 4, 15, 9, tzinfo=UTC)) == []
    assert Invoice.objects.count() == 2


def test_a_clock_change_inside_a_cycle(postpaid_tou):
    # given: a cycle from 15 Mar to 15 Apr 2026 in London; clocks go forward on
    # 29 Mar, so the cycle ends at 14 Apr 23:00 UTC (midnight BST)
    world = postpaid_tou
    _cycle_on_15th(world, start=date(2026, 3, 15), end=None)
    dev = world.postpaid_device.device
    base = datetime(2026, 4, 14, 22, 0, tzinfo=UTC)
    # 1 kWh from 22:00 to 22:30 UTC (this cycle), 1 kWh from 23:00 to 23:30 UTC
    # (00:00-00:30 BST on 15 Apr: the next cycle, and night-time, 10p)
    _record(dev, (1, 0, 0), (2, 30, 1000), (3, 60, 1000), (4, 90, 2000), base=base)
    invoice = billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 3, 15),
        now=datetime(2026, 4, 14, 23, 0, tzinfo=UTC),
    )
    # then: 31 local days of standing charge (one of them 23 hours long) and the
    # first kWh only, at the day rate
    assert invoice.energy_wh == 1000
    assert _lines(invoice) == [
        ("energy", 20),
        ("standing", 1550),
        ("tax", 78),  # 5% of 1570p = 78.5p, rounded down
    ]
    # posted: 21p for the energy, 52.5p a day over 31 days (1627p, half a penny carried)
    assert invoice.total_minor == 21 + 1627
    assert invoice.due_date == date(2026, 4, 25)
    # one hour earlier the cycle is still open
    with pytest.raises(BillingError, match="still open"):
        billing.invoice_issue(
            tenancy=world.postpaid_tenancy,
            period_start=date(2026, 4, 15),
            now=datetime(2026, 4, 14, 23, 0, tzinfo=UTC),
        )


def test_calendar_month_stays_the_default(postpaid_tou):
    postpaid_tou.postpaid_tenancy.start_date = date(2026, 1, 1)
    postpaid_tou.postpaid_tenancy.save()
    [invoice] = billing.invoices_issue_due(now=datetime(2026, 2, 3, 9, tzinfo=UTC))
    assert (invoice.period_start, invoice.period_end) == (date(2026, 1, 1), date(2026, 2, 1))
    assert invoice.number.endswith("-202601")
    assert invoice.due_date == date(2026, 2, 17)
