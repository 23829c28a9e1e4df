"""Fixtures shared by the meters tests."""

from __future__ import annotations

import pytest
from huey.contrib.djhuey import HUEY

EMAIL_TASK = "supply.alerts.alert_email_task"


@pytest.fixture
def queued_emails():
    """The alert emails queued for later (Huey's schedule): (alert id, attempt, when)."""
    HUEY.flush()

    def read() -> list[tuple[int, int, object]]:
        return [
            (t.args[1][0], t.args[1][1] if len(t.args[1]) > 1 else 0, t.eta)
            for t in HUEY.scheduled()
            if t.args[0] == EMAIL_TASK
        ]

    yield read
    HUEY.flush()
