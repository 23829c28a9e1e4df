"""Payments applied to postpaid bills, oldest first.

A tenancy's **funds** are its succeeded payments (deposits apart: they are
held in their own account, ``payments.deposits``, and count only for what
the move-out applied of them to the balance, from that transfer on) whose credit was not
reversed (``ledger_reverse``), each net of what its refunds and chargebacks
took back (as posted to the ledger: a refund that
failed after it was posted counts no more, reinstated chargeback funds are
back). Its **bills** are its invoices, each asking for its total (a bill whose
corrections make its total negative asks for nothing; its credit is in the
balance, not allocated). :func:`allocation_compose` applies the funds, oldest
payment first, to the bills, oldest first; :func:`bills_allocate` stores that
as ``BillAllocation`` rows, recomputed whenever a payment succeeds, a refund
or chargeback is posted, or a bill is issued, so the rows never depend on the
order those happened in.

Invariant, per tenancy (checked by :func:`allocations_verify`, which
``ledger_verify`` runs, and by a property test):

- each bill's allocations add up to at most its total, each payment's to at
  most its net amount, and every allocation is positive;
- allocated = min(sum of bills' totals, sum of funds): a bill has an amount
  outstanding only when every payment is used up, and credit is carried only
  when every bill is paid. So the sum of the bills' outstanding amounts is
  max(0, billed - received) and the credit carried is max(0, received - billed).

After a switch from prepaid to postpaid (``BillingState.postpaid_from``,
recorded by ``payments.billing.postpaid_start``) only the bills issued since
are allocated, and the funds are what the tenant had then and paid since:

- the balance at the switch, when in credit, drawn from the payments made
  before it, newest first (what prepaid usage left of them), changed by what
  their refunds and chargebacks took back (or gave back) since;
- a balance owed at the switch is a **carried debt**: later payments pay it
  first, then the bills (:func:`tenancy_carried_debt_minor` is what is left
  of it);
- payments made since the switch.

So the invariant above holds for the bills since the switch, with the carried
debt counted as the first bill, and a bill never shows paid by credit that
prepaid usage had already spent.

After a switch from postpaid to prepaid the closing bill's unpaid amount stays
on the balance as debt, and the top-ups made since are funds like any
payment: they pay what the bills still ask for first (oldest first, as above),
and only what is left of them is prepaid credit. So the closing bill shows
paid once the top-ups have covered it, on the bill page and on both sides'
pages, whatever the prepaid usage since.

Nothing here posts to the ledger: allocation only says which bill a payment
paid; the tenant's balance already holds the money.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import F, Q, Sum
from django.utils import timezone

from config.sql import IdIn
from landlord.models import Tenancy

from .models import (
    BillAllocation,
    BillingState,
    Deposit,
    Dispute,
    Invoice,
    LedgerTransaction,
    Payment,
    Refund,
)

# --- Pure -----------------------------------------------------------------------


@dataclass(frozen=True)
class Owed:
    """A bill and what it asks for (minor units, never negative)."""

    invoice_id: int
    amount_minor: int


@dataclass(frozen=True)
class Fund:
    """A payment and what is left of it after refunds and chargebacks."""

    payment_id: int
    amount_minor: int


def allocation_compose(
    *, bills: Sequence[Owed], funds: Sequence[Fund]
) -> dict[tuple[int, int], int]:
    """Apply funds to bills in the given order (oldest first): {(invoice, payment): amount}."""
    result: dict[tuple[int, int], int] = {}
    remaining = [[fund.payment_id, max(fund.amount_minor, 0)] for fund in funds]
    i = 0
    for bill in bills:
        need = max(bill.amount_minor, 0)
        while need > 0 and i < len(remaining):
            payment_id, left = remaining[i]
            take = min(need, left)
            if take > 0:
                result[(bill.invoice_id, payment_id)] = take
                remaining[i][1] = left - take
                need -= take
            if remaining[i][1] == 0:
                i += 1
    return result


# --- Facts from the database --------------------------------------------------------


def tenancy_funds(*, tenancy_id: int) -> list[Fund]:
    """The tenancy's succeeded payments in the order they were credited, each net of
    the refunds and chargebacks posted against it."""
    return [fund for fund, _ in _funds_credited(tenancy_id=tenancy_id)]


def deposit_applied_key(*, tenancy_id: int) -> str:
    """The idempotency key of the move-out transfer of a deposit to the balance."""
    return f"deposit:{tenancy_id}:applied"


def _funds_credited(*, tenancy_id: int) -> list[tuple[Fund, int]]:
    """:func:`tenancy_funds`, each with the ledger transaction that credited it."""
    return _funds_credited_many(tenancy_ids=[tenancy_id]).get(tenancy_id, [])


def _funds_credited_many(*, tenancy_ids: Sequence[int]) -> dict[int, list[tuple[Fund, int]]]:
    """Per tenancy, its funds each with the ledger transaction that credited it."""
    found = (
        Payment.objects.filter(
            IdIn(F("tenancy_id"), tenancy_ids),
            status=Payment.Status.SUCCEEDED,
            ledger_transaction__isnull=False,
        )
        .annotate(reversed_by=F("ledger_transaction__reversed_by"))
        .order_by("ledger_transaction_id")
        .values_list(
            "tenancy_id",
            "pk",
            "amount_minor",
            "reversed_by",
            "ledger_transaction_id",
            "purpose",
            "landlord_id",
        )
    )
    # A payment whose credit was reversed in the ledger (a correction) paid nothing.
    payments = [row for row in found if row[3] is None]
    ids = [row[1] for row in payments]
    refunded = dict(
        Refund.objects.filter(IdIn(F("payment_id"), ids), ledger_transaction__isnull=False)
        .exclude(status=Refund.Status.FAILED)
        .values_list("payment_id")
        .annotate(s=Sum("amount_minor"))
        .order_by()
    )
    withdrawn = dict(
        Dispute.objects.filter(
            IdIn(F("payment_id"), ids), funds_withdrawn=True, funds_reinstated=False
        )
        .values_list("payment_id")
        .annotate(s=Sum("amount_minor"))
        .order_by()
    )

    def net(pk: int, amount: int) -> int:
        return amount - int(refunded.get(pk, 0)) - int(withdrawn.get(pk, 0))

    funds: dict[int, list[tuple[Fund, int]]] = defaultdict(list)
    held: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for tenancy_id, pk, amount, _, txn, purpose, landlord_id in payments:
        if purpose == Payment.Purpose.DEPOSIT:
            held[tenancy_id].append((pk, net(pk, amount), landlord_id))
        else:
            funds[tenancy_id].append((Fund(pk, net(pk, amount)), txn))
    for tenancy_id, deposits in held.items():
        funds[tenancy_id] = sorted(
            funds[tenancy_id] + _deposit_applied(tenancy_id=tenancy_id, held=deposits),
            key=lambda f: f[1],
        )
    return funds


def _deposit_applied(
    *, tenancy_id: int, held: list[tuple[int, int, int]]
) -> list[tuple[Fund, int]]:
    """What the move-out applied of the deposit to the balance, as funds of the deposit
    payments (oldest first: the rest is refunded newest first), at the transfer's place.

    What a refund or chargeback later took of a deposit payment beyond what was
    held came from the balance (``payments.services._reversals_settle``), so the
    deposit payments' net amounts cap what still counts as applied.
    """
    if not held:
        return []  # no deposit paid: no queries
    applied = Deposit.objects.filter(tenancy_id=tenancy_id).values_list("applied_minor", flat=True)
    left = min(int(applied.first() or 0), sum(max(amount, 0) for _, amount, _ in held))
    if left <= 0:
        return []
    txn = (
        LedgerTransaction.objects.filter(
            landlord_id=held[0][2], idempotency_key=deposit_applied_key(tenancy_id=tenancy_id)
        )
        .values_list("pk", flat=True)
        .first()
    )
    if txn is None:
        return []
    result: list[tuple[Fund, int]] = []
    for pk, amount, _ in held:
        take = min(max(amount, 0), left)
        if take > 0:
            result.append((Fund(pk, take), txn))
            left -= take
    return result


def tenancy_bills(*, tenancy_id: int, after_invoice: int = 0) -> list[Owed]:
    rows = Invoice.objects.filter(tenancy_id=tenancy_id, pk__gt=after_invoice).order_by(
        "period_start", "pk"
    )
    return [Owed(pk, max(total, 0)) for pk, total in rows.values_list("pk", "total_minor")]


# The carried debt is allocated as a bill of its own, first; no invoice has this id.
CARRIED_DEBT = 0


@dataclass(frozen=True)
class Allocation:
    """A tenancy's bills in scope, its funds, and the carried debt paid first."""

    bills: list[Owed]
    funds: list[Fund]
    carried_debt_minor: int = 0
    after_invoice: int = 0

    def wanted(self) -> dict[tuple[int, int], int]:
        debt = [Owed(CARRIED_DEBT, self.carried_debt_minor)] if self.carried_debt_minor else []
        composed = allocation_compose(bills=debt + self.bills, funds=self.funds)
        return {key: amount for key, amount in composed.items() if key[0] != CARRIED_DEBT}

    def carried_debt_paid_minor(self) -> int:
        debt = [Owed(CARRIED_DEBT, self.carried_debt_minor)]
        composed = allocation_compose(bills=debt, funds=self.funds)
        return sum(composed.values())


