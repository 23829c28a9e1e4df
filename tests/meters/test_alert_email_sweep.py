"""The sweep of alert emails still owed (``alert_emails_sweep``): an email whose
retries all failed, or whose task was lost, is queued again and sent once; one
that will never go is decided once and left; a quiet-hours hold and a cleared
condition keep their meaning; the sweep reads only owed alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from landlord.models import TenantNotifications
from meters.models import Alert
from supply.alerts import (
    EMAIL_RETRY_DELAYS,
    EMAIL_SWEEP_WINDOW,
    alert_email_send,
    alert_emails_sweep,
)
from tests.factories import tenant_alert
from tests.mailboxes import DOWN

from .test_alert_email_delivery import (
    _evaluate,
    _quiet_hours_end,
    _quiet_now,
    _with_email,
)
from .test_protections import _set_balance

UP = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}


def _age(alert: Alert, minutes: int) -> None:
    """Let time pass for an alert: its creation and next try move into the past."""
    delta = timedelta(minutes=minutes)
    Alert.objects.filter(pk=alert.pk).update(
        created_at=F("created_at") - delta, email_next_at=F("email_next_at") - delta
    )


@pytest.mark.django_db
def test_a_warning_refused_by_every_retry_is_delivered_once_by_the_sweep(
    personas, settings, queued_emails
):
    # given: a disconnection warning in the tenant's quiet hours, the mail server down
    a = personas.a
    _with_email(a)
    _quiet_now(a)
    warning = tenant_alert(a, Alert.Kind.CUTOFF_WARNING)
    settings.MAILERS = {"default": {"BACKEND": DOWN}}
    for attempt in range(len(EMAIL_RETRY_DELAYS) + 1):
        assert alert_email_send(alert_id=warning.pk, attempt=attempt) is False
    retries = queued_emails()
    assert [q[1] for q in retries] == [1, 2, 3]  # and no fourth: the retries are used up
    # the sweep waits EMAIL_SWEEP_RETRY after the last failure, then tries it, still
    # refused, with no retry chain of its own
    assert alert_emails_sweep() == []
    _age(warning, 5)
    assert alert_emails_sweep() == []
    _age(warning, 10)
    assert alert_emails_sweep() == [warning.pk]
    assert queued_emails() == retries
    assert alert_emails_sweep() == []  # tried again after EMAIL_SWEEP_RETRY
    assert mail.outbox == []
    # when: the mail server is back
    settings.MAILERS = UP
    _age(warning, 15)
    assert alert_emails_sweep() == [warning.pk]
    # then: sent once, at once although it is quiet hours, and never again
    assert [m.subject for m in mail.outbox] == [f"Disconnection warning: {a.prepaid.name}"]
    _age(warning, 60)
    assert alert_emails_sweep() == []
    assert alert_email_send(alert_id=warning.pk, attempt=3) is False  # a late retry
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_a_lost_email_task_is_made_good_by_the_sweep(personas, settings):
    a = personas.a
    _with_email(a)
    restored = tenant_alert(a, Alert.Kind.SUPPLY_RESTORED)  # its task never ran
    assert alert_emails_sweep() == []  # its own task gets its turn first
    _age(restored, 5)
    assert alert_emails_sweep() == [restored.pk]
    assert alert_emails_sweep() == []
    assert [m.subject for m in mail.outbox] == [f"Supply restored: {a.prepaid.name}"]


@pytest.mark.django_db
def test_a_switched_off_tenant_is_never_emailed_nor_swept_again(personas):
    a = personas.a
    _with_email(a)
    TenantNotifications.objects.create(
        landlord=a.landlord, tenancy=a.prepaid_tenancy, email_supply_restored=False
    )
    restored = tenant_alert(a, Alert.Kind.SUPPLY_RESTORED)
    _age(restored, 5)
    assert alert_emails_sweep() == [restored.pk]
    restored.refresh_from_db()
    assert restored.email_skipped == Alert.EmailSkipped.SWITCHED_OFF
    assert restored.emailed_at is None
    assert alert_emails_sweep() == []
    _age(restored, 60)
    assert alert_emails_sweep() == []
    assert mail.outbox == []


@pytest.mark.django_db
def test_an_alert_with_no_address_is_not_swept_again(personas):
    a = personas.a  # the tenant has no email address
    a.prepaid_tenant.email = ""
    a.prepaid_tenant.save(update_fields=["email"])
    warning = tenant_alert(a, Alert.Kind.CUTOFF_WARNING)
    _age(warning, 5)
    assert alert_emails_sweep() == [warning.pk]
    warning.refresh_from_db()
    assert warning.email_skipped == Alert.EmailSkipped.NO_ADDRESS
    assert alert_emails_sweep() == []


@pytest.mark.django_db
def test_a_quiet_hours_alert_is_not_sent_early_by_the_sweep(
    personas, django_capture_on_commit_callbacks, queued_emails
):
    a = personas.a
    _with_email(a)
    _quiet_now(a)  # quiet from an hour ago to an hour from now
    _evaluate(a, 150, django_capture_on_commit_callbacks)
    low = Alert.objects.get(kind=Alert.Kind.LOW_CREDIT)
    assert low.email_next_at is not None
    assert low.email_next_at > timezone.now() + timedelta(minutes=30)
    [held] = queued_emails()
    _age(low, 5)
    assert alert_emails_sweep() == []
    _age(low, 45)
    assert alert_emails_sweep() == []
    assert queued_emails() == [held]
    # even queued in quiet hours, the claim holds it again rather than send it
    assert alert_email_send(alert_id=low.pk) is False
    assert mail.outbox == []
    # the held task was lost: once the quiet hours are over, the sweep sends it
    _quiet_hours_end(a)
    _age(low, 70)  # past the end of the hold it was given
    assert alert_emails_sweep() == [low.pk]
    assert [m.subject for m in mail.outbox] == [f"Low credit: {a.prepaid.name}"]


@pytest.mark.django_db
def test_a_cleared_low_credit_alert_is_not_sent_late_by_the_sweep(
    personas, django_capture_on_commit_callbacks
):
    a = personas.a  # threshold £2.00, cleared from £3.00
    _with_email(a)
    _set_balance(a.prepaid_tenancy, 150)
    low = tenant_alert(a, Alert.Kind.LOW_CREDIT)  # its email task was lost
    _evaluate(a, 350, django_capture_on_commit_callbacks)  # topped up
    low.refresh_from_db()
    assert low.cleared_at is not None
    _age(low, 5)
    assert alert_emails_sweep() == [low.pk]
    low.refresh_from_db()
    assert low.email_skipped == Alert.EmailSkipped.NOT_DUE
    assert alert_emails_sweep() == []
    assert mail.outbox == []


@pytest.mark.django_db
def test_an_email_not_sent_within_the_window_is_given_up(personas):
    a = personas.a
    _with_email(a)
    warning = tenant_alert(a, Alert.Kind.CUTOFF_WARNING)
    assert alert_emails_sweep(now=warning.created_at + EMAIL_SWEEP_WINDOW + timedelta(1)) == []
    warning.refresh_from_db()
    assert warning.email_skipped == Alert.EmailSkipped.EXPIRED
    assert mail.outbox == []


def _emailed_alerts(world, count: int) -> None:
    now = timezone.now() - timedelta(minutes=30)
    Alert.objects.bulk_create(
        Alert(
            landlord=world.landlord,
            unit=world.prepaid,
            tenancy=world.prepaid_tenancy,
            kind=Alert.Kind.SUPPLY_RESTORED,
            audience=Alert.Audience.TENANT,
            subject_key=f"tenancy:{world.prepaid_tenancy.pk}",
            message="Your supply is back on.",
            created_at=now,
            cleared_at=now,
            emailed_at=now,
        )
        for _ in range(count)
    )


def _sweep_queries(world) -> int:
    _age(tenant_alert(world, Alert.Kind.CUTOFF_WARNING), 5)
    with CaptureQueriesContext(connection) as queries:
        assert len(alert_emails_sweep()) == 1
    return len(queries)


@pytest.mark.django_db
def test_the_sweep_queries_do_not_grow_with_emailed_alerts(personas):
    a = personas.a
    _with_email(a)
    _emailed_alerts(a, 3)
    with CaptureQueriesContext(connection) as idle:
        assert alert_emails_sweep() == []
    assert len(idle) == 2  # give up the expired, read the owed
    few = _sweep_queries(a)
    _emailed_alerts(a, 200)
    assert _sweep_queries(a) == few
    assert len(mail.outbox) == 2
