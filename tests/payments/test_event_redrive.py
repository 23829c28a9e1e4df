"""The periodic re-drive of payment events: lost tasks, stranded waiting events, age alerts."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from payments.ledger import tenant_account
from payments.models import Dispute, Payment, PaymentEvent
from payments.services import WAITING, payment_create, payment_events_redrive
from payments.tasks import payment_events_redrive_periodic

from .conftest import ACCT_A
from .stripe_fake import deliver, event, intent_obj

PI = "pi_3QfakeRedrive0001"


@pytest.fixture
def payment(personas, connected) -> Payment:
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="stripe", created_by_id=None
    )
    Payment.objects.filter(pk=payment.pk).update(
        stripe_account=ACCT_A, checkout_session_id=f"cs_test_{payment.uuid.hex[:20]}"
    )
    payment.refresh_from_db()
    return payment


def _balance(personas) -> int:
    return tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor


def _acknowledged_but_task_lost(django_capture_on_commit_callbacks, evt) -> PaymentEvent:
    """Stripe gets its 200, but the queued processing never runs (the consumer was killed)."""
    with django_capture_on_commit_callbacks(execute=False):
        assert deliver(Client(), evt).status_code == 200
    return PaymentEvent.objects.get(event_id=evt["id"])


def _dispute(status: str = "lost") -> dict:
    return {
        "id": "du_1QfakeRedrive01",
        "object": "dispute",
        "amount": 1000,
        "currency": "gbp",
        "payment_intent": PI,
        "reason": "fraudulent",
        "status": status,
    }


def test_a_paid_top_up_whose_task_was_lost_is_credited_by_the_periodic_task(
    personas, payment, django_capture_on_commit_callbacks
):
    # given a succeeded payment's event, stored and acknowledged, its task lost
    stored = _acknowledged_but_task_lost(
        django_capture_on_commit_callbacks,
        event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A),
    )
    assert stored.processed_at is None and _balance(personas) == 0
    # when the periodic re-drive runs, a little after it arrived
    PaymentEvent.objects.filter(pk=stored.pk).update(
        received_at=timezone.now() - timedelta(minutes=2)
    )
    assert payment_events_redrive_periodic.call_local() == 1
    # then the top-up is credited, once, however often it runs
    assert _balance(personas) == 1000
    assert payment_events_redrive_periodic.call_local() == 0
    assert _balance(personas) == 1000
    stored.refresh_from_db()
    assert stored.outcome == "payment succeeded"


def test_an_event_still_in_its_queue_is_left_to_its_task(
    personas, payment, django_capture_on_commit_callbacks
):
    _acknowledged_but_task_lost(
        django_capture_on_commit_callbacks,
        event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A),
    )
    assert payment_events_redrive(now=timezone.now() + timedelta(seconds=5)) == 0
    assert _balance(personas) == 0


def test_a_waiting_chargeback_whose_payment_is_linked_by_now_is_applied(
    personas, payment, django_capture_on_commit_callbacks
):
    # given a paid payment, and a chargeback left "waiting" by a transaction
    # that could not see the payment's link, whose after-commit look was lost
    with django_capture_on_commit_callbacks(execute=True):
        deliver(
            Client(), event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A)
        )
    stranded = _acknowledged_but_task_lost(
        django_capture_on_commit_callbacks,
        event("charge.dispute.funds_withdrawn", _dispute(), account=ACCT_A),
    )
    PaymentEvent.objects.filter(pk=stranded.pk).update(outcome=WAITING)
    assert _balance(personas) == 1000
    # when the re-drive runs
    assert payment_events_redrive(now=timezone.now() + timedelta(minutes=2)) == 1
    # then the chargeback is applied
    assert Dispute.objects.get().status == "lost"
    assert _balance(personas) == 0


def test_events_unresolved_too_long_are_reported_once(
    personas, payment, connected, django_capture_on_commit_callbacks, caplog, settings
):
    settings.SUBMETER = {**settings.SUBMETER, "PAYMENT_EVENT_ALERT_MINUTES": 30}
    # given a chargeback on a charge this platform never made: it waits forever
    other = {**_dispute(), "id": "du_1QfakeElsewhere", "payment_intent": "pi_elsewhere"}
    with django_capture_on_commit_callbacks(execute=True):
        deliver(Client(), event("charge.dispute.created", other, account=ACCT_A))
    stuck = PaymentEvent.objects.get()
    assert stuck.outcome == WAITING
    # when the re-drive runs before and after the alert age
    with caplog.at_level(logging.ERROR, logger="payments.services"):
        payment_events_redrive(now=timezone.now() + timedelta(minutes=29))
        assert not caplog.records
        payment_events_redrive(now=timezone.now() + timedelta(minutes=31))
        payment_events_redrive(now=timezone.now() + timedelta(minutes=45))
    # then it is reported once, at error level, by its Stripe id
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert stuck.event_id in record.getMessage()
    stuck.refresh_from_db()
    assert stuck.alerted_at is not None and stuck.processed_at is None
