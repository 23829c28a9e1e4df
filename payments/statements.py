"""A bill as its tenant reads it: one structure behind the bill page, its printable
page, the PDF and the email sent when it is issued.

:func:`bill_statement` reads what the bill stored (lines, totals, due date)
and what allocation says was paid; nothing here prices or re-derives money.
The meter reads at the period's bounds are shown so the tenant can check the
energy against their own meter: the register reading taken at or just before
each bound (or the first one after the start, for a meter installed during
the period), with its time and quality. The bill itself charges priced
half-hour slots, so a read is evidence, not the basis of the total.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, fields
from datetime import date, datetime, time
from typing import Any

from django.db.models import Q
from django.utils import timezone

from meters.models import Meter, Reading

from . import allocation, billing
from .models import BillAllocation, Invoice, InvoiceLine
from .services import invoice_amount_due


@dataclass(frozen=True)
class Read:
    """A register reading shown on a bill (local time of the property)."""

    taken_at: datetime
    register_wh: int
    quality: str


@dataclass(frozen=True)
class MeterReads:
    serial: str
    opening: Read | None
    closing: Read | None

    @property
    def used_wh(self) -> int | None:
        if self.opening is None or self.closing is None:
            return None
        return self.closing.register_wh - self.opening.register_wh


@dataclass(frozen=True)
class BillStatement:
    invoice: Invoice
    landlord_name: str
    landlord_address: str
    tenant_name: str
    unit_name: str
    property_name: str
    tz: str
    lines: list[InvoiceLine]
    reads: list[MeterReads]
    applied: list[BillAllocation]
    paid_minor: int
    outstanding_minor: int
    amount_due_minor: int
    carried_debt_minor: int
    credit_carried_minor: int
    fee_billed_on: Invoice | None
    postpaid_from: datetime | None
    turned_prepaid: bool

    def context(self) -> dict[str, Any]:
        """The statement as template variables (``invoice``, ``lines``, ...)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _start_of(day: date, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz)


def _read(row: Reading | None, tz: zoneinfo.ZoneInfo) -> Read | None:
    if row is None:
        return None
    return Read(
        taken_at=timezone.localtime(row.taken_at, tz),
        register_wh=row.register_wh,
        quality=row.get_quality_display(),
    )


def bill_reads(
    *, invoice: Invoice, tz: zoneinfo.ZoneInfo, start: datetime | None = None
) -> list[MeterReads]:
    """Per meter of the unit during the bill's period: the opening and closing reads."""
    start = start or _start_of(invoice.period_start, tz)
    end = _start_of(invoice.period_end, tz)
    meters = (
        # A meter with no read in or before the period shows nothing (below).
        Meter.objects.filter(unit_id=invoice.tenancy.unit_id)
        .filter(Q(removed_at__isnull=True) | Q(removed_at__gt=start))
        .order_by("installed_at", "pk")
    )
    found = []
    for meter in meters:
        billed = Reading.objects.filter(meter=meter, quality=Reading.Quality.ACTUAL)
        opening = (
            billed.filter(taken_at__lte=start).order_by("-taken_at", "-seq").first()
            or billed.filter(taken_at__gt=start, taken_at__lt=end)
            .order_by("taken_at", "seq")
            .first()
        )
        closing = billed.filter(taken_at__lte=end).order_by("-taken_at", "-seq").first()
        if opening is None and closing is None:
            continue
        found.append(MeterReads(meter.serial, _read(opening, tz), _read(closing, tz)))
    return found


def bill_statement(*, invoice: Invoice) -> BillStatement:
    """Everything the bill's page, PDF and email say, read once."""
    tenancy = invoice.tenancy
    unit = tenancy.unit
    prop = unit.property
    tz = zoneinfo.ZoneInfo(prop.timezone)
    tenant = tenancy.tenant
    postpaid_from = billing.invoice_postpaid_from(invoice=invoice)
    return BillStatement(
        invoice=invoice,
        landlord_name=unit.landlord.name,
        landlord_address=prop.address,
        tenant_name=tenant.get_full_name() or tenant.get_username(),
        unit_name=unit.name,
        property_name=prop.name,
        tz=prop.timezone,
        lines=list(invoice.lines.order_by("position")),
        reads=bill_reads(invoice=invoice, tz=tz, start=postpaid_from),
        applied=list(
            invoice.allocations.select_related("payment").order_by("payment__created_at", "pk")
        ),
        paid_minor=allocation.invoice_paid_minor(invoice=invoice),
        outstanding_minor=allocation.invoice_outstanding_minor(invoice=invoice),
        amount_due_minor=invoice_amount_due(invoice=invoice),
        carried_debt_minor=allocation.tenancy_carried_debt_minor(tenancy_id=invoice.tenancy_id),
        # A prepaid unit's payments beyond its bills are its prepaid credit, not carried.
        credit_carried_minor=0
        if unit.is_prepaid
        else max(allocation.tenancy_credit_minor(tenancy_id=tenancy.pk), 0),
        fee_billed_on=invoice.late_fee_billed_on,
        postpaid_from=postpaid_from,
        turned_prepaid=unit.is_prepaid,
    )
