"""Webhook replay through a real task consumer with several workers.

The rest of the suite runs tasks inline (Huey's immediate mode). Here the
webhook endpoint queues processing on a real Huey queue (SQLite or Redis, as
configured) and a consumer with four worker threads applies the events, each
worker on its own database connection. A day of payments with a refund that
fails after succeeding, a dashboard refund and chargebacks that arrive before
their payment is known, and a full dispute lifecycle is delivered in several
shuffled and duplicated orders; every order must leave the ledger a clean
in-order replay leaves.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections, transaction
from django.test import Client

from payments.ledger import ledger_verify
from payments.models import (
    Account,
    ConnectAccount,
    Dispute,
    Payment,
    PaymentEvent,
    Posting,
    Refund,
)
from payments.services import payment_create, payment_event_process, payment_event_receive

from .conftest import ACCT_A, ACCT_B
from .stripe_fake import deliver, event, intent_obj, recorded, session_obj

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 4


@pytest.fixture
def task_consumer(tmp_path: Path) -> Iterator[list[BaseException]]:
    """Huey out of immediate mode, on a queue of its own, with a running multi-worker consumer.

    Yields the list of task errors the consumer saw.
    """
    from huey.contrib.djhuey import HUEY
    from huey.signals import SIGNAL_ERROR

    from config.management.commands.serve import InProcessConsumer

    saved_storage, saved_use_memory = HUEY.storage, HUEY.immediate_use_memory
    kwargs = dict(HUEY.storage_kwargs)
    if "filename" in kwargs:
        kwargs["filename"] = str(tmp_path / "queue.sqlite3")
    HUEY.immediate_use_memory = False  # so leaving immediate mode keeps the storage set here
    HUEY.immediate = False
    HUEY.storage = HUEY.storage_class(f"replay-{uuid.uuid4().hex[:12]}", **kwargs)
    errors: list[BaseException] = []

    def on_error(signal: str, task: Any, exc: BaseException | None = None) -> None:
        errors.append(exc or RuntimeError(signal))

    HUEY.signal(SIGNAL_ERROR)(on_error)
    # Worker threads open their own database connections: close them as they stop.
    HUEY.on_shutdown("replay_close_db")(connections.close_all)
    consumer = InProcessConsumer(
        HUEY,
        workers=WORKERS,
        worker_type="thread",
        periodic=False,
        initial_delay=0.02,
        max_delay=0.1,
    )
    consumer.start()
    try:
        yield errors
    finally:
        consumer.stop(graceful=True)
        HUEY.unregister_on_shutdown("replay_close_db")
        HUEY.disconnect_signal(on_error, SIGNAL_ERROR)
        HUEY.storage.flush_all()
        HUEY.storage = saved_storage
        HUEY.immediate = True
        HUEY.immediate_use_memory = saved_use_memory


def _payment(world: Any, *, amount: int, account: str) -> Payment:
    payment = payment_create(
        tenancy=world.prepaid_tenancy, amount_minor=amount, provider="stripe", created_by_id=None
    )
    Payment.objects.filter(pk=payment.pk).update(
        stripe_account=account, checkout_session_id=f"cs_test_{payment.uuid.hex[:20]}"
    )
    payment.refresh_from_db()
    return payment


def _refund_obj(refund_id: str, amount: int, status: str, pi: str, refund_uuid: str | None):
    obj = recorded("refund", id=refund_id, amount=amount, status=status, payment_intent=pi)
    obj["metadata"] = {"refund_uuid": refund_uuid} if refund_uuid else {}
    return obj


def _dispute_obj(dispute_id: str, amount: int, status: str, pi: str) -> dict[str, Any]:
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "currency": "gbp",
        "payment_intent": pi,
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": 1_796_000_000},
    }


def _a_day(world_a: Any, world_b: Any) -> list[dict[str, Any]]:
    """Every event of the day, in the order Stripe created them."""
    events: list[dict[str, Any]] = []

    def add(type_: str, obj: dict[str, Any], account: str, **extra: Any) -> None:
        evt = event(type_, obj, account=account, event_id=f"evt_replay_{len(events):03d}")
        evt["created"] = 1_780_000_000 + len(events)
        evt["data"].update(extra)
        events.append(evt)

    # P1 (A): paid, then a landlord's refund that succeeds and later fails.
    p1 = _payment(world_a, amount=1000, account=ACCT_A)
    pi1 = "pi_replay_1"
    Payment.objects.filter(pk=p1.pk).update(provider_ref=pi1)
    r1 = Refund.objects.create(
        landlord=world_a.landlord,
        payment=p1,
        amount_minor=400,
        reason="overpaid",
        provider_ref=None,
    )
    add("payment_intent.succeeded", intent_obj(p1, pi=pi1), ACCT_A)
    add("checkout.session.completed", session_obj(p1, pi=pi1), ACCT_A)
    add("refund.created", _refund_obj("re_replay_1", 400, "pending", pi1, str(r1.uuid)), ACCT_A)
    add("refund.updated", _refund_obj("re_replay_1", 400, "succeeded", pi1, str(r1.uuid)), ACCT_A)
    add(
        "charge.refund.updated",
        _refund_obj("re_replay_1", 400, "failed", pi1, str(r1.uuid)),
        ACCT_A,
        previous_attributes={"status": "succeeded"},
    )
    # P2 (A): a chargeback the landlord wins: withdrawn, then reinstated.
    p2 = _payment(world_a, amount=2000, account=ACCT_A)
    pi2 = "pi_replay_2"
    add("payment_intent.succeeded", intent_obj(p2, pi=pi2), ACCT_A)
    for type_, status in [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.funds_withdrawn", "needs_response"),
        ("charge.dispute.updated", "under_review"),
        ("charge.dispute.closed", "won"),
        ("charge.dispute.funds_reinstated", "won"),
    ]:
        add(type_, _dispute_obj("dp_replay_2", 2000, status, pi2), ACCT_A)
    # P3 (A): a declined card, a retry in the same session, then a partial
    # refund made in the Stripe dashboard (no refund of ours to match).
    p3 = _payment(world_a, amount=1500, account=ACCT_A)
    pi3 = "pi_replay_3"
    add("payment_intent.payment_failed", intent_obj(p3, pi=pi3), ACCT_A)
    add("payment_intent.succeeded", intent_obj(p3, pi=pi3), ACCT_A)
    add("checkout.session.completed", session_obj(p3, pi=pi3), ACCT_A)
    for type_ in ("refund.created", "refund.updated", "charge.refund.updated"):
        add(type_, _refund_obj("re_replay_3", 300, "succeeded", pi3, None), ACCT_A)
    # P4 (B): a chargeback the landlord loses.
    p4 = _payment(world_b, amount=700, account=ACCT_B)
    pi4 = "pi_replay_4"
    add("payment_intent.succeeded", intent_obj(p4, pi=pi4), ACCT_B)
    add("charge.dispute.created", _dispute_obj("dp_replay_4", 700, "needs_response", pi4), ACCT_B)
    add("charge.dispute.funds_withdrawn", _dispute_obj("dp_replay_4", 700, "lost", pi4), ACCT_B)
    add("charge.dispute.closed", _dispute_obj("dp_replay_4", 700, "lost", pi4), ACCT_B)
    # P5 (B): declined, then the tenant walks away and the session expires.
    p5 = _payment(world_b, amount=500, account=ACCT_B)
    add("payment_intent.payment_failed", intent_obj(p5, pi="pi_replay_5"), ACCT_B)
    add("checkout.session.expired", session_obj(p5, pi="pi_replay_5"), ACCT_B)
    # Landlord B's account: not ready, then ready.
    add("account.updated", recorded("account", id=ACCT_B), ACCT_B)
    add("account.updated", recorded("account_enabled", id=ACCT_B), ACCT_B)
    return events


def _outcome() -> dict[str, Any]:
    """The ledger and what it rests on, named by what things are rather than by row ids."""
    names = {a.pk: (a.landlord_id, a.kind, a.tenancy_id, a.currency) for a in Account.objects.all()}
    # A refund made in the Stripe dashboard gets its own uuid each replay: name it by Stripe's id.
    refunds = {str(u): str(ref) for u, ref in Refund.objects.values_list("uuid", "provider_ref")}

    def stable(key: str) -> str:
        prefix, _, rest = key.partition(":")
        if prefix != "refund":
            return key
        refund_uuid, sep, suffix = rest.partition(":")
        return f"refund:{refunds.get(refund_uuid, refund_uuid)}{sep}{suffix}"

    return {
        "balances": sorted(
            (names[pk], bal) for pk, bal in Account.objects.values_list("pk", "balance_minor")
        ),
        "postings": sorted(
            (stable(key), kind, names[debit], names[credit], amount)
            for key, kind, debit, credit, amount in Posting.objects.values_list(
                "transaction__idempotency_key",
                "transaction__kind",
                "debit_id",
                "credit_id",
                "amount_minor",
            )
        ),
        "payments": sorted(Payment.objects.values_list("uuid", "status")),
        "refunds": sorted(Refund.objects.values_list("provider_ref", "amount_minor", "status")),
        "disputes": sorted(
            Dispute.objects.values_list(
                "provider_ref", "status", "funds_withdrawn", "funds_reinstated"
            )
        ),
        "accounts": sorted(
            ConnectAccount.objects.values_list("stripe_account_id", "charges_enabled")
        ),
    }


def _inline_in_order(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The reference: each event once, in creation order, processed inline; rolled back."""
    with transaction.atomic():
        for evt in events:
            stored, _ = payment_event_receive(provider="stripe", event=evt)
            payment_event_process(event_id=stored.pk)
        outcome = _outcome()
        transaction.set_rollback(True)
    return outcome


