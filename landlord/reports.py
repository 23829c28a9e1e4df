"""Read-only lists behind the home page's numbers, and the CSV exports.

Every query here filters on the landlord first: another landlord's rows
cannot appear. Dates are local days of the landlord's first property
(``landlord_zone``), both ends included.

The exports stream: each is a generator of CSV lines over a queryset read in
chunks, so a year of postings never sits in memory. Text cells that a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``)
are prefixed with an apostrophe; money is given twice, in minor units (exact,
for machines) and as a decimal amount (for people).
"""

from __future__ import annotations

import csv
import zoneinfo
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet, Sum

from meters.models import Interval
from payments.arrears import invoices_with_owed
from payments.models import Account, Invoice, Payment, Posting
from payments.rating import round_half_up

from .models import Property, Tenancy, Unit

CHUNK = 500


def landlord_zone(*, landlord_id: int) -> str:
    """The landlord's first property's time zone (the site's when it has none)."""
    zone = (
        Property.objects.filter(landlord_id=landlord_id)
        .order_by("pk")
        .values_list("timezone", flat=True)
        .first()
    )
    return zone or str(settings.TIME_ZONE)


def day_bounds(
    first: date | None, last: date | None, tz: str
) -> tuple[datetime | None, datetime | None]:
    """[start of ``first``, start of the day after ``last``) in ``tz``; None: open."""
    zone = zoneinfo.ZoneInfo(tz)
    start = datetime.combine(first, time(0), zone) if first else None
    end = datetime.combine(last + timedelta(days=1), time(0), zone) if last else None
    return start, end


def _between(qs: QuerySet[Any], field: str, start: datetime | None, end: datetime | None):
    if start is not None:
        qs = qs.filter(**{f"{field}__gte": start})
    if end is not None:
        qs = qs.filter(**{f"{field}__lt": end})
    return qs


# --- the list pages ------------------------------------------------------------------


def bills_in_range(
    *, landlord_id: int, start: datetime | None, end: datetime | None
) -> QuerySet[Invoice]:
    """Bills issued in the range, newest first, with what was paid on each."""
    qs = Invoice.objects.filter(landlord_id=landlord_id)
    return (
        invoices_with_owed(_between(qs, "issued_at", start, end))
        .select_related("tenancy__unit__property", "tenancy__tenant")
        .order_by("-issued_at", "-pk")
    )


def bills_by_id(*, landlord_id: int, ids: Iterable[int]) -> QuerySet[Invoice]:
    return (
        invoices_with_owed(Invoice.objects.filter(landlord_id=landlord_id, pk__in=list(ids)))
        .select_related("tenancy__unit__property", "tenancy__tenant")
        .order_by("due_date", "pk")
    )


def tenancies_by_id(*, landlord_id: int, ids: Iterable[int]) -> dict[int, Tenancy]:
    return {
        t.pk: t
        for t in Tenancy.objects.filter(landlord_id=landlord_id, pk__in=list(ids)).select_related(
            "unit__property", "tenant"
        )
    }


ACCOUNT_KINDS = dict(Account.Kind.choices)


def postings_in_range(
    *, landlord_id: int, start: datetime | None, end: datetime | None, account: str = ""
) -> QuerySet[Posting]:
    """Ledger postings in the range, newest first; ``account``: only those to or
    from the landlord's account of that kind (or tenants' balances)."""
    qs = Posting.objects.filter(landlord_id=landlord_id)
    if account in ACCOUNT_KINDS:
        qs = qs.filter(Q(credit__kind=account) | Q(debit__kind=account))
    return (
        _between(qs, "transaction__created_at", start, end)
        .select_related(
            "transaction", "debit__tenancy__unit", "credit__tenancy__unit", "debit", "credit"
        )
        .order_by("-transaction__created_at", "-pk")
    )


def payments_in_range(
    *, landlord_id: int, start: datetime | None, end: datetime | None, status: str = ""
) -> QuerySet[Payment]:
    qs = Payment.objects.filter(landlord_id=landlord_id)
    if status in Payment.Status.values:
        qs = qs.filter(status=status)
    return (
        _between(qs, "created_at", start, end)
        .select_related("tenancy__unit__property", "tenancy__tenant")
        .order_by("-created_at")
    )


# --- CSV ---------------------------------------------------------------------------------


class _Echo:
    """A file-like object that hands back what is written (csv.writer into a generator)."""

    def write(self, value: str) -> str:
        return value


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    if value is None:
        return ""
    return value


def major(minor: int | None) -> str:
    """Minor units as a plain decimal amount: -1234 -> '-12.34'."""
    if minor is None:
        return ""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(int(minor)), 100)
    return f"{sign}{whole}.{cents:02d}"


