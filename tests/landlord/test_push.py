"""Web Push: a phone's subscription, and alerts pushed beside their emails by the
same choices. ``pywebpush.webpush`` is replaced where ``landlord.push`` calls it:
nothing leaves the machine."""

from __future__ import annotations

import json
import zoneinfo
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pywebpush import WebPushException

from landlord.models import AuditEvent, PushSubscription, TenantNotifications
from landlord.push import tenant_push_send
from meters.models import Alert
from supply.alerts import alert_push_send, supply_restored_raise
from supply.decision import supply_evaluate
from tests.factories import tenant_alert
from tests.landlord.tenant_helpers import credit

pytestmark = pytest.mark.django_db

KEYS = {
    # A real key pair's shape; the sender is replaced, so nothing is signed with it.
    "VAPID_PUBLIC_KEY": "BOm4x0BrAojpvexample-public-key",
    "VAPID_PRIVATE_KEY": "private-key-for-tests",
    "VAPID_SUBJECT": "mailto:ops@example.com",
}
SUB: dict[str, Any] = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/abc123",
    "keys": {"p256dh": "BPUBLICKEYOFTHEBROWSER", "auth": "AUTHSECRET"},
}


@pytest.fixture
def vapid(settings):
    for name, value in KEYS.items():
        setattr(settings, name, value)
    return settings


@pytest.fixture
def webpush():
    with mock.patch("landlord.push.webpush") as sender:
        yield sender


def _client(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _subscribe_url(tenancy) -> str:
    return reverse("tenant:push_subscribe", args=[tenancy.pk])


def _post_json(client: Client, url: str, body: object, **extra):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **extra)


def _subscription(
    tenancy, endpoint: str = "https://fcm.googleapis.com/fcm/send/abc123"
) -> PushSubscription:
    return PushSubscription.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        user=tenancy.tenant,
        endpoint=endpoint,
        p256dh="BPUBLICKEYOFTHEBROWSER",
        auth="AUTHSECRET",
    )


def _payloads(sender) -> list[dict]:
    return [json.loads(call.kwargs["data"]) for call in sender.call_args_list]


# --- the endpoints -----------------------------------------------------------------


def test_subscribe_and_unsubscribe_with_audit_rows(personas, vapid):
    a = personas.a
    client = _client(a.prepaid_tenant)
    resp = _post_json(client, _subscribe_url(a.prepaid_tenancy), SUB)
    assert resp.status_code == 201 and resp.json() == {"subscribed": True}
    # the same browser again: the row is refreshed, not doubled
    assert _post_json(client, _subscribe_url(a.prepaid_tenancy), SUB).status_code == 201
    sub = PushSubscription.objects.get()
    assert (sub.tenancy_id, sub.user_id, sub.landlord_id) == (
        a.prepaid_tenancy.pk,
        a.prepaid_tenant.pk,
        a.landlord.pk,
    )
    assert sub.endpoint == SUB["endpoint"] and sub.auth == "AUTHSECRET"
    resp = _post_json(
        client,
        reverse("tenant:push_unsubscribe", args=[a.prepaid_tenancy.pk]),
        {"endpoint": SUB["endpoint"]},
    )
    assert resp.status_code == 200 and resp.json() == {"subscribed": False, "removed": True}
    assert not PushSubscription.objects.exists()
    actions = list(
        AuditEvent.objects.filter(actor_id=a.prepaid_tenant.pk)
        .order_by("at", "pk")
        .values_list("action", flat=True)
    )
    assert actions == [
        "tenant.push_subscribed",
        "tenant.push_subscribed",
        "tenant.push_unsubscribed",
    ]


def test_subscribe_needs_the_csrf_token(personas, vapid):
    a = personas.a
    client = _client(a.prepaid_tenant, csrf=True)
    url = _subscribe_url(a.prepaid_tenancy)
    assert _post_json(client, url, SUB).status_code == 403
    client.get(reverse("tenant:settings", args=[a.prepaid_tenancy.pk]))  # sets the cookie
    token = client.cookies["csrftoken"].value
    assert _post_json(client, url, SUB, HTTP_X_CSRFTOKEN=token).status_code == 201