def tenancy_allocation(*, tenancy_id: int) -> Allocation:
    """What allocation works from: every bill and payment, or, after a switch from
    prepaid to postpaid, the bills since and the funds left then and paid since."""
    return tenancies_allocation(tenancy_ids=[tenancy_id])[tenancy_id]


def tenancies_allocation(*, tenancy_ids: Sequence[int]) -> dict[int, Allocation]:
    """:func:`tenancy_allocation` of many tenancies, read with a few queries."""
    credited = _funds_credited_many(tenancy_ids=tenancy_ids)
    switches = {
        tenancy_id: (after_txn or 0, after_invoice or 0, opening, opening_funds)
        for tenancy_id, after_txn, after_invoice, opening, opening_funds in (
            BillingState.objects.filter(
                IdIn(F("tenancy_id"), tenancy_ids), postpaid_from__isnull=False
            )
            .order_by("pk")
            .values_list(
                "tenancy_id",
                "postpaid_after_transaction",
                "postpaid_after_invoice",
                "postpaid_opening_minor",
                "postpaid_opening_funds_minor",
            )
        )
    }
    bills: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for tenancy_id, pk, total in (
        Invoice.objects.filter(IdIn(F("tenancy_id"), tenancy_ids))
        .order_by("period_start", "pk")
        .values_list("tenancy_id", "pk", "total_minor")
    ):
        bills[tenancy_id].append((pk, total))
    # Earlier payments already applied to earlier bills (an earlier postpaid time)
    # cannot pay again.
    used: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for tenancy_id, invoice_id, payment_id, amount in BillAllocation.objects.filter(
        IdIn(F("invoice__tenancy_id"), list(switches))
    ).values_list("invoice__tenancy_id", "invoice_id", "payment_id", "amount_minor"):
        if invoice_id <= switches[tenancy_id][1]:
            used[tenancy_id][payment_id] += amount
    scopes = {}
    for tenancy_id in tenancy_ids:
        funds = credited.get(tenancy_id, [])
        switch = switches.get(tenancy_id)
        after_invoice = switch[1] if switch else 0
        owed = [Owed(pk, max(total, 0)) for pk, total in bills[tenancy_id] if pk > after_invoice]
        if switch is None:
            scopes[tenancy_id] = Allocation(owed, [f for f, _ in funds])
            continue
        after_txn, _, opening, opening_funds = switch
        before = [fund for fund, txn in funds if txn <= after_txn]
        since = [fund for fund, txn in funds if txn > after_txn]
        # What the earlier payments' refunds and chargebacks changed since the switch
        # changed the balance left then by as much.
        left = opening + sum(f.amount_minor for f in before) - opening_funds
        carried: list[Fund] = []
        remaining = max(left, 0)
        for fund in reversed(before):
            unused = fund.amount_minor - int(used[tenancy_id].get(fund.payment_id, 0))
            take = min(max(unused, 0), remaining)
            if take > 0:
                carried.append(Fund(fund.payment_id, take))
                remaining -= take
        carried.reverse()
        scopes[tenancy_id] = Allocation(
            bills=owed,
            funds=carried + since,
            carried_debt_minor=max(-left, 0),
            after_invoice=after_invoice,
        )
    return scopes


