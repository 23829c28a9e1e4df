"""Posting to the ledger and verifying it. The only writer of balances."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from landlord.models import Landlord, Tenancy
from meters.models import Interval, Meter

from .allocation import allocations_verify
from .models import Account, LedgerTransaction, Posting
from .rating import SCALE


@dataclass(frozen=True)
class Leg:
    debit: Account
    credit: Account
    amount_minor: int
    energy_wh: int | None = None


class LedgerError(Exception):
    pass


def accounts_lock(*, account_ids: Iterable[int]) -> dict[int, Account]:
    """Lock accounts for update, always in primary-key order so posters never deadlock."""
    ids = sorted(set(account_ids))
    locked = Account.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {acc.pk: acc for acc in locked}


def landlord_account(*, landlord: Landlord, kind: str, currency: str) -> Account:
    account, _ = Account.objects.get_or_create(landlord=landlord, kind=kind, currency=currency)
    return account


def tenant_account(*, tenancy: Tenancy) -> Account:
    """The tenancy's balance account, read fresh (never a cached instance)."""
    account = Account.objects.filter(tenancy_id=tenancy.pk).first()
    if account is not None:
        return account
    account, _ = Account.objects.get_or_create(
        tenancy_id=tenancy.pk,
        defaults={
            "landlord_id": tenancy.landlord_id,
            "kind": Account.Kind.TENANT,
            "currency": tenancy.unit.property.currency,
        },
    )
    return account


def deposit_account(*, tenancy: Tenancy) -> Account:
    """The account holding the tenancy's deposit: apart from its balance, so a deposit
    is never credit to spend, nor a payment of a bill."""
    account = Account.objects.filter(deposit_tenancy_id=tenancy.pk).first()
    if account is not None:
        return account
    account, _ = Account.objects.get_or_create(
        deposit_tenancy_id=tenancy.pk,
        defaults={
            "landlord_id": tenancy.landlord_id,
            "kind": Account.Kind.DEPOSIT,
            "currency": tenancy.unit.property.currency,
        },
    )
    return account


def ledger_post(
    *,
    landlord_id: int,
    kind: str,
    idempotency_key: str,
    legs: Sequence[Leg],
    memo: str = "",
    created_by_id: int | None = None,
    reverses: LedgerTransaction | None = None,
) -> tuple[LedgerTransaction, bool]:
    """Post a balanced transaction once per idempotency key.

    Returns ``(transaction, created)``; a repeated key returns the first
    transaction and changes nothing.
    """
    if not legs:
        raise LedgerError("A transaction needs at least one posting.")
    for leg in legs:
        if leg.amount_minor <= 0:
            raise LedgerError("Posting amounts must be positive.")
        if leg.debit.pk == leg.credit.pk:
            raise LedgerError("A posting needs two different accounts.")
        if leg.debit.landlord_id != landlord_id or leg.credit.landlord_id != landlord_id:
            raise LedgerError("A transaction never touches two landlords.")
        if leg.debit.currency != leg.credit.currency:
            raise LedgerError("A posting cannot mix currencies.")

    existing = LedgerTransaction.objects.filter(
        landlord_id=landlord_id, idempotency_key=idempotency_key
    ).first()
    if existing is not None:
        return existing, False

    try:
        with transaction.atomic():
            txn = LedgerTransaction.objects.create(
                landlord_id=landlord_id,
                kind=kind,
                idempotency_key=idempotency_key,
                memo=memo[:300],
                created_by_id=created_by_id,
                reverses=reverses,
            )
            deltas: dict[int, int] = defaultdict(int)
            for leg in legs:
                deltas[leg.debit.pk] -= leg.amount_minor
                deltas[leg.credit.pk] += leg.amount_minor
            locked = accounts_lock(account_ids=deltas.keys())
            Posting.objects.bulk_create(
                [
                    Posting(
                        landlord_id=landlord_id,
                        transaction=txn,
                        debit_id=leg.debit.pk,
                        credit_id=leg.credit.pk,
                        amount_minor=leg.amount_minor,
                        energy_wh=leg.energy_wh,
                    )
                    for leg in legs
                ]
            )
            now = timezone.now()
            for pk in sorted(deltas):
                if deltas[pk]:
                    Account.objects.filter(pk=pk).update(
                        balance_minor=F("balance_minor") + deltas[pk], updated_at=now
                    )
                    locked[pk].balance_minor += deltas[pk]
    except IntegrityError:
        # Another poster won the race for this key: theirs is the posting.
        existing = LedgerTransaction.objects.filter(
            landlord_id=landlord_id, idempotency_key=idempotency_key
        ).first()
        if existing is None:
            raise
        return existing, False
    return txn, True


