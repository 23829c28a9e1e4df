"""Periodic supply work, found by the task consumer."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from .decision import supply_reconcile


@db_periodic_task(crontab(minute="*"), name="supply_reconcile")
def supply_reconcile_periodic() -> int:
    """Every minute: a scheduled cut-off whose queued task was lost still happens,
    and silent devices raise an alert to the landlord."""
    return supply_reconcile()