# --- Service ----------------------------------------------------------------------


def bills_allocate(*, tenancy: Tenancy) -> None:
    """Recompute which payments paid which of the tenancy's bills and store it.

    Call inside the transaction that changed a payment, refund, chargeback or
    bill of the tenancy; the tenancy row is locked so two such changes store
    their allocations one after the other. A tenancy with no bill has nothing
    to allocate: every payment is credit (or a prepaid top-up). After a switch
    to prepaid the closing bill's unpaid amount is a debt carried on the
    balance, and top-ups pay it first, as they would a carried debt after a
    switch to postpaid: so a prepaid tenancy with bills is allocated as well.
    """
    if not Invoice.objects.filter(tenancy_id=tenancy.pk).exists():
        return  # nothing billed yet: every payment is credit carried
    _allocations_store(tenancies=[tenancy])


def bills_allocate_many(*, tenancies: Sequence[Tenancy]) -> None:
    """:func:`bills_allocate` for each of many tenancies (new bills of a billing run).

    A tenancy with no payment to apply and no allocation stored has nothing to
    allocate, whatever its bills: two queries find those for the whole batch;
    the others are allocated together, with a few queries. (A deposit payment
    counts: what the move-out applied of it pays bills.)
    """
    ids = [tenancy.pk for tenancy in tenancies]
    concerned = set(
        Payment.objects.filter(
            IdIn(F("tenancy_id"), ids),
            status=Payment.Status.SUCCEEDED,
            ledger_transaction__isnull=False,
        ).values_list("tenancy_id", flat=True)
    )
    concerned |= set(
        BillAllocation.objects.filter(IdIn(F("invoice__tenancy_id"), ids)).values_list(
            "invoice__tenancy_id", flat=True
        )
    )
    _allocations_store(tenancies=[t for t in tenancies if t.pk in concerned])


