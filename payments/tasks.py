from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from . import services


@task()
def payment_event_process_task(event_id: int) -> str:
    return services.payment_event_process(event_id=event_id)


# Periodic billing: debit windows that closed without a new reading, daily
# standing charges, and last month's postpaid bills. All idempotent.
@db_periodic_task(crontab(minute="*"))
def billing_sweep_periodic() -> int:
    from . import billing

    return billing.billing_sweep()


@db_periodic_task(crontab(minute="7"))
def invoices_issue_periodic() -> int:
    from . import billing

    return len(billing.invoices_issue_due())


# Events whose processing was lost, and waiting ones whose payment is now
# known; reports those that stay unresolved (services.payment_events_redrive).
@db_periodic_task(crontab(minute="*"), name="payment_events_redrive")
def payment_events_redrive_periodic() -> int:
    return services.payment_events_redrive()


@task()
def saved_method_describe_task(method_id: int) -> None:
    from .automatic import saved_method_describe

    saved_method_describe(method_id=method_id)


@db_periodic_task(crontab(minute="*/5"), name="auto_topups_run")
def auto_topups_periodic() -> int:
    """Prepaid auto top-ups: every five minutes, each tenancy at most once per its period."""
    from .automatic import auto_topups_run

    return auto_topups_run()


@task()
def autopay_invoice_task(invoice_id: int) -> None:
    from .automatic import autopay_for_invoice

    autopay_for_invoice(invoice_id=invoice_id)
