"""What payment pages show, read-only."""

from __future__ import annotations

import itertools
import zoneinfo
from collections import defaultdict
from datetime import date, datetime, time, timedelta

from django.db.models import BigIntegerField, Q, QuerySet
from django.utils import timezone

from config.prepared import Param, Prepared
from landlord.models import Tenancy
from meters.models import Interval

from . import advice, automatic
from .ledger import tenant_account
from .models import Invoice, Payment
from .providers import get_provider
from .services import invoice_amount_due


def tenant_payment_context(*, tenancy: Tenancy) -> dict[str, object]:
    """What the tenant's page shows about paying: can they, saved card, payments to confirm."""
    provider = get_provider()
    payee = provider.payee_status(landlord=tenancy.landlord) if provider else None
    return {
        "payee_ready": bool(payee and payee.ready),
        "payee_message": (payee.message if payee else "Payments are not available yet."),
        "saved_method": automatic.saved_method_for(tenancy=tenancy),
        **_recent_and_to_confirm(tenancy=tenancy),
    }


def _recent_and_to_confirm_query() -> QuerySet[Payment]:
    order = ("-created_at", "-pk")
    live = Payment.objects.filter(tenancy_id=Param("tenancy_id", BigIntegerField())).exclude(
        status=Payment.Status.CANCELED
    )
    recent = live.order_by(*order).values("pk")[:5]
    to_confirm = Q(status=Payment.Status.PENDING, off_session=True) & ~Q(action_url="")
    return live.filter(Q(pk__in=recent) | to_confirm).order_by(*order)


_RECENT_AND_TO_CONFIRM: Prepared[Payment] = Prepared(_recent_and_to_confirm_query)


def _recent_and_to_confirm(*, tenancy: Tenancy) -> dict[str, list[Payment]]:
    """The last five payments and those the bank asks the tenant to confirm, in one
    query: the five newest rows are the recent ones (any other row is older)."""
    rows = _RECENT_AND_TO_CONFIRM.run(tenancy_id=tenancy.pk)
    return {
        "recent_payments": rows[:5],
        "payments_to_confirm": [
            p for p in rows if p.status == Payment.Status.PENDING and p.off_session and p.action_url
        ][:3],
    }


ADVICE_DAYS = 60
PAYMENT_HISTORY_DAYS = 365


def tenancy_advice(*, tenancy: Tenancy, now: datetime | None = None) -> advice.Advice:
    """The facts ``payments.advice.advise`` weighs, read for one tenancy, and its advice."""
    now = now or timezone.now()
    tz = zoneinfo.ZoneInfo(tenancy.unit.property.timezone)
    today = timezone.localdate(now, tz)
    since = now - timedelta(days=ADVICE_DAYS)
    start = max(since, datetime.combine(tenancy.start_date, time(0), tz))
    daily: dict[date, int] = defaultdict(int)
    slots = Interval.objects.filter(
        meter__unit_id=tenancy.unit_id, kind=Interval.Kind.SLOT, start__gte=start, start__lt=now
    ).values_list("start", "energy_wh")
    for at, wh in slots:
        daily[timezone.localtime(at, tz).date()] += wh
    # Today is not over: its energy would look like a low day.
    daily.pop(today, None)

    bills_due = bills_late = 0
    due = Invoice.objects.filter(tenancy_id=tenancy.pk, due_date__lt=today).order_by("pk")
    for invoice in due.prefetch_related("allocations__payment__ledger_transaction"):
        bills_due += 1
        due_date = invoice.due_date or today
        on_time = 0
        for row in invoice.allocations.all():
            credited = row.payment.ledger_transaction
            if credited is not None and timezone.localdate(credited.created_at, tz) <= due_date:
                on_time += row.amount_minor
        if on_time < max(invoice.total_minor, 0):
            bills_late += 1

    payments = Payment.objects.filter(
        tenancy_id=tenancy.pk,
        created_at__gte=now - timedelta(days=PAYMENT_HISTORY_DAYS),
        status__in=[Payment.Status.SUCCEEDED, Payment.Status.FAILED],
    ).exclude(purpose=Payment.Purpose.DEPOSIT)
    tried = failed = 0
    topups: list[datetime] = []
    for status, purpose, at in payments.values_list("status", "purpose", "created_at"):
        tried += 1
        failed += status == Payment.Status.FAILED
        if (
            status == Payment.Status.SUCCEEDED
            and purpose in (Payment.Purpose.TOPUP, Payment.Purpose.AUTO_TOPUP)
            and at >= since
        ):
            topups.append(at)
    topups.sort()
    gaps = [(b - a).total_seconds() / 86400 for a, b in itertools.pairwise(topups)]

    balance = tenant_account(tenancy=tenancy).balance_minor
    if tenancy.unit.is_prepaid:
        arrears = max(-balance, 0)
    else:
        arrears = min(sum(invoice_amount_due(invoice=i) for i in due), max(-balance, 0))
    return advice.advise(
        advice.History(
            mode=tenancy.unit.billing_mode,
            daily_wh=[daily[d] for d in sorted(daily)],
            bills_due=bills_due,
            bills_late=bills_late,
            payments_tried=tried,
            payments_failed=failed,
            topup_gap_days=gaps,
            arrears_minor=arrears,
        )
    )
