"""Late fees on postpaid bills: off unless the property sets a fixed amount or a
percentage; charged once per bill, through the ledger, when the bill is still
unpaid ``late_fee_grace_days`` after its due date; shown on the next bill.

The fee is the fixed amount plus the percentage of what is still owed on the
bill, less any amount in dispute, rounded down, and at most the cap. Nothing is
charged on an amount under open dispute.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from disputes.models import Dispute
from landlord.audit import audit_record
from landlord.models import Property
from supply.decision import supply_evaluate

from .ledger import Leg, landlord_account, ledger_post, tenant_account
from .models import Account, Invoice, LedgerTransaction
from .services import invoice_amount_due

logger = logging.getLogger(__name__)


def late_fee_amount(*, owed_minor: int, fixed_minor: int, percent: Decimal, cap_minor: int) -> int:
    """The fee on ``owed_minor`` still unpaid (0 when nothing is owed)."""
    if owed_minor <= 0:
        return 0
    share = (Decimal(owed_minor) * percent / 100).to_integral_value(rounding=ROUND_FLOOR)
    fee = fixed_minor + int(share)
    return min(fee, cap_minor) if cap_minor > 0 else fee


def amount_in_dispute(invoice: Invoice) -> int:
    """The part of the bill the tenant disputes and that is not resolved yet: a
    late fee is charged only on the rest. A dispute that names no amount holds
    the whole bill."""
    disputed = 0
    for amount in (
        Dispute.objects.unresolved().filter(invoice=invoice).values_list("amount_minor", flat=True)
    ):
        disputed += invoice.total_minor if amount is None else amount
    return min(disputed, max(invoice.total_minor, 0))


@transaction.atomic
def late_fee_post(*, invoice_id: int, now: datetime) -> int:
    """Charge the bill's late fee if it is due and was not charged; returns the fee."""
    invoice = (
        Invoice.objects.select_for_update(of=("self",))
        .select_related("tenancy__unit__property", "tenancy__landlord")
        .get(pk=invoice_id)
    )
    if invoice.late_fee_at is not None or invoice.due_date is None:
        return 0
    tenancy = invoice.tenancy
    prop = tenancy.unit.property
    today = timezone.localtime(now, zoneinfo.ZoneInfo(prop.timezone)).date()
    if today <= invoice.due_date + timedelta(days=prop.late_fee_grace_days):
        return 0
    owed = invoice_amount_due(invoice=invoice) - amount_in_dispute(invoice)
    fee = late_fee_amount(
        owed_minor=owed,
        fixed_minor=prop.late_fee_fixed_minor,
        percent=prop.late_fee_percent,
        cap_minor=prop.late_fee_cap_minor,
    )
    if fee <= 0:
        return 0
    tenant = tenant_account(tenancy=tenancy)
    revenue = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.REVENUE, currency=tenant.currency
    )
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.LATE_FEE,
        idempotency_key=f"late-fee:{invoice.pk}",
        legs=[Leg(debit=tenant, credit=revenue, amount_minor=fee)],
        memo=f"Late fee: bill {invoice.number} unpaid after {invoice.due_date:%d %b %Y}",
    )
    invoice.late_fee_minor = fee
    invoice.late_fee_at = now
    invoice.save(update_fields=["late_fee_minor", "late_fee_at"])
    audit_record(
        landlord_id=tenancy.landlord_id,
        action="invoice.late_fee",
        tenancy=tenancy,
        data={"invoice": invoice.number, "amount_minor": fee, "owed_minor": owed},
    )
    supply_evaluate(unit=tenancy.unit, reason="late fee")
    return fee


def late_fees_post_due(*, now: datetime | None = None) -> int:
    """Charge every late fee due now (each property's grace and time zone); idempotent."""
    now = now or timezone.now()
    charging = Property.objects.filter(Q(late_fee_fixed_minor__gt=0) | Q(late_fee_percent__gt=0))
    charged = 0
    for prop in charging:
        today = timezone.localtime(now, zoneinfo.ZoneInfo(prop.timezone)).date()
        late = Invoice.objects.filter(
            tenancy__unit__property=prop,
            late_fee_at__isnull=True,
            due_date__lt=today - timedelta(days=prop.late_fee_grace_days),
        )
        for invoice_id in late.order_by("due_date", "pk").values_list("pk", flat=True):
            try:
                charged += bool(late_fee_post(invoice_id=invoice_id, now=now))
            except Exception:
                logger.exception("late fee of invoice %s could not be charged", invoice_id)
    return charged