def csv_lines(header: list[str], rows: Iterable[list[object]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([_cell(v) for v in row])


def _person(user: Any) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


def _iso(when: datetime | date | None) -> str:
    return when.isoformat() if when is not None else ""


def units_rows(*, landlord_id: int, start: datetime, end: datetime) -> Iterator[list[object]]:
    """Every unit (archived ones too), its tenant today, balance, and the energy and
    charges priced in the range."""
    usage = {
        row["meter__unit_id"]: row
        for row in _between(Interval.objects.filter(landlord_id=landlord_id), "start", start, end)
        .values("meter__unit_id")
        .annotate(wh=Sum("energy_wh"), sub=Sum("gross_sub"))
        .order_by()
    }
    active = {
        t.unit_id: t
        for t in Tenancy.objects.active()
        .filter(landlord_id=landlord_id)
        .select_related("tenant", "account")
    }
    units = (
        Unit.objects.filter(landlord_id=landlord_id)
        .select_related("property", "tariff")
        .order_by("property__name", "name")
    )
    for unit in units.iterator(chunk_size=CHUNK):
        tenancy = active.get(unit.pk)
        account = getattr(tenancy, "account", None) if tenancy else None
        balance = account.balance_minor if account is not None else None
        used = usage.get(unit.pk, {})
        charged = round_half_up(used["sub"]) if used.get("sub") is not None else None
        yield [
            unit.pk,
            unit.property.name,
            unit.name,
            unit.billing_mode,
            unit.tariff.name if unit.tariff else "",
            _person(tenancy.tenant) if tenancy else "",
            _iso(tenancy.start_date) if tenancy else "",
            balance,
            major(balance),
            used.get("wh") or 0,
            charged,
            major(charged),
            unit.property.currency,
            _iso(unit.archived_at),
        ]


UNITS_HEADER = [
    "unit_id",
    "property",
    "unit",
    "billing_mode",
    "tariff",
    "tenant",
    "tenancy_start",
    "balance_minor",
    "balance",
    "energy_wh",
    "charged_minor",
    "charged",
    "currency",
    "archived_at",
]


def payments_rows(*, landlord_id: int, start: datetime, end: datetime) -> Iterator[list[object]]:
    qs = payments_in_range(landlord_id=landlord_id, start=start, end=end).order_by("created_at")
    for p in qs.iterator(chunk_size=CHUNK):
        unit = p.tenancy.unit
        yield [
            p.receipt_number,
            str(p.uuid),
            _iso(p.created_at),
            unit.property.name,
            unit.name,
            _person(p.tenancy.tenant),
            p.purpose,
            p.status,
            p.amount_minor,
            major(p.amount_minor),
            p.application_fee_minor,
            p.currency,
            p.provider,
            p.provider_ref or "",
            p.reference,
        ]


PAYMENTS_HEADER = [
    "receipt",
    "payment_id",
    "created_at",
    "property",
    "unit",
    "tenant",
    "purpose",
    "status",
    "amount_minor",
    "amount",
    "fee_minor",
    "currency",
    "provider",
    "provider_ref",
    "reference",
]


def bills_rows(*, landlord_id: int, start: datetime, end: datetime) -> Iterator[list[object]]:
    qs = bills_in_range(landlord_id=landlord_id, start=start, end=end).order_by("issued_at", "pk")
    for inv in qs.iterator(chunk_size=CHUNK):
        unit = inv.tenancy.unit
        outstanding = inv.owed  # type: ignore[attr-defined]  # annotated (_with_owed)
        yield [
            inv.number,
            unit.property.name,
            unit.name,
            _person(inv.tenancy.tenant),
            _iso(inv.period_start),
            _iso(inv.period_end - timedelta(days=1)),
            _iso(inv.issued_at),
            _iso(inv.due_date),
            inv.energy_wh,
            inv.net_minor,
            inv.tax_minor,
            inv.total_minor,
            major(inv.total_minor),
            inv.paid,  # type: ignore[attr-defined]
            outstanding,
            major(outstanding),
            inv.currency,
        ]


BILLS_HEADER = [
    "bill",
    "property",
    "unit",
    "tenant",
    "period_first_day",
    "period_last_day",
    "issued_at",
    "due_date",
    "energy_wh",
    "net_minor",
    "tax_minor",
    "total_minor",
    "total",
    "paid_minor",
    "outstanding_minor",
    "outstanding",
    "currency",
]


def account_label(account: Account) -> str:
    """'tenant balance: Flat 2 (tenancy 7)', 'revenue'."""
    if account.tenancy is not None:
        return f"tenant balance: {account.tenancy.unit.name} (tenancy {account.tenancy_id})"
    return str(account.kind)


def postings_rows(*, landlord_id: int, start: datetime, end: datetime) -> Iterator[list[object]]:
    qs = postings_in_range(landlord_id=landlord_id, start=start, end=end).order_by(
        "transaction__created_at", "pk"
    )
    for p in qs.iterator(chunk_size=CHUNK):
        txn = p.transaction
        yield [
            p.pk,
            txn.pk,
            _iso(txn.created_at),
            txn.kind,
            txn.memo,
            account_label(p.debit),
            account_label(p.credit),
            p.amount_minor,
            major(p.amount_minor),
            p.credit.currency,
            p.energy_wh,
            txn.reverses_id,
        ]


POSTINGS_HEADER = [
    "posting_id",
    "transaction_id",
    "created_at",
    "kind",
    "memo",
    "debit_account",
    "credit_account",
    "amount_minor",
    "amount",
    "currency",
    "energy_wh",
    "reverses_transaction",
]

EXPORTS = {
    "units": (UNITS_HEADER, units_rows),
    "payments": (PAYMENTS_HEADER, payments_rows),
    "bills": (BILLS_HEADER, bills_rows),
    "postings": (POSTINGS_HEADER, postings_rows),
}


def export_lines(*, kind: str, landlord_id: int, start: datetime, end: datetime) -> Iterator[str]:
    """The CSV of one export, line by line (``kind`` one of ``EXPORTS``)."""
    header, rows = EXPORTS[kind]
    return csv_lines(header, rows(landlord_id=landlord_id, start=start, end=end))
