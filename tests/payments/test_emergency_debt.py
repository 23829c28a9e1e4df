"""The emergency credit owed, read among the tenancy's own postings."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from landlord.models import Tenancy
from payments import emergency
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account, LedgerTransaction, Posting

pytestmark = pytest.mark.django_db


def _post(tenancy, kind, debit, credit, amount, key):
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=kind,
        idempotency_key=key,
        legs=[Leg(debit=debit, credit=credit, amount_minor=amount)],
    )


def _accounts(world, tenancy):
    tenant = tenant_account(tenancy=tenancy)

    def account(kind):
        return landlord_account(landlord=world.landlord, kind=kind, currency=tenant.currency)

    return tenant, account(Account.Kind.ADVANCE), account(Account.Kind.REVENUE)


def test_debt_counts_only_the_tenancys_advances_and_repayments(personas):
    # given: an advance and a part repayment for A's prepaid tenancy, usage beside
    # them, and an advance to another of A's tenancies
    world = personas.a
    tenancy, other = world.prepaid_tenancy, world.postpaid_tenancy
    tenant, advance, revenue = _accounts(world, tenancy)
    other_tenant = tenant_account(tenancy=other)
    _post(tenancy, LedgerTransaction.Kind.EMERGENCY, advance, tenant, 500, "e1")
    _post(tenancy, LedgerTransaction.Kind.RECOVERY, tenant, advance, 120, "r1")
    _post(tenancy, LedgerTransaction.Kind.USAGE, tenant, revenue, 70, "u1")
    _post(other, LedgerTransaction.Kind.EMERGENCY, advance, other_tenant, 300, "e2")
    # when / then: the same debt read alone and as a page's annotation
    assert emergency.emergency_debt(tenancy=tenancy) == 380
    assert emergency.emergency_debt(tenancy=other) == 300
    annotated = dict(
        Tenancy.objects.filter(pk__in=[tenancy.pk, other.pk, personas.b.prepaid_tenancy.pk])
        .annotate(debt=emergency.emergency_debt_expression())
        .values_list("pk", "debt")
    )
    assert annotated == {tenancy.pk: 380, other.pk: 300, personas.b.prepaid_tenancy.pk: 0}


def _plan(read) -> str:
    """The plan of the one query ``read`` sends, on fresh statistics."""
    with CaptureQueriesContext(connection) as captured:
        read()
    (query,) = captured.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("EXPLAIN " + query["sql"])
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL")
def test_debt_is_found_among_the_tenancys_postings_however_long_the_ledger(personas):
    # given: the landlord's long posting history on 200 earlier tenancies' accounts
    # (usage, advances and repayments) and a few postings of this tenancy
    world = personas.a
    tenancy = world.prepaid_tenancy
    tenant, advance, revenue = _accounts(world, tenancy)
    earlier = Tenancy.objects.bulk_create(
        Tenancy(
            landlord=world.landlord,
            unit=world.postpaid,
            tenant=world.postpaid_tenant,
            start_date=date(2000, 1, 1) + timedelta(days=2 * n),
            end_date=date(2000, 1, 1) + timedelta(days=2 * n + 1),
        )
        for n in range(200)
    )
    accounts = Account.objects.bulk_create(
        Account(
            landlord=world.landlord,
            kind=Account.Kind.TENANT,
            currency=tenant.currency,
            tenancy=t,
        )
        for t in earlier
    )
    legs = [
        (advance, account)
        if n % 20 == 0
        else (account, advance)
        if n % 20 == 1
        else (account, revenue)
        for account in accounts
        for n in range(100)
    ]
    txns = LedgerTransaction.objects.bulk_create(
        LedgerTransaction(
            landlord=world.landlord,
            kind=LedgerTransaction.Kind.ADJUSTMENT,
            idempotency_key=f"history:{n}",
        )
        for n in range(len(legs))
    )
    Posting.objects.bulk_create(
        Posting(landlord=world.landlord, transaction=t, debit=d, credit=c, amount_minor=1)
        for t, (d, c) in zip(txns, legs, strict=True)
    )
    moved: Counter[int] = Counter()
    for debit, credit in legs:
        moved[debit.pk] -= 1
        moved[credit.pk] += 1
    for pk, amount in moved.items():  # the cached balances, as ledger_post keeps them
        Account.objects.filter(pk=pk).update(balance_minor=F("balance_minor") + amount)
    _post(tenancy, LedgerTransaction.Kind.EMERGENCY, advance, tenant, 500, "e1")
    _post(tenancy, LedgerTransaction.Kind.USAGE, tenant, revenue, 70, "u1")
    assert emergency.emergency_debt(tenancy=tenancy) == 500
    # when: the debt is planned alone and as the tenant page's annotation
    alone = _plan(lambda: emergency.emergency_debt(tenancy=tenancy))
    page = _plan(
        lambda: list(
            Tenancy.objects.filter(pk=tenancy.pk).annotate(
                debt=emergency.emergency_debt_expression()
            )
        )
    )
    # then: postings are found by the tenant account's id on their debit and
    # credit columns, never by landlord or by reading whole tables
    table = Posting._meta.db_table
    for plan in (alone, page):
        assert f"{table}_credit_id" in plan and f"{table}_debit_id" in plan, plan
        assert f"{table}_landlord_id" not in plan, plan
        assert f"Seq Scan on {table}" not in plan, plan