def _deliver_all(deliveries: list[dict[str, Any]]) -> None:
    client = Client()
    for evt in deliveries:
        resp = deliver(client, evt)
        assert resp.status_code == 200, resp.content


def _wait_until_all_processed(expected: int, errors: list[BaseException]) -> None:
    """Until every stored event has been applied (or the consumer clearly stalled)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not errors:
        done = PaymentEvent.objects.filter(processed_at__isnull=False).count()
        if done == expected:
            return
        time.sleep(0.05)
    left = list(
        PaymentEvent.objects.filter(processed_at__isnull=True).values("event_id", "type", "outcome")
    )
    pytest.fail(f"events left unprocessed: {left}; task errors: {errors}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_day_through_the_real_consumer_leaves_one_ledger_in_any_order(
    tpersonas, fake_stripe, task_consumer, seed
):
    # given both landlords connected and a day of Stripe events
    for world, acct in ((tpersonas.a, ACCT_A), (tpersonas.b, ACCT_B)):
        ConnectAccount.objects.create(
            landlord=world.landlord, stripe_account_id=acct, charges_enabled=True
        )
    events = _a_day(tpersonas.a, tpersonas.b)
    reference = _inline_in_order(events)
    # when they are delivered to the webhook endpoint, shuffled (seed 0: as
    # created), up to three times each, and applied by several workers at once
    deliveries = list(events)
    if seed:
        rng = random.Random(seed)
        deliveries = [e for e in events for _ in range(rng.randint(1, 3))]
        rng.shuffle(deliveries)
    _deliver_all(deliveries)
    _wait_until_all_processed(len(events), task_consumer)
    # then the ledger is the in-order one, entry for entry, and it verifies
    assert task_consumer == []
    outcome = _outcome()
    for key, expected in reference.items():
        assert outcome[key] == expected, (key, set(outcome[key]) ^ set(expected))
    assert ledger_verify() == []
    # and it says what happened: the failed refund is undone, the won
    # chargeback reinstated, the lost one and the dashboard refund kept
    balances = dict(reference["balances"])
    tenant_a = (tpersonas.a.landlord.pk, "tenant", tpersonas.a.prepaid_tenancy.pk, "GBP")
    tenant_b = (tpersonas.b.landlord.pk, "tenant", tpersonas.b.prepaid_tenancy.pk, "GBP")
    assert balances[tenant_a] == 1000 + 2000 + 1500 - 300
    assert balances[tenant_b] == 700 - 700
    assert (ACCT_B, True) in reference["accounts"]
