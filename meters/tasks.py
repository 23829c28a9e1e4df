"""Periodic work for readings and devices.

Tasks queued by the code are defined next to the function they run
(``meters.readings.readings_rate_task``, ``supply.decision.supply_cutoff_due_task``,
``supply.alerts.alert_email_task``); periodic ones are registered here and in
``supply/tasks.py``, where the task consumer finds them. The names below keep
tasks queued before those moved runnable.
"""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from supply.alerts import alert_email_task
from supply.decision import supply_cutoff_due_task

from .readings import readings_rate_pending, readings_rate_task
from .retention import readings_prune

__all__ = ["alert_email_task", "readings_rate_task", "supply_cutoff_due_task"]


@db_periodic_task(crontab(minute="*"), name="readings_rate")
def readings_rate_periodic() -> int:
    """Every minute: rate anything staged whose queued task was lost."""
    return readings_rate_pending()


@db_periodic_task(crontab(minute="23", hour="3"), name="readings_prune")
def readings_prune_periodic() -> int:
    """Daily: thin raw readings older than READING_RETENTION_DAYS (off when 0)."""
    return readings_prune().deleted
