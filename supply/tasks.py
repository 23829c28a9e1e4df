"""Periodic supply work, found by the task consumer."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from .alerts import alert_emails_sweep
from .decision import supply_reconcile


@db_periodic_task(crontab(minute="*"), name="supply_reconcile")
def supply_reconcile_periodic() -> int:
    """Every minute: a scheduled cut-off whose queued task was lost still happens,
    and silent devices raise an alert to the landlord."""
    return supply_reconcile()


@db_periodic_task(crontab(minute="*"), name="alert_emails_sweep")
def alert_emails_sweep_periodic() -> int:
    """Every minute: alert emails still owed (retries used up, task lost) are queued
    again; each is sent at most once."""
    return len(alert_emails_sweep())
