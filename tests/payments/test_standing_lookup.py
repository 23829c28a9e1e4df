"""A bill counts the standing charges the ledger posted for its days, once each,
found by their idempotency keys without sending one key per day."""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection
from django.db.models import F, Sum
from django.test.utils import CaptureQueriesContext

from payments import billing
from payments.ledger import landlord_account, tenant_account
from payments.models import Account, Invoice, LedgerTransaction, Posting

from .test_billing_batch import BILLED, _tiered

pytestmark = pytest.mark.django_db


def _standing_posted(tenancy, start: date, end: date) -> int:
    keys = [
        f"standing:{tenancy.pk}:{date.fromordinal(n)}"
        for n in range(start.toordinal(), end.toordinal())
    ]
    return Posting.objects.filter(
        transaction__kind=LedgerTransaction.Kind.STANDING, transaction__idempotency_key__in=keys
    ).aggregate(s=Sum("amount_minor"))["s"]


def _standing_estate(personas):
    """Two landlords' postpaid tenancies from 1 January, without usage, whose
    standing charges the sweep posted through 1 February."""
    tenancies = []
    for world in (personas.a, personas.b):
        world.postpaid.tariff = _tiered(world)
        world.postpaid.save()
        tenancy = world.postpaid_tenancy
        tenancy.start_date = date(2026, 1, 1)
        tenancy.save()
        billing.standing_charges_post(tenancy=tenancy, through=date(2026, 2, 1))
        tenancies.append(tenancy)
    return tenancies


def test_a_bill_counts_the_standing_charges_of_its_own_days_once(personas):
    # given: standing charges posted for January and 1 February on two tenancies
    tenancies = _standing_estate(personas)
    # when: January is billed
    billing.invoices_issue_due(now=BILLED)
    # then: each bill's total is its own January charges (no usage, no other day)
    for tenancy in tenancies:
        invoice = Invoice.objects.get(tenancy=tenancy, period_start=date(2026, 1, 1))
        january = _standing_posted(tenancy, date(2026, 1, 1), date(2026, 2, 1))
        assert january == 1410 or january == 1411  # 31 days at 45.5p
        assert invoice.total_minor == january


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_the_standing_lookup_sends_the_tenancies_not_a_key_per_day(personas):
    # given: the estate, and a long history of other standing charges
    _standing_estate(personas)
    world = personas.a
    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    revenue = landlord_account(
        landlord=world.landlord, kind=Account.Kind.REVENUE, currency=tenant.currency
    )
    history = LedgerTransaction.objects.bulk_create(
        LedgerTransaction(
            landlord=world.landlord,
            kind=LedgerTransaction.Kind.STANDING,
            idempotency_key=f"standing:{10**6 + n // 365}:{date.fromordinal(730_000 + n % 365)}",
        )
        for n in range(20_000)
    )
    Posting.objects.bulk_create(
        Posting(
            landlord=world.landlord, transaction=t, debit=tenant, credit=revenue, amount_minor=1
        )
        for t in history
    )
    # the cached balances, as ledger_post keeps them
    Account.objects.filter(pk=tenant.pk).update(balance_minor=F("balance_minor") - len(history))
    Account.objects.filter(pk=revenue.pk).update(balance_minor=F("balance_minor") + len(history))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    # when
    with CaptureQueriesContext(connection) as captured:
        billing.invoices_issue_due(now=BILLED)
    # then: the standing charges are looked up with keys built by the database
    # (no day's key sent), each found by equality through the idempotency index
    lookups = [
        q["sql"]
        for q in captured.captured_queries
        if "generate_series" in q["sql"] and "standing:" in q["sql"]
    ]
    assert lookups
    for lookup in lookups:
        assert "2026-01-15" not in lookup
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + lookup)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "ledger_txn_idempotent" in plan, plan