def account_balance_from_postings(account_id: int) -> int:
    credits = Posting.objects.filter(credit_id=account_id).aggregate(s=Sum("amount_minor"))["s"]
    debits = Posting.objects.filter(debit_id=account_id).aggregate(s=Sum("amount_minor"))["s"]
    return (credits or 0) - (debits or 0)


def ledger_verify() -> list[str]:
    """Every invariant over the whole ledger; returns the discrepancies found."""
    problems: list[str] = []
    credits = dict(
        Posting.objects.values_list("credit_id").annotate(s=Sum("amount_minor")).order_by()
    )
    debits = dict(
        Posting.objects.values_list("debit_id").annotate(s=Sum("amount_minor")).order_by()
    )
    totals: dict[str, int] = defaultdict(int)
    for acc in Account.objects.all().only("pk", "balance_minor", "currency"):
        expected = credits.get(acc.pk, 0) - debits.get(acc.pk, 0)
        totals[acc.currency] += acc.balance_minor
        if expected != acc.balance_minor:
            problems.append(
                f"account {acc.pk}: cached balance {acc.balance_minor} != postings {expected}"
            )
    for currency, total in totals.items():
        if total != 0:
            problems.append(f"{currency}: balances sum to {total}, not 0")
    bad = Posting.objects.exclude(debit__landlord_id=F("landlord_id")).count()
    bad += Posting.objects.exclude(credit__landlord_id=F("landlord_id")).count()
    bad += Posting.objects.exclude(transaction__landlord_id=F("landlord_id")).count()
    if bad:
        problems.append(f"{bad} postings cross landlords")
    mixed = Posting.objects.exclude(debit__currency=F("credit__currency")).count()
    if mixed:
        problems.append(f"{mixed} postings mix currencies")
    empty = LedgerTransaction.objects.filter(postings__isnull=True).count()
    if empty:
        problems.append(f"{empty} transactions have no postings")
    problems += _verify_reversals()
    problems += _verify_emergency_credit()
    problems += _verify_usage()
    problems += _verify_deposits()
    problems += allocations_verify()
    return problems


def _verify_reversals() -> list[str]:
    """A reversal names what it reverses and mirrors its postings exactly."""
    problems = []
    reversals = LedgerTransaction.objects.filter(kind=LedgerTransaction.Kind.REVERSAL)
    for txn in reversals.prefetch_related("postings", "reverses__postings"):
        if txn.reverses is None:
            problems.append(f"reversal {txn.pk} does not name the transaction it reverses")
            continue
        if txn.reverses.kind == LedgerTransaction.Kind.REVERSAL:
            problems.append(f"reversal {txn.pk} reverses a reversal")
        mine = sorted((p.debit_id, p.credit_id, p.amount_minor) for p in txn.postings.all())
        theirs = sorted(
            (p.credit_id, p.debit_id, p.amount_minor) for p in txn.reverses.postings.all()
        )
        if mine != theirs:
            problems.append(f"reversal {txn.pk} does not mirror transaction {txn.reverses_id}")
    return problems


