"""Payments applied to postpaid bills, oldest first.

A tenancy's **funds** are its succeeded payments whose credit was not
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

Nothing here posts to the ledger: allocation only says which bill a payment
paid; the tenant's balance already holds the money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import F, Q, Sum
from django.utils import timezone

from landlord.models import Tenancy, Unit

from .models import BillAllocation, Dispute, Invoice, Payment, Refund

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
    found = (
        Payment.objects.filter(
            tenancy_id=tenancy_id,
            status=Payment.Status.SUCCEEDED,
            ledger_transaction__isnull=False,
        )
        .annotate(reversed_by=F("ledger_transaction__reversed_by"))
        .order_by("ledger_transaction_id")
        .values_list("pk", "amount_minor", "reversed_by")
    )
    # A payment whose credit was reversed in the ledger (a correction) paid nothing.
    payments = [(pk, amount) for pk, amount, reversed_by in found if reversed_by is None]
    ids = [pk for pk, _ in payments]
    refunded = dict(
        Refund.objects.filter(payment_id__in=ids, ledger_transaction__isnull=False)
        .exclude(status=Refund.Status.FAILED)
        .values_list("payment_id")
        .annotate(s=Sum("amount_minor"))
        .order_by()
    )
    withdrawn = dict(
        Dispute.objects.filter(payment_id__in=ids, funds_withdrawn=True, funds_reinstated=False)
        .values_list("payment_id")
        .annotate(s=Sum("amount_minor"))
        .order_by()
    )
    return [
        Fund(pk, amount - int(refunded.get(pk, 0)) - int(withdrawn.get(pk, 0)))
        for pk, amount in payments
    ]


def tenancy_bills(*, tenancy_id: int) -> list[Owed]:
    rows = Invoice.objects.filter(tenancy_id=tenancy_id).order_by("period_start", "pk")
    return [Owed(pk, max(total, 0)) for pk, total in rows.values_list("pk", "total_minor")]


# --- Service ----------------------------------------------------------------------


def bills_allocate(*, tenancy: Tenancy) -> None:
    """Recompute which payments paid which of the tenancy's bills and store it.

    Call inside the transaction that changed a payment, refund, chargeback or
    bill of the tenancy; the tenancy row is locked so two such changes store
    their allocations one after the other. A prepaid unit's payments are
    top-ups, not payments of bills: nothing is done (not even a query, so a
    top-up costs what it did).
    """
    if tenancy.unit.is_prepaid:
        return
    if not Invoice.objects.filter(tenancy_id=tenancy.pk).exists():
        return  # nothing billed yet: every payment is credit carried
    Tenancy.objects.select_for_update().filter(pk=tenancy.pk).first()
    wanted = allocation_compose(
        bills=tenancy_bills(tenancy_id=tenancy.pk), funds=tenancy_funds(tenancy_id=tenancy.pk)
    )
    now = timezone.now()
    stored = {
        (row.invoice_id, row.payment_id): row
        for row in BillAllocation.objects.filter(invoice__tenancy_id=tenancy.pk)
    }
    for key, row in stored.items():
        if key not in wanted:
            row.delete()
        elif row.amount_minor != wanted[key]:
            row.amount_minor = wanted[key]
            row.updated_at = now
            row.save(update_fields=["amount_minor", "updated_at"])
    BillAllocation.objects.bulk_create(
        BillAllocation(
            landlord_id=tenancy.landlord_id,
            invoice_id=invoice_id,
            payment_id=payment_id,
            amount_minor=amount,
            updated_at=now,
        )
        for (invoice_id, payment_id), amount in wanted.items()
        if (invoice_id, payment_id) not in stored
    )


# --- Reading -----------------------------------------------------------------------


def invoice_paid_minor(*, invoice: Invoice) -> int:
    return int(invoice.allocations.aggregate(s=Sum("amount_minor"))["s"] or 0)


def invoice_outstanding_minor(*, invoice: Invoice) -> int:
    """What is still to be paid on the bill after the payments applied to it."""
    return max(invoice.total_minor, 0) - invoice_paid_minor(invoice=invoice)


def tenancy_credit_minor(*, tenancy_id: int) -> int:
    """Payments not applied to any bill: the credit carried to the next one."""
    received = sum(fund.amount_minor for fund in tenancy_funds(tenancy_id=tenancy_id))
    applied = BillAllocation.objects.filter(invoice__tenancy_id=tenancy_id).aggregate(
        s=Sum("amount_minor")
    )["s"]
    return received - int(applied or 0)


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
    # Bounds hold for every tenancy; the exact oldest-first rows only for
    # postpaid units, the only ones allocated (bills_allocate).
    postpaid = set(
        Tenancy.objects.filter(pk__in=tenancy_ids)
        .exclude(unit__billing_mode=Unit.BillingMode.PREPAID)
        .values_list("pk", flat=True)
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
        wanted = allocation_compose(
            bills=tenancy_bills(tenancy_id=tenancy_id), funds=list(_as_funds(funds))
        )
        rows = BillAllocation.objects.filter(invoice__tenancy_id=tenancy_id).values_list(
            "invoice_id", "payment_id", "amount_minor"
        )
        stored = {(invoice_id, payment_id): amount for invoice_id, payment_id, amount in rows}
        if tenancy_id in postpaid and stored != wanted:
            problems.append(f"tenancy {tenancy_id}: allocations are not oldest first")
    return problems


def _as_funds(funds: dict[int, int]) -> list[Fund]:
    return [Fund(pk, amount) for pk, amount in funds.items()]
