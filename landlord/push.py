"""Web Push to a tenant's phones: subscriptions, and one message sent to them all.

A phone (or any browser) that turns notifications on in the tenant's settings
sends its push subscription here; alerts and bill reminders then go to every
subscription of the tenancy through the push service named in it, beside the
email (``supply.alerts``, ``payments.reminders``). Sending is a network call
to a third party, so it only ever runs in a task (``tenant_push_task``),
never in a request or a transaction, and a failure here never stops an email.

Off while the VAPID keys are unset (``push_configured``): the settings page
says so and nothing is sent.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.tasks import task
from django.utils import timezone
from pywebpush import WebPushException, webpush

from .audit import audit_record
from .models import PushSubscription, Tenancy

logger = logging.getLogger(__name__)

# A push service keeps a message this long for a phone that is off, then drops it.
PUSH_TTL_SECONDS = 24 * 3600
# Statuses by which a push service says the subscription is gone for good.
GONE = (404, 410)


def push_configured() -> bool:
    return bool(settings.VAPID_PUBLIC_KEY and settings.VAPID_PRIVATE_KEY)


class SubscriptionError(ValueError):
    """What is wrong with a subscription a browser sent, in words for the response."""


def push_service_allowed(host: str) -> bool:
    """Whether ``host`` is one of ``PUSH_SERVICE_HOSTS`` or under one of them."""
    host = host.lower().rstrip(".")
    return any(host == known or host.endswith("." + known) for known in settings.PUSH_SERVICE_HOSTS)


def subscription_parse(data: object) -> tuple[str, str, str]:
    """(endpoint, p256dh, auth) from a browser's ``PushSubscription.toJSON()``."""
    if not isinstance(data, dict):
        raise SubscriptionError("Expected a JSON object with endpoint and keys.")
    endpoint = data.get("endpoint")
    keys = data.get("keys")
    if not isinstance(endpoint, str) or not endpoint:
        raise SubscriptionError("endpoint is missing.")
    parts = urlsplit(endpoint)
    if parts.scheme != "https" or not parts.hostname or len(endpoint) > 1000:
        raise SubscriptionError("endpoint must be an https URL of at most 1000 characters.")
    if not push_service_allowed(parts.hostname):
        # The server posts to this address: never to one a browser made up.
        raise SubscriptionError("endpoint is not a known push service.")
    if not isinstance(keys, dict):
        raise SubscriptionError("keys is missing.")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    for name, value, limit in (("p256dh", p256dh, 200), ("auth", auth, 100)):
        if not isinstance(value, str) or not value or len(value) > limit:
            raise SubscriptionError(f"keys.{name} is missing or too long.")
    assert isinstance(p256dh, str) and isinstance(auth, str)
    return endpoint, p256dh, auth


def push_subscribe(
    *, tenancy: Tenancy, user_id: int, endpoint: str, p256dh: str, auth: str
) -> PushSubscription:
    """Store (or refresh) this browser's subscription to the tenancy's alerts.

    An endpoint is one browser: if it was subscribed for another tenancy (a
    shared phone, another tenant signed in before), that row goes, so alerts
    never reach a phone whose owner changed. Each landlord's rows in their own
    statement: no transaction touches two landlords.
    """
    others = PushSubscription.objects.filter(endpoint=endpoint).exclude(tenancy=tenancy)
    for landlord_id in set(others.values_list("landlord_id", flat=True)):
        others.filter(landlord_id=landlord_id).delete()
    with transaction.atomic():
        sub, _ = PushSubscription.objects.update_or_create(
            tenancy=tenancy,
            endpoint=endpoint,
            defaults={
                "landlord_id": tenancy.landlord_id,
                "user_id": user_id,
                "p256dh": p256dh,
                "auth": auth,
            },
        )
        audit_record(
            landlord_id=tenancy.landlord_id,
            actor_id=user_id,
            action="tenant.push_subscribed",
            tenancy=tenancy,
            data={"subscription": sub.pk, "push_service": urlsplit(endpoint).netloc},
        )
    return sub


@transaction.atomic
def push_unsubscribe(*, tenancy: Tenancy, user_id: int, endpoint: str) -> bool:
    """Forget this browser's subscription to the tenancy; False if there was none."""
    deleted, _ = PushSubscription.objects.filter(tenancy=tenancy, endpoint=endpoint).delete()
    if deleted:
        audit_record(
            landlord_id=tenancy.landlord_id,
            actor_id=user_id,
            action="tenant.push_unsubscribed",
            tenancy=tenancy,
            data={"push_service": urlsplit(endpoint).netloc},
        )
    return bool(deleted)


def push_payload(*, title: str, body: str, url: str, tag: str) -> dict[str, str]:
    """What the service worker shows (static/sw.js): one notification per tag, the
    newest replacing the older, opening ``url`` when tapped."""
    return {"title": title, "body": body, "url": url, "tag": tag}


def tenant_push_send(*, tenancy_id: int, payload: dict[str, Any], urgent: bool = False) -> int:
    """Send one message to every subscription of the tenancy; how many took it.

    Must not run inside a transaction: each push is an HTTP call to the push
    service. A subscription the service says is gone (404, 410) is deleted;
    any other failure is recorded on the row and logged, and the others are
    still tried.
    """
    if not push_configured():
        return 0
    data = json.dumps(payload)
    headers = {"Urgency": "high" if urgent else "normal"}
    sent = 0
    for sub in PushSubscription.objects.filter(tenancy_id=tenancy_id).order_by("pk"):
        try:
            webpush(
                subscription_info={
                    "endpoint": sub.endpoint,
                    "keys": {"p256dh": sub.p256dh, "auth": sub.auth},
                },
                data=data,
                vapid_private_key=settings.VAPID_PRIVATE_KEY,
                # A new dict each time: the library writes the audience and expiry into it.
                vapid_claims={"sub": settings.VAPID_SUBJECT},
                ttl=PUSH_TTL_SECONDS,
                timeout=10,
                headers=headers,
            )
        except WebPushException as exc:
            status = getattr(exc.response, "status_code", None)
            if status in GONE:
                logger.info("push subscription %s is gone (%s): deleted", sub.pk, status)
                sub.delete()
            else:
                _failed(sub, f"push service answered {status}: {exc.message}"[:200])
            continue
        except Exception as exc:  # the network, a bad key: recorded, the others still tried
            _failed(sub, f"{type(exc).__name__}: {exc}"[:200])
            continue
        PushSubscription.objects.filter(pk=sub.pk).update(last_success_at=timezone.now())
        sent += 1
    return sent


def _failed(sub: PushSubscription, reason: str) -> None:
    logger.warning("push to subscription %s failed: %s", sub.pk, reason)
    PushSubscription.objects.filter(pk=sub.pk).update(
        last_failure_at=timezone.now(), last_failure=reason
    )


@task()
def tenant_push_task(tenancy_id: int, payload: dict[str, Any], urgent: bool = False) -> int:
    return tenant_push_send(tenancy_id=tenancy_id, payload=payload, urgent=urgent)
