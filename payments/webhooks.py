"""Stripe webhook verification: the signature is checked on the raw body, before parsing.

Stripe signs ``"{t}.{raw body}"`` with HMAC-SHA256 under the endpoint's
signing secret and sends ``Stripe-Signature: t=<unix time>,v1=<hex>``.
stripe-python's ``WebhookSignature.verify_header`` checks it (constant-time
comparison, any of several ``v1`` signatures during secret rotation) and
rejects timestamps older than the tolerance, so a captured delivery cannot
be replayed later.
"""

from __future__ import annotations

import json
from typing import Any

import stripe


class WebhookRejected(Exception):
    """The delivery is not a verified Stripe event; the sender gets a 400."""


def webhook_event_verify(
    *, payload: bytes, signature: str, secret: str, tolerance: int
) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected("body is not UTF-8") from exc
    if not signature:
        raise WebhookRejected("missing Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(text, signature, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(f"bad signature: {exc.user_message or exc}") from exc
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise WebhookRejected("body is not JSON") from exc
    if not isinstance(event, dict) or event.get("object", "event") != "event":
        raise WebhookRejected("body is not an event")
    return event
