"""The tenant's settings: notification choices (kept in the email path), email,
password change and reset, automatic payments as a sentence."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.models import AuditEvent, TenantNotifications
from meters.models import Alert
from payments.models import PaymentSettings, SavedPaymentMethod
from supply.alerts import alert_email_send, tenant_notification_choice
from supply.decision import supply_evaluate
from tests.factories import tenant_alert
from tests.landlord.tenant_helpers import credit

pytestmark = pytest.mark.django_db

LONDON = "Europe/London"


def _prefs(**kw):
    return TenantNotifications(quiet_start=time(22), quiet_end=time(7), **kw)


def _at(hour, minute=0):
    return datetime(2026, 12, 3, hour, minute, tzinfo=zoneinfo.ZoneInfo(LONDON)).astimezone(UTC)


@pytest.mark.parametrize(
    ("kind", "at", "expected"),
    [
        (Alert.Kind.LOW_CREDIT, _at(23), (True, _at(7) + timedelta(days=1))),
        (Alert.Kind.LOW_CREDIT, _at(6, 59), (True, _at(7))),
        (Alert.Kind.LOW_CREDIT, _at(7), (True, None)),
        (Alert.Kind.SUPPLY_RESTORED, _at(2), (True, _at(7))),
        # A disconnection warning is never held back.
        (Alert.Kind.CUTOFF_WARNING, _at(23), (True, None)),
        (Alert.Kind.CUTOFF_WARNING, _at(3), (True, None)),
    ],
)
def test_quiet_hours_rule(kind, at, expected):
    assert tenant_notification_choice(kind=kind, prefs=_prefs(), now=at, tz=LONDON) == expected


def test_switched_off_kinds_but_never_the_cutoff_warning():
    prefs = TenantNotifications(email_low_credit=False, email_supply_restored=False)
    noon = _at(12)
    assert tenant_notification_choice(
        kind=Alert.Kind.LOW_CREDIT, prefs=prefs, now=noon, tz=LONDON
    ) == (
        False,
        None,
    )
    assert (
        tenant_notification_choice(kind=Alert.Kind.LOW_RUNWAY, prefs=prefs, now=noon, tz=LONDON)[0]
        is False
    )
    assert tenant_notification_choice(
        kind=Alert.Kind.CUTOFF_WARNING, prefs=prefs, now=noon, tz=LONDON
    ) == (True, None)


def test_quiet_now_holds_low_credit_but_sends_the_cutoff_warning(personas):
    a = personas.a
    a.prepaid_tenant.email = "t@example.com"
    a.prepaid_tenant.save(update_fields=["email"])
    local = timezone.localtime(timezone.now(), zoneinfo.ZoneInfo(a.prop.timezone))
    TenantNotifications.objects.create(
        landlord=a.landlord,
        tenancy=a.prepaid_tenancy,
        quiet_start=(local - timedelta(hours=1)).time(),
        quiet_end=(local + timedelta(hours=1)).time(),
    )
    low = tenant_alert(a, Alert.Kind.LOW_CREDIT)
    assert alert_email_send(alert_id=low.pk) is False
    assert mail.outbox == []
    low.refresh_from_db()
    assert low.emailed_at is None  # held, sent again when the quiet hours end
    warning = tenant_alert(a, Alert.Kind.CUTOFF_WARNING)
    assert alert_email_send(alert_id=warning.pk) is True
    assert [m.subject for m in mail.outbox] == [f"Disconnection warning: {a.prepaid.name}"]


def test_a_tenants_higher_threshold_warns_earlier(personas):
    a = personas.a
    credit(a.prepaid_tenancy, 500)  # above the unit's £2.00
    supply_evaluate(unit=a.prepaid, reason="test")
    assert not Alert.objects.filter(kind=Alert.Kind.LOW_CREDIT, cleared_at__isnull=True).exists()
    TenantNotifications.objects.create(
        landlord=a.landlord, tenancy=a.prepaid_tenancy, low_credit_threshold_minor=1000
    )
    supply_evaluate(unit=a.prepaid, reason="test")
    assert Alert.objects.filter(kind=Alert.Kind.LOW_CREDIT, cleared_at__isnull=True).exists()


def _client(a):
    client = Client()
    client.force_login(a.prepaid_tenant)
    return client


def test_settings_page_saves_choices_with_an_audit_row(personas):
    a = personas.a
    client = _client(a)
    url = reverse("tenant:settings", args=[a.prepaid_tenancy.pk])
    page = client.get(url).content.decode()
    assert "Automatic top-up is off" in page
    assert reverse("password_change") in page and reverse("password_reset") in page
    resp = client.post(
        reverse("tenant:notifications", args=[a.prepaid_tenancy.pk]),
        {
            "low_credit_threshold": "7.50",
            "email_supply_restored": "on",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
        },
    )
    assert resp.status_code == 302
    prefs = TenantNotifications.objects.get(tenancy=a.prepaid_tenancy)
    assert prefs.low_credit_threshold_minor == 750
    assert prefs.email_low_credit is False and prefs.email_supply_restored is True
    assert (prefs.quiet_start, prefs.quiet_end) == (time(22), time(7))
    row = AuditEvent.objects.get(action="tenant.notifications_set")
    assert row.actor_id == a.prepaid_tenant.pk and row.tenancy_id == a.prepaid_tenancy.pk
    again = client.get(url).content.decode()
    assert 'value="7.50"' in again and 'value="22:00"' in again


def test_settings_errors_keep_what_was_typed(personas):
    a = personas.a
    resp = _client(a).post(
        reverse("tenant:notifications", args=[a.prepaid_tenancy.pk]),
        {"low_credit_threshold": "abc", "quiet_start": "22:00"},
    )
    body = resp.content.decode()
    assert resp.status_code == 400
    assert "Enter an amount" in body and "both ends of your quiet hours" in body
    assert 'value="abc"' in body and 'value="22:00"' in body
    assert not TenantNotifications.objects.exists()


def test_email_change_needs_the_password(personas):
    a = personas.a
    client = _client(a)
    url = reverse("tenant:email", args=[a.prepaid_tenancy.pk])
    bad = client.post(url, {"email": "new@example.com", "password": "wrong"})
    assert bad.status_code == 400 and "not your password" in bad.content.decode()
    assert 'value="new@example.com"' in bad.content.decode()
    ok = client.post(url, {"email": "new@example.com", "password": "pw"})
    assert ok.status_code == 302
    a.prepaid_tenant.refresh_from_db()
    assert a.prepaid_tenant.email == "new@example.com"
    assert AuditEvent.objects.filter(action="tenant.email_changed").count() == 1


def test_password_reset_email_and_change(personas):
    a = personas.a
    a.prepaid_tenant.email = "t1@example.com"
    a.prepaid_tenant.save(update_fields=["email"])
    client = Client()
    resp = client.post(reverse("password_reset"), {"email": "t1@example.com"})
    assert resp.status_code == 302
    assert len(mail.outbox) == 1 and "/accounts/password/reset/" in mail.outbox[0].body
    client = _client(a)
    page = client.get(reverse("password_change"))
    assert page.status_code == 200 and "Change your password" in page.content.decode()
    done = client.post(
        reverse("password_change"),
        {
            "old_password": "pw",
            "new_password1": "a-Long-new-pass-9",
            "new_password2": "a-Long-new-pass-9",
        },
    )
    assert done.status_code == 302
    a.prepaid_tenant.refresh_from_db()
    assert a.prepaid_tenant.check_password("a-Long-new-pass-9")


def test_auto_topup_sentence(personas):
    a = personas.a
    PaymentSettings.objects.create(
        landlord=a.landlord, tenancy=a.prepaid_tenancy, auto_topup_enabled=True
    )
    SavedPaymentMethod.objects.create(
        landlord=a.landlord,
        tenancy=a.prepaid_tenancy,
        provider="dev",
        provider_ref="pm_1",
        brand="visa",
        last4="4242",
    )
    body = _client(a).get(reverse("tenant:settings", args=[a.prepaid_tenancy.pk])).content.decode()
    assert (
        "When your credit falls below £5.00, £20.00 is charged to your visa ending 4242, "
        "at most once every 24 hours and £100.00 a month." in body
    )


def test_another_tenants_settings_are_404(personas):
    client = Client()
    client.force_login(personas.b.prepaid_tenant)
    t = personas.a.prepaid_tenancy.pk
    assert client.get(reverse("tenant:settings", args=[t])).status_code == 404
    assert client.post(reverse("tenant:notifications", args=[t]), {}).status_code == 404
    assert client.post(reverse("tenant:email", args=[t]), {}).status_code == 404
