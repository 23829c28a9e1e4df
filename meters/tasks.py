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


@db_periodic_task(crontab(minute="*"), name="supply_reconcile")
def supply_reconcile_periodic() -> int:
    """Every minute: scheduled cut-offs fall due without waiting for a reading;
    silent devices raise an alert to the landlord."""
    return services.supply_reconcile()
