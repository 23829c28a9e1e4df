from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.ledger import (
    LedgerError,
    Leg,
    account_balance_from_postings,
    landlord_account,
    ledger_post,
    ledger_verify,
    tenant_account,
)
from payments.models import Account, LedgerTransaction, Posting


def _accounts(world):
    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    revenue = landlord_account(landlord=world.landlord, kind=Account.Kind.REVENUE, currency="GBP")
    return tenant, clearing, revenue


def test_posting_moves_money_and_balances(personas):
    tenant, clearing, revenue = _accounts(personas.a)
    ledger_post(
        landlord_id=personas.a.landlord.pk,
        kind=LedgerTransaction.Kind.PAYMENT,
        idempotency_key="pay-1",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=1000)],
    )
    ledger_post(
        landlord_id=personas.a.landlord.pk,
        kind=LedgerTransaction.Kind.USAGE,
        idempotency_key="use-1",
        legs=[Leg(debit=tenant, credit=revenue, amount_minor=250, energy_wh=800)],
    )
    for acc in (tenant, clearing, revenue):
        acc.refresh_from_db()
        assert acc.balance_minor == account_balance_from_postings(acc.pk)
    assert (tenant.balance_minor, clearing.balance_minor, revenue.balance_minor) == (
        750,
        -1000,
        250,
    )


def test_same_idempotency_key_posts_once(personas):
    tenant, clearing, _ = _accounts(personas.a)
    first, created1 = ledger_post(
        landlord_id=personas.a.landlord.pk,
        kind=LedgerTransaction.Kind.PAYMENT,
        idempotency_key="pay-x",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=500)],
    )
    again, created2 = ledger_post(
        landlord_id=personas.a.landlord.pk,
        kind=LedgerTransaction.Kind.PAYMENT,
        idempotency_key="pay-x",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=500)],
    )
    tenant.refresh_from_db()
    assert (created1, created2, first.pk == again.pk) == (True, False, True)
    assert tenant.balance_minor == 500
    assert Posting.objects.count() == 1


@pytest.mark.parametrize("amount", [0, -5])
def test_non_positive_amounts_are_refused(personas, amount):
    tenant, clearing, _ = _accounts(personas.a)
    with pytest.raises(LedgerError):
        ledger_post(
            landlord_id=personas.a.landlord.pk,
            kind=LedgerTransaction.Kind.ADJUSTMENT,
            idempotency_key="bad",
            legs=[Leg(debit=clearing, credit=tenant, amount_minor=amount)],
        )
    assert LedgerTransaction.objects.count() == 0


def test_a_transaction_never_touches_two_landlords(personas):
    tenant_a, _, _ = _accounts(personas.a)
    _, clearing_b, _ = _accounts(personas.b)
    with pytest.raises(LedgerError):
        ledger_post(
            landlord_id=personas.a.landlord.pk,
            kind=LedgerTransaction.Kind.ADJUSTMENT,
            idempotency_key="cross",
            legs=[Leg(debit=clearing_b, credit=tenant_a, amount_minor=100)],
        )
    assert LedgerTransaction.objects.count() == 0


def test_database_refuses_to_change_or_delete_entries(personas):
    tenant, clearing, _ = _accounts(personas.a)
    txn, _ = ledger_post(
        landlord_id=personas.a.landlord.pk,
        kind=LedgerTransaction.Kind.PAYMENT,
        idempotency_key="p",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=100)],
    )
    with pytest.raises((DatabaseError, IntegrityError)), transaction.atomic():
        Posting.objects.filter(transaction=txn).update(amount_minor=1)
    with pytest.raises((DatabaseError, IntegrityError)), transaction.atomic():
        Posting.objects.filter(transaction=txn).delete()
    with pytest.raises((DatabaseError, IntegrityError)), transaction.atomic():
        LedgerTransaction.objects.filter(pk=txn.pk).update(memo="edited")
    assert Posting.objects.get(transaction=txn).amount_minor == 100


def test_verify_reports_a_tampered_cached_balance(personas):
    tenant, clearing, _ = _accounts(personas.a)
    ledger_post(
        landlord_id=personas.a.landlord.pk,
        kind=LedgerTransaction.Kind.PAYMENT,
        idempotency_key="p",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=100)],
    )
    Account.objects.filter(pk=tenant.pk).update(balance_minor=99)
    problems = ledger_verify()
    assert any(f"account {tenant.pk}" in p for p in problems)
    Account.objects.filter(pk=tenant.pk).update(balance_minor=100)  # restore for teardown check
    assert ledger_verify() == []


def test_ledger_verify_command_fails_on_discrepancy(personas):
    from django.core.management import CommandError, call_command

    tenant, clearing, _ = _accounts(personas.a)
    ledger_post(
        landlord_id=personas.a.landlord.pk,
        kind=LedgerTransaction.Kind.PAYMENT,
        idempotency_key="p",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=100)],
    )
    call_command("ledger_verify")
    Account.objects.filter(pk=tenant.pk).update(balance_minor=1)
    with pytest.raises(CommandError):
        call_command("ledger_verify")
    Account.objects.filter(pk=tenant.pk).update(balance_minor=100)


moves = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(1, 10**7)), min_size=1, max_size=25
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moves=moves)
def test_property_cached_balances_always_equal_postings(personas, moves):
    accounts = list(_accounts(personas.a))
    try:
        with transaction.atomic():
            for i, (src, dst, amount) in enumerate(moves):
                if src == dst:
                    continue
                ledger_post(
                    landlord_id=personas.a.landlord.pk,
                    kind=LedgerTransaction.Kind.ADJUSTMENT,
                    idempotency_key=f"m{i}",
                    legs=[Leg(debit=accounts[src], credit=accounts[dst], amount_minor=amount)],
                )
            assert ledger_verify() == []
            total = sum(Account.objects.values_list("balance_minor", flat=True))
            assert total == 0
            raise _Rollback
    except _Rollback:
        pass


class _Rollback(Exception):
    pass
