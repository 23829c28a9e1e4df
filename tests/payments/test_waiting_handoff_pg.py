"""A refund or chargeback event racing its payment's success, forced in both interleavings.

The event arrives while another worker is linking its payment intent. Its
transaction cannot see the uncommitted link, so it is saved as waiting; the
linking transaction's sweep of waiting events cannot see that uncommitted
"waiting" either. Two threads with their own connections (PostgreSQL: SQLite
serialises writers, so the race cannot happen there) are held at the exact
points that make each side miss the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from payments import services
from payments.ledger import tenant_account
from payments.models import ConnectAccount, Dispute, Payment, PaymentEvent, Refund
from payments.services import payment_create

from .conftest import ACCT_A
from .stripe_fake import deliver, event, intent_obj, recorded

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs PostgreSQL (real concurrent writers)"
    ),
]

PI = "pi_3QfakeRace000001"


def _in_thread(work: Callable[[], Any], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _after_first_call(name: str, monkeypatch, hold: Callable[[Any], None]) -> None:
    """Run ``hold(result)`` after the first call of a step of event processing."""
    original = getattr(services, name)
    done = threading.Event()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not done.is_set():
            done.set()
            hold(result)
        return result

    monkeypatch.setattr(services, name, wrapper)


@pytest.fixture
def world(tpersonas, fake_stripe):
    ConnectAccount.objects.create(
        landlord=tpersonas.a.landlord, stripe_account_id=ACCT_A, charges_enabled=True
    )
    payment = payment_create(
        tenancy=tpersonas.a.prepaid_tenancy,
        amount_minor=1000,
        provider="stripe",
        created_by_id=None,
    )
    Payment.objects.filter(pk=payment.pk).update(
        stripe_account=ACCT_A, checkout_session_id=f"cs_test_{payment.uuid.hex[:20]}"
    )
    payment.refresh_from_db()
    return tpersonas, payment


def _dashboard_refund() -> dict:
    obj = recorded("refund", id="re_race_1", amount=300, status="succeeded", payment_intent=PI)
    obj["metadata"] = {}
    return event("refund.updated", obj, account=ACCT_A)


def _chargeback() -> dict:
    obj = {
        "id": "du_race_1",
        "object": "dispute",
        "amount": 1000,
        "currency": "gbp",
        "payment_intent": PI,
        "reason": "fraudulent",
        "status": "lost",
    }
    return event("charge.dispute.funds_withdrawn", obj, account=ACCT_A)


def _assert_applied(personas, late: dict) -> None:
    stored = PaymentEvent.objects.get(event_id=late["id"])
    assert stored.processed_at is not None, stored.outcome
    balance = tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor
    if late["type"].startswith("refund"):
        assert Refund.objects.get().status == "succeeded"
        assert balance == 700
    else:
        assert Dispute.objects.get().funds_withdrawn
        assert balance == 0


@pytest.mark.parametrize("late", [_dashboard_refund, _chargeback], ids=["refund", "chargeback"])
def test_waiting_saved_after_the_success_swept_is_still_applied(world, monkeypatch, late):
    personas, payment = world
    late_event = late()
    swept, waiting_saved = threading.Event(), threading.Event()

    # given the success held after its sweep of waiting events, before its commit
    def hold_success(_result: Any) -> None:
        swept.set()
        assert waiting_saved.wait(30)

    _after_first_call("_waiting_events_process", monkeypatch, hold_success)
    errors: list[BaseException] = []
    success = _in_thread(
        lambda: deliver(
            Client(), event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A)
        ),
        errors,
    )
    assert swept.wait(30)
    # when the refund or chargeback is processed meanwhile, finds no linked
    # payment and commits as waiting
    racer = _in_thread(lambda: deliver(Client(), late_event), errors)
    racer.join(30)
    assert PaymentEvent.objects.get(event_id=late_event["id"]).outcome == services.WAITING
    waiting_saved.set()
    success.join(30)
    assert not errors, errors
    # then it is applied all the same
    _assert_applied(personas, late_event)


@pytest.mark.parametrize("late", [_dashboard_refund, _chargeback], ids=["refund", "chargeback"])
def test_waiting_committed_after_the_link_committed_is_still_applied(world, monkeypatch, late):
    personas, payment = world
    late_event = late()
    found_nothing, linked = threading.Event(), threading.Event()

    # given the refund or chargeback held after finding no payment, before its commit
    def hold_waiting(_result: Any) -> None:
        found_nothing.set()
        assert linked.wait(30)

    _after_first_call("_unmatched", monkeypatch, hold_waiting)
    errors: list[BaseException] = []
    racer = _in_thread(lambda: deliver(Client(), late_event), errors)
    assert found_nothing.wait(30)
    # when the payment succeeds and its link commits meanwhile
    success = _in_thread(
        lambda: deliver(
            Client(), event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A)
        ),
        errors,
    )
    success.join(30)
    assert Payment.objects.get(pk=payment.pk).provider_ref == PI
    linked.set()
    racer.join(30)
    assert not errors, errors
    # then the event that committed "waiting" last is applied all the same
    _assert_applied(personas, late_event)
