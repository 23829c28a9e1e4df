"""Periodic payment and billing work, found by the task consumer.

Tasks queued by the code are defined next to the function they run
(``payments.services.payment_event_process_task``,
``payments.services.saved_method_describe_task``,
``payments.automatic.autopay_invoice_task``); the names below keep tasks
queued before those moved runnable.
"""

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from . import automatic, bill_emails, billing, late_fees, reminders, services
from .automatic import autopay_invoice_task
from .services import payment_event_process_task, saved_method_describe_task

__all__ = ["autopay_invoice_task", "payment_event_process_task", "saved_method_describe_task"]


# Periodic billing: debit windows that closed without a new reading, daily
# standing charges, and the bills of closed postpaid cycles. All idempotent.
@db_periodic_task(crontab(minute="*"))
def billing_sweep_periodic() -> int:
    return billing.billing_sweep()


@db_periodic_task(crontab(minute="7"))
def invoices_issue_periodic() -> int:
    return len(billing.invoices_issue_due())


# Events whose processing was lost, and waiting ones whose payment is now
# known; reports those that stay unresolved (services.payment_events_redrive).
@db_periodic_task(crontab(minute="*"), name="payment_events_redrive")
def payment_events_redrive_periodic() -> int:
    return services.payment_events_redrive()


# Each bill issued (by the run above, a move-out or a switch) emailed once with its PDF.
@db_periodic_task(crontab(minute="*"), name="bills_email_issued")
def bills_email_periodic() -> int:
    return bill_emails.bills_email_issued()


# Postpaid autopay on each bill's due date (local), once per bill.
@db_periodic_task(crontab(minute="17"), name="autopays_run_due")
def autopays_due_periodic() -> int:
    return automatic.autopays_run_due()


# Reminders of unpaid postpaid bills, before and after their due date, once each.
@db_periodic_task(crontab(minute="23"), name="bill_reminders_send")
def bill_reminders_periodic() -> int:
    return reminders.bill_reminders_send()


# Late fees on postpaid bills still unpaid after their grace days, once per bill.
@db_periodic_task(crontab(minute="29"), name="late_fees_post_due")
def late_fees_periodic() -> int:
    return late_fees.late_fees_post_due()


@db_periodic_task(crontab(minute="*/5"), name="auto_topups_run")
def auto_topups_periodic() -> int:
    """Prepaid auto top-ups: every five minutes, each tenancy at most once per its period."""
    return automatic.auto_topups_run()
