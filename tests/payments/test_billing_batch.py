"""The billing run issues bills in batches (``payments.billing.invoices_issue``): a
batch must give every tenancy exactly the bill, ledger postings and allocations it
gets when issued alone (``invoice_issue``), whatever the batch size or order."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from landlord.models import Tenancy, Unit
from payments import billing, late_fees, rating, tariffs
from payments.errors import BillingError
from payments.ledger import ledger_verify
from payments.models import (
    Account,
    BillAllocation,
    Invoice,
    LedgerTransaction,
    Tariff,
)

from .test_billing import _pay, _record
from .test_postpaid_switch import _switch_after_prepaid_use

DEC = datetime(2025, 12, 14, tzinfo=UTC)
JAN = datetime(2026, 1, 14, tzinfo=UTC)
BILLED = datetime(2026, 2, 1, 9, tzinfo=UTC)


def _tou(world) -> Tariff:
    """Tiers, a night band, a standing charge and added tax."""
    tariff = Tariff.objects.create(landlord=world.landlord, name="Night saver", currency="GBP")
    tariffs.tariff_version_create(
        tariff=tariff,
        valid_from=date(2020, 1, 1),
        rates=[("", 0, Decimal("20")), ("", 2000, Decimal("30")), ("night", 0, Decimal("10"))],
        windows=(("night", "all", 0, 7),),
        standing_charge_per_day_minor=Decimal("50"),
        tax_percent=Decimal("5"),
        tax_inclusive=False,
    )
    return tariff


def _tiered(world) -> Tariff:
    """Two tiers, prices including tax, a standing charge with a fraction."""
    tariff = Tariff.objects.create(landlord=world.landlord, name="Tiers", currency="GBP")
    tariffs.tariff_version_create(
        tariff=tariff,
        valid_from=date(2020, 1, 1),
        rates=[("", 0, Decimal("24.5")), ("", 1500, Decimal("29.75"))],
        standing_charge_per_day_minor=Decimal("45.5"),
        tax_percent=Decimal("5"),
        tax_inclusive=True,
    )
    return tariff


def _estate(personas, settings) -> list[Tenancy]:
    """Four postpaid tenancies, each billed for January 2026 in its own way:

    - a's postpaid unit (time of use, tiers, added tax): billed for December,
      whose energy was priced in part after that bill (an adjustment line), a
      late fee on the December bill, a partial payment;
    - a's prepaid unit, switched to postpaid on 10 January (flat with a standing
      charge): its first bill starts at the switch;
    - b's postpaid unit (Berlin, tiers, tax included) from 15 January: a
      pro-rated first cycle, its usage still pending (not posted) at billing;
    - a second unit of b's on the same tariff, whose standing charges were
      already posted through January.
    """
    a, b = personas.a, personas.b
    # a, postpaid
    a.postpaid.tariff = _tou(a)
    a.postpaid.save()
    a.postpaid_tenancy.start_date = date(2025, 12, 1)
    a.postpaid_tenancy.save()
    dev = a.postpaid_device.device
    _record(dev, (1, 0, 0), (2, 420, 1000), (3, 720, 1500), (4, 730, 3500), base=DEC)
    december = billing.invoice_issue(
        tenancy=a.postpaid_tenancy,
        period_start=date(2025, 12, 1),
        now=datetime(2026, 1, 1, 9, tzinfo=UTC),
    )
    assert december.held_wh > 0  # the gap in the night is priced only later
    _record(dev, *[(10 + i, 10 * i, 1000 * i // 42) for i in range(1, 42)], base=DEC)
    _record(dev, (100, 0, 3500), (101, 120, 4500), (102, 720, 7500), base=JAN)
    a.prop.late_fee_grace_days = 3
    a.prop.late_fee_fixed_minor = 500
    a.prop.late_fee_percent = Decimal("10")
    a.prop.late_fee_cap_minor = 550
    a.prop.save()
    assert late_fees.late_fee_post(invoice_id=december.pk, now=datetime(2026, 1, 25, tzinfo=UTC))
    _pay(a.postpaid_tenancy, 700)
    # a, prepaid switched to postpaid
    _switch_after_prepaid_use(a, 1000)
    # b, postpaid from 15 January in Berlin, usage left pending until billed
    b.prop.timezone = "Europe/Berlin"
    b.prop.save()
    b.postpaid.tariff = _tiered(b)
    b.postpaid.save()
    b.postpaid_tenancy.start_date = date(2026, 1, 15)
    b.postpaid_tenancy.save()
    settings.SUBMETER = {**settings.SUBMETER, "DEBIT_WINDOW_SECONDS": 10**9}
    dev = b.postpaid_device.device
    _record(dev, (1, 0, 0), (2, 60, 900), (3, 600, 2600), base=datetime(2026, 1, 20, tzinfo=UTC))
    settings.SUBMETER = {**settings.SUBMETER, "DEBIT_WINDOW_SECONDS": 900}
    # b, a second postpaid unit whose standing charges the sweep already posted
    unit = Unit.objects.create(
        landlord=b.landlord,
        property=b.prop,
        name="Second flat",
        billing_mode=Unit.BillingMode.POSTPAID,
        tariff=b.postpaid.tariff,
    )
    second = Tenancy.objects.create(
        landlord=b.landlord, unit=unit, tenant=b.prepaid_tenant, start_date=date(2026, 1, 1)
    )
    billing.standing_charges_post(tenancy=second, through=date(2026, 1, 31))
    return [a.postpaid_tenancy, a.prepaid_tenancy, b.postpaid_tenancy, second]


def _snapshot(after_txn: int) -> dict:
    """The bills, the ledger postings since ``after_txn``, balances and allocations,
    keyed by what both runs share (not by the primary keys they allocate)."""

    def account(acc: Account) -> tuple:
        return (acc.landlord_id, acc.kind, acc.tenancy_id, acc.currency)

    invoices = {}
    keys = {i.pk: (i.tenancy_id, i.period_start) for i in Invoice.objects.all()}
    for inv in Invoice.objects.prefetch_related("lines"):
        invoices[keys[inv.pk]] = (
            inv.period_end,
            inv.currency,
            inv.issued_at,
            inv.due_date,
            inv.energy_wh,
            inv.net_minor,
            inv.tax_minor,
            inv.total_minor,
            inv.tax_inclusive,
            inv.held_wh,
            inv.held_reason,
            inv.billed_through,
            inv.late_fee_minor,
            keys.get(inv.late_fee_billed_on_id or 0),
            [
                (
                    line.position,
                    line.kind,
                    line.description,
                    line.quantity,
                    line.unit_price,
                    line.amount_minor,
                )
                for line in inv.lines.order_by("position")
            ],
        )
    postings = sorted(
        (
            txn.kind,
            txn.idempotency_key,
            txn.memo,
            tuple(
                sorted(
                    (account(p.debit), account(p.credit), p.amount_minor)
                    for p in txn.postings.select_related("debit", "credit")
                )
            ),
        )
        for txn in LedgerTransaction.objects.filter(pk__gt=after_txn)
    )
    balances = sorted((account(acc), acc.balance_minor) for acc in Account.objects.all())
    allocations = sorted(
        (keys[a.invoice_id], a.payment_id, a.amount_minor) for a in BillAllocation.objects.all()
    )
    return {
        "invoices": invoices,
        "postings": postings,
        "balances": balances,
        "allocations": allocations,
    }


def _alone(tenancies: list[Tenancy]) -> None:
    for tenancy in tenancies:
        with contextlib.suppress(BillingError, rating.Unpriceable):
            billing.invoice_issue(tenancy=tenancy, period_start=date(2026, 1, 1), now=BILLED)


def _single_then_rewind(tenancies: list[Tenancy], after_txn: int) -> dict:
    """The bills issued one by one, then undone (a savepoint) for the batch to issue."""
    rewind = transaction.savepoint_create()
    _alone(tenancies)
    assert ledger_verify() == []
    alone = _snapshot(after_txn)
    transaction.savepoint_rollback(rewind)
    return alone


def _last_txn() -> int:
    return LedgerTransaction.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


@pytest.mark.parametrize("batch", [1, 2, 1000])
def test_a_batch_issues_the_same_bills_postings_and_allocations_as_one_at_a_time(
    personas, settings, batch
):
    # given
    tenancies = _estate(personas, settings)
    mark = _last_txn()
    alone = _single_then_rewind(tenancies, mark)
    # when
    issued = billing.invoices_issue_due(now=BILLED, batch=batch)
    # then
    assert sorted((i.tenancy_id, i.period_start) for i in issued) == sorted(
        (t.pk, date(2026, 1, 1)) for t in tenancies
    )
    assert ledger_verify() == []
    assert _snapshot(mark) == alone
    # the estate shows what it was built for
    kinds = {
        t: [line[1] for line in bill[-1]]
        for (t, start), bill in alone["invoices"].items()
        if start == date(2026, 1, 1)
    }
    a, b = personas.a, personas.b
    assert "adjustment" in kinds[a.postpaid_tenancy.pk] and "fee" in kinds[a.postpaid_tenancy.pk]
    assert "tax" in kinds[a.postpaid_tenancy.pk]
    standing = {
        t: [line[3] for line in bill[-1] if line[1] == "standing"]
        for (t, start), bill in alone["invoices"].items()
        if start == date(2026, 1, 1)
    }
    assert standing[b.postpaid_tenancy.pk] == ["17 days"]  # from 15 January
    assert standing[a.prepaid_tenancy.pk] == ["21 days"]  # from the day after the switch
    assert any(key.startswith("meter-usage:") for _, key, _, _ in alone["postings"])
    assert any(key.startswith("standing:") for _, key, _, _ in alone["postings"])
    # and a second run issues nothing again
    assert billing.invoices_issue_due(now=BILLED, batch=batch) == []
    assert _snapshot(mark) == alone


def test_a_batch_in_any_order_gives_each_tenancy_its_own_bill(personas, settings):
    tenancies = _estate(personas, settings)
    mark = _last_txn()
    alone = _single_then_rewind(tenancies, mark)
    due = [billing.BillDue(t, date(2026, 1, 1)) for t in reversed(tenancies)]
    results = billing.invoices_issue(due=due, now=BILLED)
    assert [r.tenancy_id for r in results if isinstance(r, Invoice)] == [
        t.pk for t in reversed(tenancies)
    ]
    assert _snapshot(mark) == alone
    # issued again: the same invoices back, nothing written
    again = billing.invoices_issue(due=due, now=BILLED)
    assert [r.pk for r in again if isinstance(r, Invoice)] == [
        r.pk for r in results if isinstance(r, Invoice)
    ]
    assert _snapshot(mark) == alone


def test_a_batch_reports_what_cannot_be_billed_and_issues_the_rest(personas, settings):
    tenancies = _estate(personas, settings)
    open_cycle = billing.BillDue(tenancies[0], date(2026, 2, 1))
    rest = [billing.BillDue(t, date(2026, 1, 1)) for t in tenancies[1:]]
    results = billing.invoices_issue(due=[open_cycle, *rest], now=BILLED)
    assert isinstance(results[0], BillingError)
    assert all(isinstance(r, Invoice) for r in results[1:])
    with pytest.raises(ValueError, match="one bill per tenancy"):
        billing.invoices_issue(due=[*rest, rest[0]], now=BILLED)
    assert ledger_verify() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (real concurrent writers)"
)
def test_two_billing_runs_at_once_issue_each_bill_once(tpersonas):
    # given two postpaid tenancies with January usage (2 kWh) and 31 days at 10p
    for world, price in ((tpersonas.a, "30"), (tpersonas.b, "20")):
        world.postpaid.tariff = Tariff.objects.create_flat(
            landlord=world.landlord,
            name="With standing charge",
            price_per_kwh_minor=price,
            standing_charge_per_day_minor="10",
        )
        world.postpaid.save()
        world.postpaid_tenancy.start_date = date(2026, 1, 1)
        world.postpaid_tenancy.save()
        _record(world.postpaid_device.device, (1, 0, 0), (2, 60, 2000), base=JAN)
    # when two runs issue them at once, one bill per batch
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            billing.invoices_issue_due(now=BILLED, batch=1)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # then each bill exists once, with its lines once, and the ledger is exact
    assert errors == []
    bills = Invoice.objects.filter(period_start=date(2026, 1, 1))
    assert sorted(bills.values_list("tenancy_id", flat=True)) == sorted(
        [tpersonas.a.postpaid_tenancy.pk, tpersonas.b.postpaid_tenancy.pk]
    )
    for bill in bills:
        positions = list(bill.lines.values_list("position", flat=True))
        assert positions == sorted(set(positions))
        assert (
            bill.total_minor
            == (60 if bill.tenancy_id == tpersonas.a.postpaid_tenancy.pk else 40) + 310
        )
    assert ledger_verify() == []