def test_subscribe_is_for_the_tenant_only(personas, vapid):
    a, b = personas.a, personas.b
    url = _subscribe_url(a.prepaid_tenancy)
    anonymous = _post_json(Client(), url, SUB)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    assert _post_json(_client(b.prepaid_tenant), url, SUB).status_code == 404
    assert _post_json(_client(a.staff), url, SUB).status_code == 404
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "The body is not valid JSON."),
        ("[1, 2]", "Expected a JSON object with endpoint and keys."),
        ({"keys": SUB["keys"]}, "endpoint is missing."),
        ({**SUB, "endpoint": "http://fcm.googleapis.com/x"}, "endpoint must be an https URL"),
        # The server posts to the endpoint: only to a known push service.
        ({**SUB, "endpoint": "https://10.0.0.1/send/x"}, "endpoint is not a known push service."),
        (
            {**SUB, "endpoint": "https://fcm.googleapis.com.example.net/x"},
            "endpoint is not a known push service.",
        ),
        ({"endpoint": SUB["endpoint"]}, "keys is missing."),
        ({**SUB, "keys": {"p256dh": "x"}}, "keys.auth is missing or too long."),
    ],
)
def test_bad_subscriptions_get_a_clear_400(personas, vapid, body, error):
    a = personas.a
    resp = _post_json(_client(a.prepaid_tenant), _subscribe_url(a.prepaid_tenancy), body)
    assert resp.status_code == 400
    assert resp.json()["error"].startswith(error)
    assert not PushSubscription.objects.exists()


def test_without_keys_push_is_off_and_the_page_says_so(personas):
    a = personas.a
    client = _client(a.prepaid_tenant)
    resp = _post_json(client, _subscribe_url(a.prepaid_tenancy), SUB)
    assert resp.status_code == 409
    page = client.get(reverse("tenant:settings", args=[a.prepaid_tenancy.pk])).content.decode()
    assert "Phone notifications are not set up on this service" in page
    assert "data-push-toggle" not in page


def test_settings_page_offers_the_toggle_with_the_public_key(personas, vapid):
    a = personas.a
    page = (
        _client(a.prepaid_tenant)
        .get(reverse("tenant:settings", args=[a.prepaid_tenancy.pk]))
        .content.decode()
    )
    assert f'data-public-key="{KEYS["VAPID_PUBLIC_KEY"]}"' in page
    assert "data-push-toggle" in page


def test_a_browser_subscribed_by_another_tenant_moves_to_the_new_one(personas, vapid):
    a, b = personas.a, personas.b
    _subscription(a.prepaid_tenancy)
    assert (
        _post_json(_client(b.prepaid_tenant), _subscribe_url(b.prepaid_tenancy), SUB).status_code
        == 201
    )
    assert list(PushSubscription.objects.values_list("tenancy_id", flat=True)) == [
        b.prepaid_tenancy.pk
    ]


# --- sending -----------------------------------------------------------------------


def test_a_gone_subscription_is_deleted_and_the_others_still_get_it(personas, vapid, webpush):
    a = personas.a
    gone = _subscription(a.prepaid_tenancy, "https://fcm.googleapis.com/fcm/send/gone")
    kept = _subscription(a.prepaid_tenancy, "https://fcm.googleapis.com/fcm/send/kept")
    broken = _subscription(a.prepaid_tenancy, "https://fcm.googleapis.com/fcm/send/broken")

    def answer(*, subscription_info, **kw):
        endpoint = subscription_info["endpoint"]
        if endpoint.endswith("gone"):
            raise WebPushException("gone", response=mock.Mock(status_code=410))
        if endpoint.endswith("broken"):
            raise WebPushException("server error", response=mock.Mock(status_code=500))
        return mock.Mock(status_code=201)

    webpush.side_effect = answer
    sent = tenant_push_send(tenancy_id=a.prepaid_tenancy.pk, payload={"title": "t"})
    assert sent == 1
    assert not PushSubscription.objects.filter(pk=gone.pk).exists()
    kept.refresh_from_db()
    broken.refresh_from_db()
    assert kept.last_success_at is not None and kept.last_failure_at is None
    assert broken.last_failure_at is not None and "500" in broken.last_failure
    call = webpush.call_args_list[0].kwargs
    assert call["vapid_private_key"] == KEYS["VAPID_PRIVATE_KEY"]
    assert call["vapid_claims"] == {"sub": KEYS["VAPID_SUBJECT"]}
    assert call["subscription_info"]["keys"] == {
        "p256dh": "BPUBLICKEYOFTHEBROWSER",
        "auth": "AUTHSECRET",
    }