def _verify_emergency_credit() -> list[str]:
    """Nobody repaid more emergency credit than they were advanced."""
    lent: dict[int, int] = defaultdict(int)
    for account_id, total in (
        Posting.objects.filter(debit__kind=Account.Kind.ADVANCE)
        .values_list("credit_id")
        .annotate(s=Sum("amount_minor"))
        .order_by()
    ):
        lent[account_id] += total
    problems = []
    for account_id, repaid in (
        Posting.objects.filter(credit__kind=Account.Kind.ADVANCE)
        .values_list("debit_id")
        .annotate(s=Sum("amount_minor"))
        .order_by()
    ):
        if repaid > lent[account_id]:
            problems.append(
                f"account {account_id} repaid {repaid} of emergency credit, "
                f"more than the {lent[account_id]} advanced"
            )
    return problems


def _verify_usage() -> list[str]:
    """Every meter's priced slots equal what was posted plus what is pending, exactly,
    and usage postings only ever move money between a payer and revenue."""
    problems = []
    wrong = (
        Posting.objects.filter(
            transaction__kind__in=[LedgerTransaction.Kind.USAGE, LedgerTransaction.Kind.STANDING]
        )
        .exclude(credit__kind=Account.Kind.REVENUE)
        .count()
    )
    if wrong:
        problems.append(f"{wrong} usage or standing postings do not credit revenue")
    rated = dict(
        Interval.objects.filter(gross_sub__isnull=False)
        .values_list("meter_id")
        .annotate(s=Sum("gross_sub"))
        .order_by()
    )
    posted: dict[int, int] = defaultdict(int)
    rows = Posting.objects.filter(
        transaction__idempotency_key__startswith="meter-usage:"
    ).values_list("transaction__idempotency_key", "transaction__kind", "amount_minor")
    for key, kind, amount in rows:
        meter_id = int(key.split(":")[1])
        posted[meter_id] += -amount if kind == LedgerTransaction.Kind.CORRECTION else amount
    for meter in Meter.objects.only("pk", "posted_minor", "pending_sub"):
        if posted[meter.pk] != meter.posted_minor:
            problems.append(
                f"meter {meter.pk}: usage postings {posted[meter.pk]} != posted {meter.posted_minor}"
            )
        expected = meter.posted_minor * SCALE + meter.pending_sub
        if rated.get(meter.pk, 0) != expected:
            problems.append(
                f"meter {meter.pk}: priced intervals {rated.get(meter.pk, 0)} sub-units != "
                f"posted + pending {expected}"
            )
        if meter.pending_sub < 0:
            problems.append(f"meter {meter.pk}: a negative pending amount was never corrected")
    return problems


def _verify_deposits() -> list[str]:
    """A deposit held is never negative, and moves only between the payment clearing
    account and its own tenancy's balance (applied to what the tenant owes)."""
    problems = [
        f"deposit account {pk} holds {balance}, less than nothing"
        for pk, balance in Account.objects.filter(
            kind=Account.Kind.DEPOSIT, balance_minor__lt=0
        ).values_list("pk", "balance_minor")
    ]
    rows = Posting.objects.filter(
        Q(debit__kind=Account.Kind.DEPOSIT) | Q(credit__kind=Account.Kind.DEPOSIT)
    ).values_list(
        "pk",
        "debit__kind",
        "debit__tenancy_id",
        "debit__deposit_tenancy_id",
        "credit__kind",
        "credit__tenancy_id",
        "credit__deposit_tenancy_id",
    )
    for pk, d_kind, d_tenancy, d_held, c_kind, c_tenancy, c_held in rows:
        held_for = d_held if d_kind == Account.Kind.DEPOSIT else c_held
        other_kind, other_tenancy = (
            (c_kind, c_tenancy) if d_kind == Account.Kind.DEPOSIT else (d_kind, d_tenancy)
        )
        if other_kind == Account.Kind.CLEARING:
            continue
        if other_kind == Account.Kind.TENANT and other_tenancy == held_for:
            continue
        problems.append(f"posting {pk} moves a deposit to or from a wrong account")
    wrong = (
        Posting.objects.filter(
            transaction__payment__purpose="deposit",
            transaction__kind=LedgerTransaction.Kind.PAYMENT,
        )
        .exclude(credit__kind=Account.Kind.DEPOSIT)
        .count()
    )
    if wrong:
        problems.append(f"{wrong} deposit payments were not credited to a deposit account")
    return problems
