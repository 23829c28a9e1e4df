"""Periodic dispute work, found by the task consumer."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from .services import dispute_deadlines_run


@db_periodic_task(crontab(minute="*/5"), name="dispute_deadlines")
def dispute_deadlines_periodic() -> int:
    """Every five minutes: reminders before a dispute's deadline, and what follows
    once it passed (the landlord's silence goes to the admins)."""
    return dispute_deadlines_run()
