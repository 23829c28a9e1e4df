"""Each bill emailed to its tenant once, with its PDF attached.

The billing run only stores bills (``payments.billing``); a periodic sweep
(``payments.tasks``) emails the ones not emailed yet, each claimed by setting
its ``emailed_at`` under the bill's row lock and sent once that commits, as
the reminders are (``payments.reminders``). So the email never rides in a
transaction (neither the one that issued the bill nor one holding a lock while
the mail server answers), a bill issued by the run, a move-out or a switch is
sent the same way, two sweeps never send it twice, and a failed send takes
the claim back and is tried again at the next sweep.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from config.formats import format_money

from .bill_pdf import bill_pdf, bill_pdf_filename
from .models import Invoice
from .statements import BillStatement, bill_statement

logger = logging.getLogger(__name__)


def bill_email_message(*, statement: BillStatement, to: str) -> EmailMessage:
    inv = statement.invoice
    due = format_money(statement.amount_due_minor, inv.currency)
    if statement.amount_due_minor > 0:
        by = f" by {inv.due_date:%d %b %Y}" if inv.due_date else ""
        owed = f"{due} to pay{by}."
    else:
        owed = "Nothing is left to pay on it."
    body = (
        f"Your bill for {inv.period_start:%B %Y} from {statement.landlord_name} "
        f"({statement.property_name}, {statement.unit_name}) is ready: "
        f"{format_money(inv.total_minor, inv.currency)} for the period, {owed}\n\n"
        "The bill is attached as a PDF. See it and pay: "
        f"{reverse('payments:invoice', args=[inv.pk])}"
    )
    message = EmailMessage(
        subject=f"Your bill for {inv.period_start:%B %Y}: {due} to pay", body=body, to=[to]
    )
    message.attach(bill_pdf_filename(inv), bill_pdf(statement), "application/pdf")
    return message


def bill_email_send(*, invoice_id: int, now: datetime | None = None) -> bool:
    """Email one bill with its PDF if it was not emailed yet; True if a message went out."""
    with transaction.atomic():
        invoice = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("tenancy__tenant", "tenancy__unit__property", "tenancy__unit__landlord")
            .filter(pk=invoice_id, emailed_at__isnull=True)
            .first()
        )
        if invoice is None:
            return False
        claimed = now or timezone.now()
        invoice.emailed_at = claimed
        invoice.save(update_fields=["emailed_at"])
    # Claimed and committed: the PDF is drawn and the mail sent with no lock held.
    to = invoice.tenancy.tenant.email
    if not to:
        return False  # no address: the bill is on the tenant's page
    try:
        bill_email_message(statement=bill_statement(invoice=invoice), to=to).send()
    except Exception:
        Invoice.objects.filter(pk=invoice_id, emailed_at=claimed).update(emailed_at=None)
        raise
    return True


def bills_email_issued(*, now: datetime | None = None) -> int:
    """Email every bill not emailed yet, oldest first. Returns the number sent."""
    pending = (
        Invoice.objects.filter(emailed_at__isnull=True)
        .order_by("issued_at", "pk")
        .values_list("pk", flat=True)
    )
    sent = 0
    for pk in list(pending):
        try:
            sent += bill_email_send(invoice_id=pk, now=now)
        except Exception:
            logger.exception("bill %s could not be emailed", pk)
    return sent