def _allocations_store(*, tenancies: Sequence[Tenancy]) -> None:
    """Store the oldest-first allocation of each tenancy's funds to its bills: rows
    no longer wanted deleted, changed amounts updated, new ones inserted. The
    tenancies are locked first, in primary-key order."""
    if not tenancies:
        return
    ids = sorted({tenancy.pk for tenancy in tenancies})
    landlords = {tenancy.pk: tenancy.landlord_id for tenancy in tenancies}
    list(
        Tenancy.objects.select_for_update()
        .filter(IdIn(F("pk"), ids))
        .order_by("pk")
        .values_list("pk")
    )
    scopes = tenancies_allocation(tenancy_ids=ids)
    wanted = {tenancy_id: scope.wanted() for tenancy_id, scope in scopes.items()}
    now = timezone.now()
    gone: list[int] = []
    stored: set[tuple[int, int]] = set()
    for pk, tenancy_id, invoice_id, payment_id, amount in BillAllocation.objects.filter(
        IdIn(F("invoice__tenancy_id"), ids)
    ).values_list("pk", "invoice__tenancy_id", "invoice_id", "payment_id", "amount_minor"):
        if invoice_id <= scopes[tenancy_id].after_invoice:
            continue
        key = (invoice_id, payment_id)
        stored.add(key)
        if key not in wanted[tenancy_id]:
            gone.append(pk)
        elif amount != wanted[tenancy_id][key]:
            BillAllocation.objects.filter(pk=pk).update(
                amount_minor=wanted[tenancy_id][key], updated_at=now
            )
    if gone:
        BillAllocation.objects.filter(IdIn(F("pk"), gone)).delete()
    BillAllocation.objects.bulk_create(
        BillAllocation(
            landlord_id=landlords[tenancy_id],
            invoice_id=invoice_id,
            payment_id=payment_id,
            amount_minor=amount,
            updated_at=now,
        )
        for tenancy_id in ids
        for (invoice_id, payment_id), amount in wanted[tenancy_id].items()
        if (invoice_id, payment_id) not in stored
    )


