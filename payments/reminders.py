"""Reminders of postpaid bills by email: one before the due date and one once
it has passed, at most once each per bill, and only while something is owed.
Each is also pushed to the tenant's phones (``landlord.push``) in a task of
its own after the email is sent, held in the tenant's quiet
hours; a push failure never holds back the email.

``bill_reminders_send`` runs hourly (``payments.tasks``); each reminder is
claimed by setting its ``reminded_*_at`` under the bill's row lock, and its
email sent once that commits (no lock is held while the mail server answers),
so two runs never send it twice; a failed send takes the claim back, and the
next run tries again.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.tasks import task
from django.urls import reverse
from django.utils import timezone

from config.formats import format_money
from landlord.push import push_configured, push_payload, tenant_push_send
from supply.alerts import tenancy_notifications, tenant_notification_choice

from .models import Invoice, PaymentSettings
from .services import invoice_amount_due

logger = logging.getLogger(__name__)

DUE = "due"
OVERDUE = "overdue"


def reminder_due(*, due_date: date, today: date, days_before: int) -> str | None:
    """Which reminder a bill due on ``due_date`` calls for today, if any."""
    if today > due_date:
        return OVERDUE
    if today >= due_date - timedelta(days=days_before):
        return DUE
    return None


def _send(invoice: Invoice, kind: str, amount_minor: int) -> None:
    tenant_email = invoice.tenancy.tenant.email
    if not tenant_email:
        return
    owed = format_money(amount_minor, invoice.currency)
    link = reverse("payments:invoice", args=[invoice.pk])
    if kind == DUE:
        subject = f"Your bill is due on {invoice.due_date:%d %b %Y}"
        body = (
            f"{owed} is still to pay on bill {invoice.number}, due on {invoice.due_date:%d %b %Y}."
        )
    else:
        subject = f"Your bill is overdue: {owed} to pay"
        body = (
            f"Bill {invoice.number} was due on {invoice.due_date:%d %b %Y} and "
            f"{owed} is still to pay."
        )
    autopay = PaymentSettings.objects.filter(tenancy_id=invoice.tenancy_id, autopay_enabled=True)
    if kind == DUE and autopay.exists():
        body += " Autopay will charge your saved card on the due date."
    send_mail(
        subject=subject,
        message=f"{body}\n\nSee the bill and pay: {link}",
        from_email=None,
        recipient_list=[tenant_email],
    )


def bill_reminder_send(*, invoice_id: int, kind: str, now: datetime) -> bool:
    """Send one reminder of a bill if it was not sent yet and something is owed.

    The reminder is claimed (its ``reminded_*_at`` set) under the bill's row
    lock in a short transaction, and the email sent after it commits, so a slow
    mail server holds no lock on the bill. If sending fails the claim is taken
    back and the error raised: the next run tries again, and nothing is pushed.
    """
    field = "reminded_due_at" if kind == DUE else "reminded_overdue_at"
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("tenancy__tenant", "tenancy__unit__property")
            .filter(pk=invoice_id, **{f"{field}__isnull": True})
            .first()
        )
        if invoice is None:
            return False
        amount = invoice_amount_due(invoice=invoice)
        if amount <= 0:
            return False  # paid: nothing to remind of (a later refund may call for it)
        setattr(invoice, field, now)
        invoice.save(update_fields=[field])
    try:
        _send(invoice, kind, amount)
    except Exception:
        Invoice.objects.filter(pk=invoice_id, **{field: now}).update(**{field: None})
        raise
    if push_configured():
        transaction.on_commit(
            lambda: bill_reminder_push_task.enqueue(invoice_id, kind), robust=True
        )
    return True


def bill_reminder_push(*, invoice_id: int, kind: str, now: datetime | None = None) -> int:
    """Push a bill's reminder to the tenant's phones (after its email); how many took it.

    Held until the end of the tenant's quiet hours; not pushed if the bill was
    paid meanwhile. Runs in a task, outside any transaction.
    """
    now = now or timezone.now()
    invoice = (
        Invoice.objects.select_related("tenancy__notifications", "tenancy__unit__property")
        .filter(pk=invoice_id, tenancy__isnull=False)
        .first()
    )
    if invoice is None or invoice.due_date is None:
        return 0
    amount = invoice_amount_due(invoice=invoice)
    if amount <= 0:
        return 0
    prefs = tenancy_notifications(invoice.tenancy)
    _, hold = tenant_notification_choice(
        kind=f"bill_{kind}", prefs=prefs, now=now, tz=invoice.tenancy.unit.property.timezone
    )
    if hold is not None:
        bill_reminder_push_task.using(run_after=hold).enqueue(invoice_id, kind)
        return 0
    owed = format_money(amount, invoice.currency)
    due = f"{invoice.due_date:%d %b %Y}"
    if kind == DUE:
        title, body = f"Bill due on {due}", f"{owed} still to pay on bill {invoice.number}."
    else:
        title, body = "Bill overdue", f"Bill {invoice.number} was due on {due}: {owed} to pay."
    payload = push_payload(
        title=title,
        body=body,
        url=reverse("payments:invoice", args=[invoice.pk]),
        tag=f"bill-{invoice.pk}",
    )
    return tenant_push_send(tenancy_id=invoice.tenancy_id, payload=payload)


@task()
def bill_reminder_push_task(invoice_id: int, kind: str) -> int:
    return bill_reminder_push(invoice_id=invoice_id, kind=kind)


def bill_reminders_send(*, now: datetime | None = None) -> int:
    """Reminders due now for every bill with a due date, in each property's time zone."""
    now = now or timezone.now()
    days_before = int(settings.SUBMETER["BILL_REMINDER_DAYS_BEFORE"])
    waiting = Invoice.objects.filter(due_date__isnull=False).filter(
        Q(reminded_due_at__isnull=True) | Q(reminded_overdue_at__isnull=True)
    )
    sent = 0
    zones = waiting.values_list("tenancy__unit__property__timezone", flat=True).distinct()
    for zone in sorted(set(zones)):
        today = timezone.localtime(now, zoneinfo.ZoneInfo(zone)).date()
        rows = waiting.filter(
            tenancy__unit__property__timezone=zone,
            due_date__lte=today + timedelta(days=days_before),
        ).values_list("pk", "due_date", "reminded_due_at", "reminded_overdue_at")
        for pk, due_date, due_sent, overdue_sent in rows.order_by("due_date", "pk"):
            if due_date is None:
                continue  # excluded by the query; keeps the type exact
            kind = reminder_due(due_date=due_date, today=today, days_before=days_before)
            if (kind == DUE and due_sent is None) or (kind == OVERDUE and overdue_sent is None):
                try:
                    sent += bill_reminder_send(invoice_id=pk, kind=kind, now=now)
                except Exception:
                    logger.exception("reminder of invoice %s could not be sent", pk)
    return sent
