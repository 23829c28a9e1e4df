"""Arrears ageing of postpaid bills: what is still owed, by how long past its due date.

A bill is in arrears from the day after its due date (a local day in its
property's time zone) while something of it is outstanding: its total less the
payments applied to it (``payments.allocation``; the same amount as
``invoice_outstanding_minor``, read for many bills in one query). The pure
part, :func:`arrears_age`, sorts such bills into the buckets 1 to 15, 16 to 30,
31 to 60 and over 60 days and sums them per tenancy; :func:`landlord_arrears`
reads a landlord's bills and calls it.

Bills issued before due dates existed have no due date and are left out: they
cannot be said to be late. Prepaid units have no bills.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Case, F, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from .models import Invoice

# (key, label, first day late, last day late; None: no end)
BUCKETS: tuple[tuple[str, str, int, int | None], ...] = (
    ("1-15", "1\u201315 days", 1, 15),
    ("16-30", "16\u201330 days", 16, 30),
    ("31-60", "31\u201360 days", 31, 60),
    ("60+", "over 60 days", 61, None),
)
BUCKET_KEYS = tuple(key for key, *_ in BUCKETS)


def bucket_for(days_late: int) -> str | None:
    """The bucket of a bill ``days_late`` days past its due date; None when not late."""
    for key, _label, first, last in BUCKETS:
        if days_late >= first and (last is None or days_late <= last):
            return key
    return None


def bucket_days(key: str) -> tuple[int, int | None]:
    """The first and last day late of a bucket (``KeyError`` for an unknown one)."""
    for name, _label, first, last in BUCKETS:
        if name == key:
            return first, last
    raise KeyError(key)


@dataclass(frozen=True)
class BillDue:
    """A bill with something outstanding, as the ageing needs it."""

    invoice_id: int
    tenancy_id: int
    currency: str
    due_date: date
    tz: str  # the property's time zone, in which the due date is a local day
    outstanding_minor: int


@dataclass
class TenancyArrears:
    tenancy_id: int
    currency: str
    buckets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKET_KEYS, 0))
    invoice_ids: list[int] = field(default_factory=list)

    @property
    def total_minor(self) -> int:
        return sum(self.buckets.values())

    @property
    def oldest_bucket(self) -> str:
        return next(key for key in reversed(BUCKET_KEYS) if self.buckets[key])


@dataclass
class Ageing:
    """Arrears per tenancy, and per bucket and currency across them."""

    tenancies: list[TenancyArrears] = field(default_factory=list)
    # {bucket: {currency: minor}}
    totals: dict[str, dict[str, int]] = field(
        default_factory=lambda: {key: {} for key in BUCKET_KEYS}
    )
    # {bucket: number of tenancies with something in it}
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKET_KEYS, 0))
    # {bucket: the bills in it}
    invoice_ids: dict[str, list[int]] = field(
        default_factory=lambda: {key: [] for key in BUCKET_KEYS}
    )

    @property
    def total(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for per_currency in self.totals.values():
            for currency, minor in per_currency.items():
                out[currency] = out.get(currency, 0) + minor
        return out


def days_late(*, due_date: date, tz: str, now: datetime) -> int:
    """Whole local days since the due date: 0 on the due date itself, negative before it."""
    today = now.astimezone(zoneinfo.ZoneInfo(tz)).date()
    return (today - due_date).days


def arrears_age(*, bills: Sequence[BillDue], now: datetime) -> Ageing:
    """Sort the outstanding amounts of ``bills`` into the ageing buckets (pure).

    A bill counts from the first local day after its due date; nothing
    outstanding (or a credit) counts nowhere. Tenancies come out in the order
    their first late bill came in; amounts are never added across currencies
    (a row is a tenancy and a currency).
    """
    ageing = Ageing()
    by_tenancy: dict[tuple[int, str], TenancyArrears] = {}
    counted: set[tuple[int, str, str]] = set()
    for bill in bills:
        if bill.outstanding_minor <= 0:
            continue
        key = bucket_for(days_late(due_date=bill.due_date, tz=bill.tz, now=now))
        if key is None:
            continue
        row = by_tenancy.get((bill.tenancy_id, bill.currency))
        if row is None:
            row = TenancyArrears(tenancy_id=bill.tenancy_id, currency=bill.currency)
            by_tenancy[(bill.tenancy_id, bill.currency)] = row
            ageing.tenancies.append(row)
        row.buckets[key] += bill.outstanding_minor
        row.invoice_ids.append(bill.invoice_id)
        totals = ageing.totals[key]
        totals[bill.currency] = totals.get(bill.currency, 0) + bill.outstanding_minor
        ageing.invoice_ids[key].append(bill.invoice_id)
        if (bill.tenancy_id, bill.currency, key) not in counted:
            counted.add((bill.tenancy_id, bill.currency, key))
            ageing.counts[key] += 1
    return ageing


# --- Reading ---------------------------------------------------------------------------


def invoices_with_owed(qs: QuerySet[Invoice]) -> QuerySet[Invoice]:
    """Each bill annotated with ``paid`` (the payments applied) and ``owed``:
    ``invoice_outstanding_minor`` for many bills in the same query."""
    return qs.annotate(paid=Coalesce(Sum("allocations__amount_minor"), Value(0))).annotate(
        owed=Case(When(total_minor__gt=0, then=F("total_minor")), default=Value(0)) - F("paid")
    )


def outstanding_bills(*, landlord_id: int) -> list[BillDue]:
    """The landlord's bills with a due date and something outstanding, in one query.

    Outstanding is ``invoice_outstanding_minor``'s: the total (never below
    zero) less the payments applied to the bill.
    """
    rows = (
        invoices_with_owed(
            Invoice.objects.filter(
                landlord_id=landlord_id, due_date__isnull=False, total_minor__gt=0
            )
        )
        .filter(owed__gt=0)  # type: ignore[misc]  # annotated by invoices_with_owed
        .order_by("due_date", "pk")
        .values_list(
            "pk", "tenancy_id", "currency", "due_date", "tenancy__unit__property__timezone", "owed"
        )
    )
    return [
        BillDue(
            invoice_id=pk,
            tenancy_id=tenancy_id,
            currency=currency,
            due_date=due,
            tz=tz,
            outstanding_minor=owed,
        )
        for pk, tenancy_id, currency, due, tz, owed in rows
        if due is not None  # (filtered above; for the type checker)
    ]


def landlord_arrears(*, landlord_id: int, now: datetime | None = None) -> Ageing:
    """A landlord's arrears ageing now (one query)."""
    return arrears_age(bills=outstanding_bills(landlord_id=landlord_id), now=now or timezone.now())
