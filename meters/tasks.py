"""Background work for devices: alert emails and the periodic supply reconciliation."""

from __future__ import annotations

from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from . import alerts, services


@task()
def alert_email_task(alert_id: int) -> bool:
    return alerts.alert_email_send(alert_id=alert_id)


@db_periodic_task(crontab(minute="*"), name="supply_reconcile")
def supply_reconcile_periodic() -> int:
    """Every minute: scheduled cut-offs fall due without waiting for a reading;
    silent devices raise an alert to the landlord."""
    return services.supply_reconcile()