def test_low_credit_is_pushed_beside_its_email(
    personas, vapid, webpush, django_capture_on_commit_callbacks
):
    a = personas.a
    a.prepaid_tenant.email = "t@example.com"
    a.prepaid_tenant.save(update_fields=["email"])
    _subscription(a.prepaid_tenancy)
    with django_capture_on_commit_callbacks(execute=True):
        credit(a.prepaid_tenancy, 100)  # below the unit's £2.00
        supply_evaluate(unit=a.prepaid, reason="test")
    low = [p for p in _payloads(webpush) if p["tag"] == "alert-low_credit"]
    assert low == [
        {
            "title": f"Low credit · {a.prepaid.name}",
            "body": Alert.objects.get(kind=Alert.Kind.LOW_CREDIT).message,
            "url": reverse("tenant:home", args=[a.prepaid_tenancy.pk]),
            "tag": "alert-low_credit",
        }
    ]
    assert "Low credit: £1.00 left" in low[0]["body"]
    assert any(m.subject.startswith("Low credit") for m in mail.outbox)


def test_cutoff_warning_and_supply_restored_are_pushed(
    personas, vapid, webpush, django_capture_on_commit_callbacks
):
    a = personas.a
    _subscription(a.prepaid_tenancy)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        supply_restored_raise(device=a.prepaid_device.device, now=now)
    [restored] = _payloads(webpush)
    assert restored["title"] == f"Supply back on · {a.prepaid.name}"
    assert restored["body"] == "Your supply is back on."
    assert restored["tag"] == "alert-supply_restored"
    assert webpush.call_args.kwargs["headers"] == {"Urgency": "normal"}
    webpush.reset_mock()
    warning = Alert.objects.create(
        landlord=a.landlord,
        unit=a.prepaid,
        tenancy=a.prepaid_tenancy,
        kind=Alert.Kind.CUTOFF_WARNING,
        audience=Alert.Audience.TENANT,
        subject_key=f"tenancy:{a.prepaid_tenancy.pk}",
        message="Your credit has run out: supply off 14:00 unless £1.00 is added.",
        created_at=now,
        cleared_at=now,
    )
    assert alert_push_send(alert_id=warning.pk) == 1
    [payload] = _payloads(webpush)
    assert payload["title"] == f"Supply will be switched off · {a.prepaid.name}"
    assert payload["body"] == warning.message
    assert webpush.call_args.kwargs["headers"] == {"Urgency": "high"}


def _quiet_now(a, **choices) -> None:
    local = timezone.localtime(timezone.now(), zoneinfo.ZoneInfo(a.prop.timezone))
    TenantNotifications.objects.create(
        landlord=a.landlord,
        tenancy=a.prepaid_tenancy,
        quiet_start=(local - timedelta(hours=1)).time(),
        quiet_end=(local + timedelta(hours=1)).time(),
        **choices,
    )


def test_quiet_hours_hold_a_push_but_never_the_cutoff_warning(personas, vapid, webpush):
    a = personas.a
    _subscription(a.prepaid_tenancy)
    _quiet_now(a)
    with mock.patch("supply.alerts.alert_push_task") as task:
        assert alert_push_send(alert_id=tenant_alert(a, Alert.Kind.LOW_CREDIT).pk) == 0
        assert alert_push_send(alert_id=tenant_alert(a, Alert.Kind.SUPPLY_RESTORED).pk) == 0
    assert webpush.call_count == 0
    # queued again for the end of the quiet hours
    assert task.using.call_count == 2
    assert task.using.call_args.kwargs["run_after"] > timezone.now()
    assert alert_push_send(alert_id=tenant_alert(a, Alert.Kind.CUTOFF_WARNING).pk) == 1
    assert [p["tag"] for p in _payloads(webpush)] == ["alert-cutoff_warning"]


