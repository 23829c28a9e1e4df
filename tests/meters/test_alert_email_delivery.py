"""An alert's email: decided and marked under the alert's row lock, sent after that
transaction commits, taken back and queued again when the mail server fails; a
low-credit email held by quiet hours is dropped once the tenant has topped up."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connection
from django.utils import timezone

from landlord.models import TenantNotifications
from meters.models import Alert
from supply.alerts import EMAIL_RETRY_DELAYS, alert_email_send
from supply.decision import supply_evaluate
from tests.factories import tenant_alert
from tests.mailboxes import DOWN

from .test_protections import _set_balance

BACKENDS = "tests.meters.test_alert_email_delivery"


class WatchingBackend(EmailBackend):
    """The test mail box, noting for each send whether a transaction was open and
    whether the alert was already marked emailed."""

    seen: list[tuple[bool, bool]] = []

    def send_messages(self, messages):
        committed = Alert.objects.filter(emailed_at__isnull=False).exists()
        WatchingBackend.seen.append((connection.in_atomic_block, committed))
        return super().send_messages(messages)


def _with_email(world) -> None:
    world.prepaid_tenant.email = "t@example.com"
    world.prepaid_tenant.save(update_fields=["email"])


@pytest.mark.django_db(transaction=True)
def test_the_email_is_sent_after_the_mark_commits_with_no_transaction_open(tpersonas, settings):
    settings.MAILERS = {"default": {"BACKEND": f"{BACKENDS}.WatchingBackend"}}
    WatchingBackend.seen = []
    a = tpersonas.a
    _with_email(a)
    warning = tenant_alert(a, Alert.Kind.CUTOFF_WARNING)
    assert connection.in_atomic_block is False
    assert alert_email_send(alert_id=warning.pk) is True
    # no transaction (so no row lock) around the send: the mark before it is committed
    assert WatchingBackend.seen == [(False, True)]
    assert len(mail.outbox) == 1
    assert alert_email_send(alert_id=warning.pk) is False  # never twice
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_failed_email_is_taken_back_and_queued_again(personas, settings, queued_emails):
    a = personas.a
    _with_email(a)
    warning = tenant_alert(a, Alert.Kind.CUTOFF_WARNING)
    settings.MAILERS = {"default": {"BACKEND": DOWN}}
    before = timezone.now()
    assert alert_email_send(alert_id=warning.pk) is False
    warning.refresh_from_db()
    assert warning.emailed_at is None  # the "should send" decision is kept
    [(alert_id, attempt, eta)] = queued_emails()
    assert (alert_id, attempt) == (warning.pk, 1)
    assert eta >= (before + EMAIL_RETRY_DELAYS[0]).replace(tzinfo=None)
    # the retry, with the mail server back: sent once
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    assert alert_email_send(alert_id=warning.pk, attempt=1) is True
    assert alert_email_send(alert_id=warning.pk, attempt=1) is False
    assert [m.subject for m in mail.outbox] == [f"Disconnection warning: {a.prepaid.name}"]


@pytest.mark.django_db
def test_after_the_last_retry_the_email_stays_owed_for_the_sweep(personas, settings, queued_emails):
    a = personas.a
    _with_email(a)
    warning = tenant_alert(a, Alert.Kind.CUTOFF_WARNING)
    settings.MAILERS = {"default": {"BACKEND": DOWN}}
    assert alert_email_send(alert_id=warning.pk, attempt=len(EMAIL_RETRY_DELAYS)) is False
    assert queued_emails() == []
    warning.refresh_from_db()
    # Owed still: the sweep (alert_emails_sweep) tries again later.
    assert warning.emailed_at is None and warning.email_skipped == ""


def _quiet_now(world) -> None:
    local = timezone.localtime(timezone.now(), zoneinfo.ZoneInfo(world.prop.timezone))
    TenantNotifications.objects.create(
        landlord=world.landlord,
        tenancy=world.prepaid_tenancy,
        quiet_start=(local - timedelta(hours=1)).time(),
        quiet_end=(local + timedelta(hours=1)).time(),
    )


def _quiet_hours_end(world) -> None:
    TenantNotifications.objects.filter(tenancy=world.prepaid_tenancy).update(
        quiet_start=None, quiet_end=None
    )


def _evaluate(world, balance: int, capture) -> None:
    with capture(execute=True):
        _set_balance(world.prepaid_tenancy, balance)
        supply_evaluate(unit=world.prepaid, reason="test")


@pytest.mark.django_db
def test_a_held_low_credit_email_is_dropped_after_a_top_up(
    personas, django_capture_on_commit_callbacks, queued_emails
):
    a = personas.a  # threshold £2.00, cleared only from £3.00
    _with_email(a)
    _quiet_now(a)
    _evaluate(a, 150, django_capture_on_commit_callbacks)
    low = Alert.objects.get(kind=Alert.Kind.LOW_CREDIT)
    [(alert_id, _, eta)] = queued_emails()  # held for the end of the quiet hours
    assert alert_id == low.pk and eta > timezone.now().replace(tzinfo=None)
    assert mail.outbox == []
    # topped up in the night, above the threshold but short of the margin that clears it
    _evaluate(a, 250, django_capture_on_commit_callbacks)
    low.refresh_from_db()
    assert low.cleared_at is None
    _quiet_hours_end(a)
    assert alert_email_send(alert_id=low.pk) is False
    assert mail.outbox == []


@pytest.mark.django_db
def test_a_held_low_credit_email_goes_when_the_credit_is_still_low(
    personas, django_capture_on_commit_callbacks, queued_emails
):
    a = personas.a
    _with_email(a)
    _quiet_now(a)
    _evaluate(a, 150, django_capture_on_commit_callbacks)
    low = Alert.objects.get(kind=Alert.Kind.LOW_CREDIT)
    assert [q[0] for q in queued_emails()] == [low.pk]
    _evaluate(a, 120, django_capture_on_commit_callbacks)  # used more overnight
    _quiet_hours_end(a)
    assert alert_email_send(alert_id=low.pk) is True
    assert [m.subject for m in mail.outbox] == [f"Low credit: {a.prepaid.name}"]


@pytest.mark.django_db
def test_the_disconnection_warning_is_never_held_by_quiet_hours(
    personas, django_capture_on_commit_callbacks, queued_emails
):
    a = personas.a
    _with_email(a)
    _quiet_now(a)
    _evaluate(a, -5, django_capture_on_commit_callbacks)  # out of credit
    warning = Alert.objects.get(kind=Alert.Kind.CUTOFF_WARNING)
    assert warning.emailed_at is not None
    assert [m.subject for m in mail.outbox] == [f"Disconnection warning: {a.prepaid.name}"]
    # the low-credit alert raised beside it is the one held
    low = Alert.objects.get(kind=Alert.Kind.LOW_CREDIT)
    assert low.emailed_at is None and [q[0] for q in queued_emails()] == [low.pk]
