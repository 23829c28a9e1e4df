"""Mail backends for tests of what happens when sending fails."""

from __future__ import annotations

from django.core.mail.backends.locmem import EmailBackend


class DownBackend(EmailBackend):
    """A mail server that refuses every message."""

    def send_messages(self, messages):
        raise ConnectionRefusedError("SMTP server down")


DOWN = "tests.mailboxes.DownBackend"