def test_switched_off_kinds_are_not_pushed(personas, vapid, webpush):
    a = personas.a
    _subscription(a.prepaid_tenancy)
    TenantNotifications.objects.create(
        landlord=a.landlord,
        tenancy=a.prepaid_tenancy,
        email_low_credit=False,
        email_supply_restored=False,
    )
    assert alert_push_send(alert_id=tenant_alert(a, Alert.Kind.LOW_CREDIT).pk) == 0
    assert alert_push_send(alert_id=tenant_alert(a, Alert.Kind.SUPPLY_RESTORED).pk) == 0
    assert alert_push_send(alert_id=tenant_alert(a, Alert.Kind.CUTOFF_WARNING).pk) == 1
    assert [p["tag"] for p in _payloads(webpush)] == ["alert-cutoff_warning"]


def test_a_condition_cleared_meanwhile_is_not_pushed_late(personas, vapid, webpush):
    a = personas.a
    _subscription(a.prepaid_tenancy)
    low = tenant_alert(a, Alert.Kind.LOW_CREDIT)
    Alert.objects.filter(pk=low.pk).update(cleared_at=timezone.now())
    assert alert_push_send(alert_id=low.pk) == 0
    assert webpush.call_count == 0


def test_low_credit_topped_up_meanwhile_is_not_pushed_late(personas, vapid, webpush):
    a = personas.a  # threshold £2.00: the alert clears only from £3.00
    _subscription(a.prepaid_tenancy)
    low = tenant_alert(a, Alert.Kind.LOW_CREDIT)
    credit(a.prepaid_tenancy, 150)
    assert alert_push_send(alert_id=low.pk) == 1  # still low
    credit(a.prepaid_tenancy, 100)  # £2.50: not low any more, the alert still open
    assert alert_push_send(alert_id=low.pk) == 0
    assert webpush.call_count == 1


def test_the_email_goes_when_every_push_fails(
    personas, vapid, webpush, django_capture_on_commit_callbacks
):
    a = personas.a
    a.prepaid_tenant.email = "t@example.com"
    a.prepaid_tenant.save(update_fields=["email"])
    _subscription(a.prepaid_tenancy)
    webpush.side_effect = ConnectionError("no route to the push service")
    with django_capture_on_commit_callbacks(execute=True):
        restored = supply_restored_raise(device=a.prepaid_device.device, now=timezone.now())
    assert restored is not None
    assert webpush.call_count == 1
    assert [m.subject for m in mail.outbox] == [f"Supply restored: {a.prepaid.name}"]
    restored.refresh_from_db()
    assert restored.emailed_at is not None
    sub = PushSubscription.objects.get()
    assert "ConnectionError" in sub.last_failure


def test_no_keys_no_push(personas, webpush, django_capture_on_commit_callbacks):
    a = personas.a
    _subscription(a.prepaid_tenancy)
    with django_capture_on_commit_callbacks(execute=True):
        supply_restored_raise(device=a.prepaid_device.device, now=timezone.now())
    assert webpush.call_count == 0


def test_a_cut_off_scheduled_by_the_supply_decision_is_pushed_in_quiet_hours(
    personas, vapid, webpush, django_capture_on_commit_callbacks
):
    a = personas.a
    _subscription(a.prepaid_tenancy)
    _quiet_now(a)
    with django_capture_on_commit_callbacks(execute=True):
        credit(a.prepaid_tenancy, -5)  # out of credit: a cut-off is scheduled
        supply_evaluate(unit=a.prepaid, reason="test")
    warning = Alert.objects.get(kind=Alert.Kind.CUTOFF_WARNING)
    [payload] = [p for p in _payloads(webpush) if p["tag"] == "alert-cutoff_warning"]
    assert payload["body"] == warning.message
    assert "unless £1.00 is added" in payload["body"] or "Top up" in payload["body"]
