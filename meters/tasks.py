"""Background work for devices: rating staged readings, alert emails, supply reconciliation."""

from __future__ import annotations

from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from . import alerts, services


@task()
def alert_email_task(alert_id: int) -> bool:
    return alerts.alert_email_send(alert_id=alert_id)


@task()
def readings_rate_task(device_ids: list[int] | None = None) -> int:
    """Rate what device sockets staged (queued by ``services.readings_rate_soon``)."""
    return services.readings_rate_pending(device_ids=device_ids)


@db_periodic_task(crontab(minute="*"), name="readings_rate")
def readings_rate_periodic() -> int:
    """Every minute: rate anything staged whose queued task was lost."""
    return services.readings_rate_pending()


@task()
def supply_cutoff_due_task(unit_id: int) -> int:
    """Queued for the moment a scheduled cut-off falls due (``run_after``)."""
    return len(services.supply_cutoff_due(unit_id=unit_id))


@db_periodic_task(crontab(minute="*"), name="supply_reconcile")
def supply_reconcile_periodic() -> int:
    """Every minute: a scheduled cut-off whose queued task was lost still happens,
    and silent devices raise an alert to the landlord."""
    return services.supply_reconcile()
