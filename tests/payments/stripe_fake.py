"""Offline Stripe: a fake HTTP client for ``StripeClient`` and real webhook signatures.

The fake serves responses from ``recorded/`` (Stripe's response shapes) and
records every request with its headers and decoded form body, so tests can
assert ``Stripe-Account``, ``Idempotency-Key`` and the application fee.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe
from django.test import Client
from django.urls import reverse

RECORDED = Path(__file__).parent / "recorded"
PLATFORM_SECRET = "whsec_test_platform_0123456789abcdef"
CONNECT_SECRET = "whsec_test_connect_fedcba9876543210"


def recorded(name: str, **overrides: Any) -> dict[str, Any]:
    body = json.loads((RECORDED / f"{name}.json").read_text())
    body.update(overrides)
    return body


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class FakeStripeHTTP(stripe.HTTPClient):
    routes: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    name = "fake"

    def __post_init__(self) -> None:
        super().__init__()

    def add(self, method: str, path: str, body: dict[str, Any], status: int = 200) -> None:
        self.routes.setdefault((method.lower(), path), []).append((status, body))

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        parts = urlsplit(url)
        form = dict(parse_qsl(post_data or parts.query or "", keep_blank_values=True))
        self.requests.append(Request(method.lower(), parts.path, dict(headers or {}), form))
        queue = self.routes.get((method.lower(), parts.path))
        if not queue:
            return (
                json.dumps(
                    {"error": {"message": "no recorded response", "type": "invalid_request_error"}}
                ),
                404,
                {},
            )
        status, body = queue[0] if len(queue) == 1 else queue.pop(0)
        return json.dumps(body), status, {"Request-Id": f"req_{uuid.uuid4().hex[:12]}"}

    def close(self) -> None:
        return None

    def sent(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def sign(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def deliver(
    client: Client,
    event: dict[str, Any],
    *,
    connect: bool = True,
    secret: str | None = None,
    timestamp: int | None = None,
    body: bytes | None = None,
):
    raw = body if body is not None else json.dumps(event).encode()
    secret = secret or (CONNECT_SECRET if connect else PLATFORM_SECRET)
    url = reverse("payments:stripe_connect_webhook" if connect else "payments:stripe_webhook")
    return client.post(
        url,
        data=raw,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(raw, secret, timestamp=timestamp),
    )


def event(type_: str, obj: dict[str, Any], *, account: str | None, event_id: str | None = None):
    body: dict[str, Any] = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": int(time.time()),
        "livemode": False,
        "type": type_,
        "data": {"object": obj},
    }
    if account:
        body["account"] = account
    return body


def intent_obj(payment, *, pi: str | None = None, **extra: Any) -> dict[str, Any]:
    obj = {
        "id": pi or f"pi_{payment.uuid.hex[:20]}",
        "object": "payment_intent",
        "amount": payment.amount_minor,
        "currency": payment.currency.lower(),
        "metadata": {"payment_uuid": str(payment.uuid)},
    }
    obj.update(extra)
    return obj


def session_obj(payment, *, payment_status: str = "paid", pi: str | None = None) -> dict[str, Any]:
    return {
        "id": payment.checkout_session_id or f"cs_test_{payment.uuid.hex[:20]}",
        "object": "checkout.session",
        "amount_total": payment.amount_minor,
        "currency": payment.currency.lower(),
        "metadata": {"payment_uuid": str(payment.uuid)},
        "payment_intent": pi or f"pi_{payment.uuid.hex[:20]}",
        "payment_status": payment_status,
        "status": "complete",
    }