# --- Reading -----------------------------------------------------------------------


def invoice_paid_minor(*, invoice: Invoice) -> int:
    return int(invoice.allocations.aggregate(s=Sum("amount_minor"))["s"] or 0)


def invoice_outstanding_minor(*, invoice: Invoice) -> int:
    """What is still to be paid on the bill after the payments applied to it."""
    return max(invoice.total_minor, 0) - invoice_paid_minor(invoice=invoice)


def tenancy_credit_minor(*, tenancy_id: int) -> int:
    """Payments not applied to any bill (nor to a carried debt): the credit carried
    to the next one."""
    scope = tenancy_allocation(tenancy_id=tenancy_id)
    received = sum(fund.amount_minor for fund in scope.funds)
    applied = BillAllocation.objects.filter(
        invoice__tenancy_id=tenancy_id, invoice_id__gt=scope.after_invoice
    ).aggregate(s=Sum("amount_minor"))["s"]
    return received - int(applied or 0) - scope.carried_debt_paid_minor()


def tenancy_carried_debt_minor(*, tenancy_id: int) -> int:
    """What is still owed from before the tenancy's switch to postpaid (later
    payments pay it before the bills)."""
    scope = tenancy_allocation(tenancy_id=tenancy_id)
    return scope.carried_debt_minor - scope.carried_debt_paid_minor()


# --- Verification --------------------------------------------------------------------


def allocations_verify() -> list[str]:
    """Allocations never exceed a bill's total nor a payment's net amount, and each
    tenancy's allocations are exactly the oldest-first application of its funds."""
    problems: list[str] = []
    over_bill = (
        Invoice.objects.annotate(s=Sum("allocations__amount_minor"))
        .filter(Q(s__gt=F("total_minor")) | Q(s__gt=0, total_minor__lt=0))
        .values_list("pk", flat=True)
    )
    for pk in over_bill:
        problems.append(f"invoice {pk}: payments applied exceed its total")
    tenancy_ids = (
        BillAllocation.objects.values_list("invoice__tenancy_id", flat=True).distinct().order_by()
    )
    for tenancy_id in tenancy_ids:
        funds = {f.payment_id: f.amount_minor for f in tenancy_funds(tenancy_id=tenancy_id)}
        applied = dict(
            BillAllocation.objects.filter(invoice__tenancy_id=tenancy_id)
            .values_list("payment_id")
            .annotate(s=Sum("amount_minor"))
            .order_by()
        )
        for payment_id, amount in applied.items():
            if amount > funds.get(payment_id, 0):
                problems.append(
                    f"payment {payment_id}: {amount} applied to bills, more than its "
                    f"{funds.get(payment_id, 0)} received"
                )
        scope = tenancy_allocation(tenancy_id=tenancy_id)
        wanted = scope.wanted()
        rows = BillAllocation.objects.filter(
            invoice__tenancy_id=tenancy_id, invoice_id__gt=scope.after_invoice
        ).values_list("invoice_id", "payment_id", "amount_minor")
        stored = {(invoice_id, payment_id): amount for invoice_id, payment_id, amount in rows}
        if stored != wanted:
            problems.append(f"tenancy {tenancy_id}: allocations are not oldest first")
    return problems
