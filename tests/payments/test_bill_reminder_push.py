"""A postpaid bill's reminders are pushed to the tenant's phones beside their emails,
held in quiet hours, and never hold back the email."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from landlord.models import PushSubscription, TenantNotifications
from payments import billing
from payments.reminders import DUE, bill_reminder_push, bill_reminders_send

from .test_billing import _pay

KEYS = {"VAPID_PUBLIC_KEY": "public", "VAPID_PRIVATE_KEY": "private"}


@pytest.fixture
def world(postpaid_tou, settings):
    for name, value in KEYS.items():
        setattr(settings, name, value)
    settings.SUBMETER = {**settings.SUBMETER, "BILL_REMINDER_DAYS_BEFORE": 3}
    postpaid_tou.postpaid_tenant.email = "t2@example.com"
    postpaid_tou.postpaid_tenant.save()
    tenancy = postpaid_tou.postpaid_tenancy
    PushSubscription.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        user=tenancy.tenant,
        endpoint="https://fcm.googleapis.com/fcm/send/1",
        p256dh="P",
        auth="A",
    )
    return postpaid_tou


def _invoice(world):
    return billing.invoice_issue(
        tenancy=world.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        now=datetime(2026, 2, 1, 9, tzinfo=UTC),
    )


def _payloads(sender) -> list[dict]:
    return [json.loads(call.kwargs["data"]) for call in sender.call_args_list]


def test_due_and_overdue_reminders_are_pushed(world, django_capture_on_commit_callbacks):
    invoice = _invoice(world)
    with mock.patch("landlord.push.webpush") as webpush:
        with django_capture_on_commit_callbacks(execute=True):
            assert bill_reminders_send(now=datetime(2026, 2, 12, 9, tzinfo=UTC)) == 1
        _pay(world.postpaid_tenancy, 1000)
        with django_capture_on_commit_callbacks(execute=True):
            assert bill_reminders_send(now=datetime(2026, 2, 16, 0, 30, tzinfo=UTC)) == 1
    url = reverse("payments:invoice", args=[invoice.pk])
    assert _payloads(webpush) == [
        {
            "title": "Bill due on 15 Feb 2026",
            "body": f"£16.28 still to pay on bill {invoice.number}.",
            "url": url,
            "tag": f"bill-{invoice.pk}",
        },
        {
            "title": "Bill overdue",
            "body": f"Bill {invoice.number} was due on 15 Feb 2026: £6.28 to pay.",
            "url": url,
            "tag": f"bill-{invoice.pk}",
        },
    ]
    assert len(mail.outbox) == 2


def test_the_reminder_email_goes_when_the_push_fails(world, django_capture_on_commit_callbacks):
    _invoice(world)
    with (
        mock.patch("landlord.push.webpush", side_effect=OSError("down")) as webpush,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert bill_reminders_send(now=datetime(2026, 2, 12, 9, tzinfo=UTC)) == 1
    assert webpush.call_count == 1
    assert [m.subject for m in mail.outbox] == ["Your bill is due on 15 Feb 2026"]


def test_quiet_hours_hold_the_push_and_a_paid_bill_is_not_pushed(world):
    invoice = _invoice(world)
    tenancy = world.postpaid_tenancy
    local = timezone.localtime(timezone.now(), zoneinfo.ZoneInfo(tenancy.unit.property.timezone))
    TenantNotifications.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        quiet_start=(local - timedelta(hours=1)).time(),
        quiet_end=(local + timedelta(hours=1)).time(),
    )
    with (
        mock.patch("landlord.push.webpush") as webpush,
        mock.patch("payments.reminders.bill_reminder_push_task") as task,
    ):
        assert bill_reminder_push(invoice_id=invoice.pk, kind=DUE) == 0
        assert task.using.call_args.kwargs["run_after"] > timezone.now()
        TenantNotifications.objects.filter(tenancy=tenancy).update(quiet_start=None, quiet_end=None)
        _pay(tenancy, invoice.total_minor)
        assert bill_reminder_push(invoice_id=invoice.pk, kind=DUE) == 0
    assert webpush.call_count == 0
