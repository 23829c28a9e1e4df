"""Periodic landlord work, found by the task consumer."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from .mode_switches import mode_switches_apply_due


# Switches between prepaid and postpaid scheduled for a chosen moment: every
# minute, those whose moment has come.
@db_periodic_task(crontab(minute="*"), name="mode_switches_apply_due")
def mode_switches_periodic() -> int:
    return mode_switches_apply_due()
