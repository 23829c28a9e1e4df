"""Reminders of a postpaid bill: once before its due date, once after, only while owed."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection

from payments import billing
from payments.models import Invoice
from payments.reminders import DUE, OVERDUE, bill_reminders_send, reminder_due
from tests.mailboxes import DOWN

from .test_billing import _pay


def test_which_reminder_a_day_calls_for():
    due = date(2026, 2, 15)
    assert reminder_due(due_date=due, today=date(2026, 2, 11), days_before=3) is None
    assert reminder_due(due_date=due, today=date(2026, 2, 12), days_before=3) == DUE
    assert reminder_due(due_date=due, today=due, days_before=3) == DUE
    assert reminder_due(due_date=due, today=date(2026, 2, 16), days_before=3) == OVERDUE


def test_reminders_are_sent_once_each(postpaid_tou, settings):
    settings.SUBMETER = {**settings.SUBMETER, "BILL_REMINDER_DAYS_BEFORE": 3}
    world = postpaid_tou
    world.postpaid_tenant.email = "t2@example.com"
    world.postpaid_tenant.save()
    invoice = billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        now=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )
    assert invoice.due_date == date(2026, 2, 15)
    # too early
    assert bill_reminders_send(now=datetime(2026, 2, 11, 12, tzinfo=UTC)) == 0
    # three days before: one reminder, then no more
    assert bill_reminders_send(now=datetime(2026, 2, 12, 9, tzinfo=UTC)) == 1
    assert bill_reminders_send(now=datetime(2026, 2, 14, 9, tzinfo=UTC)) == 0
    assert bill_reminders_send(now=datetime(2026, 2, 15, 23, tzinfo=UTC)) == 0
    [before] = mail.outbox
    assert before.to == ["t2@example.com"]
    assert before.subject == "Your bill is due on 15 Feb 2026"
    assert "£16.28 is still to pay" in before.body
    # overdue the day after: one more, once; it tells what is still owed
    _pay(world.postpaid_tenancy, 1000)
    assert bill_reminders_send(now=datetime(2026, 2, 16, 0, 30, tzinfo=UTC)) == 1
    assert bill_reminders_send(now=datetime(2026, 2, 20, 9, tzinfo=UTC)) == 0
    assert [m.subject for m in mail.outbox[1:]] == ["Your bill is overdue: £6.28 to pay"]
    invoice.refresh_from_db()
    assert invoice.reminded_due_at and invoice.reminded_overdue_at


def test_no_reminder_for_a_paid_bill(postpaid_tou):
    world = postpaid_tou
    invoice = billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        now=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )
    _pay(world.postpaid_tenancy, invoice.total_minor)
    assert bill_reminders_send(now=datetime(2026, 2, 14, 9, tzinfo=UTC)) == 0
    assert bill_reminders_send(now=datetime(2026, 2, 20, 9, tzinfo=UTC)) == 0
    assert mail.outbox == []


class WatchingBackend(EmailBackend):
    """The test mail box, noting for each send whether a transaction was open and
    whether the reminder was already claimed."""

    seen: list[tuple[bool, bool]] = []

    def send_messages(self, messages):
        claimed = Invoice.objects.filter(reminded_due_at__isnull=False).exists()
        WatchingBackend.seen.append((connection.in_atomic_block, claimed))
        return super().send_messages(messages)


def _backend(settings, backend: str) -> None:
    settings.MAILERS = {"default": {"BACKEND": backend}}
    settings.SUBMETER = {**settings.SUBMETER, "BILL_REMINDER_DAYS_BEFORE": 3}


@pytest.mark.django_db(transaction=True)
def test_the_reminder_is_sent_after_its_claim_commits_with_no_lock_held(tpostpaid_tou, settings):
    _backend(settings, f"{__name__}.WatchingBackend")
    WatchingBackend.seen = []
    world = tpostpaid_tou
    world.postpaid_tenant.email = "t2@example.com"
    world.postpaid_tenant.save()
    billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        now=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )
    assert connection.in_atomic_block is False
    assert bill_reminders_send(now=datetime(2026, 2, 12, 9, tzinfo=UTC)) == 1
    assert WatchingBackend.seen == [(False, True)]
    assert len(mail.outbox) == 1


def test_a_failed_reminder_is_taken_back_and_sent_at_the_next_run(postpaid_tou, settings):
    _backend(settings, DOWN)
    world = postpaid_tou
    world.postpaid_tenant.email = "t2@example.com"
    world.postpaid_tenant.save()
    invoice = billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        now=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )
    assert bill_reminders_send(now=datetime(2026, 2, 12, 9, tzinfo=UTC)) == 0
    invoice.refresh_from_db()
    assert invoice.reminded_due_at is None
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    assert bill_reminders_send(now=datetime(2026, 2, 12, 10, tzinfo=UTC)) == 1
    assert bill_reminders_send(now=datetime(2026, 2, 12, 11, tzinfo=UTC)) == 0
    assert [m.subject for m in mail.outbox] == ["Your bill is due on 15 Feb 2026"]
