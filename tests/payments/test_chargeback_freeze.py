"""A chargeback whose funds were withdrawn freezes a prepaid unit's disconnection
until Stripe closes it (``disputes.freeze``), through signed webhooks.

The test property cuts at once (no notice, any time), so without the freeze a
withdrawal that empties the balance would cut the supply in the same request.
"""

from __future__ import annotations

import pytest

from disputes.freeze import open_dispute_freeze
from meters.models import CutoffNotice, Device, RelayState
from payments.ledger import tenant_account
from payments.models import Dispute, Payment
from payments.services import payment_create

from .conftest import ACCT_A
from .stripe_fake import event, intent_obj

PI = "pi_3QfakeIntent0002"


@pytest.fixture
def paid(personas, connected, hook) -> Payment:
    """The prepaid tenant's only credit: one 10.00 card top-up."""
    payment = payment_create(
        tenancy=personas.a.prepaid_tenancy, amount_minor=1000, provider="stripe", created_by_id=None
    )
    Payment.objects.filter(pk=payment.pk).update(stripe_account=ACCT_A)
    payment.refresh_from_db()
    hook(event("payment_intent.succeeded", intent_obj(payment, pi=PI), account=ACCT_A))
    assert tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor == 1000
    return payment


def _chargeback(status: str, amount: int = 1000) -> dict[str, object]:
    return {
        "id": "du_1QfakeDispute02",
        "object": "dispute",
        "amount": amount,
        "currency": "gbp",
        "charge": "ch_3QfakeCharge0002",
        "payment_intent": PI,
        "reason": "fraudulent",
        "status": status,
        "evidence_details": {"due_by": 1796000000},
    }


def _device(personas) -> Device:
    return Device.objects.get(pk=personas.a.prepaid_device.device.pk)


def _balance(personas) -> int:
    return tenant_account(tenancy=personas.a.prepaid_tenancy).balance_minor


def test_withdrawn_chargeback_freezes_the_cutoff_until_it_is_lost(personas, paid, hook):
    # given a chargeback opened by the bank: no money has moved, nothing is frozen
    hook(event("charge.dispute.created", _chargeback("needs_response"), account=ACCT_A))
    assert open_dispute_freeze(tenancy=personas.a.prepaid_tenancy) == ""
    # when the funds are withdrawn, leaving the prepaid balance at zero
    hook(event("charge.dispute.funds_withdrawn", _chargeback("needs_response"), account=ACCT_A))
    # then the supply stays on, frozen by the chargeback, with no cut-off notice
    assert _balance(personas) == 0
    chargeback = Dispute.objects.get()
    device = _device(personas)
    assert device.desired_relay == RelayState.ON
    assert f"chargeback #{chargeback.pk} open" in device.desired_reason
    assert not CutoffNotice.objects.filter(
        tenancy=personas.a.prepaid_tenancy, status=CutoffNotice.Status.SCHEDULED
    ).exists()
    # a duplicate or an update while under review changes nothing
    hook(event("charge.dispute.funds_withdrawn", _chargeback("needs_response"), account=ACCT_A))
    hook(event("charge.dispute.updated", _chargeback("under_review"), account=ACCT_A))
    assert _balance(personas) == 0
    assert _device(personas).desired_relay == RelayState.ON
    # when the bank decides for the cardholder, the freeze lifts and the normal rules apply
    hook(event("charge.dispute.closed", _chargeback("lost"), account=ACCT_A))
    assert open_dispute_freeze(tenancy=personas.a.prepaid_tenancy) == ""
    assert _balance(personas) == 0
    assert _device(personas).desired_relay == RelayState.OFF


def test_a_chargeback_won_gives_the_credit_back_and_lifts_the_freeze(personas, paid, hook):
    hook(event("charge.dispute.funds_withdrawn", _chargeback("needs_response"), account=ACCT_A))
    assert _device(personas).desired_relay == RelayState.ON
    hook(event("charge.dispute.closed", _chargeback("won"), account=ACCT_A))
    hook(event("charge.dispute.funds_reinstated", _chargeback("won"), account=ACCT_A))
    assert _balance(personas) == 1000
    assert open_dispute_freeze(tenancy=personas.a.prepaid_tenancy) == ""
    device = _device(personas)
    assert device.desired_relay == RelayState.ON
    assert "chargeback" not in device.desired_reason


def test_a_chargeback_closed_before_its_withdrawal_event_never_freezes(personas, paid, hook):
    # Stripe's events come out of order: the closing one first
    hook(event("charge.dispute.closed", _chargeback("lost"), account=ACCT_A))
    hook(event("charge.dispute.funds_withdrawn", _chargeback("needs_response"), account=ACCT_A))
    assert Dispute.objects.get().status == "lost"
    assert _balance(personas) == 0
    assert open_dispute_freeze(tenancy=personas.a.prepaid_tenancy) == ""
    assert _device(personas).desired_relay == RelayState.OFF


def test_the_freeze_is_the_tenancys_own(personas, paid, hook):
    hook(event("charge.dispute.funds_withdrawn", _chargeback("needs_response"), account=ACCT_A))
    assert open_dispute_freeze(tenancy=personas.a.prepaid_tenancy)
    assert open_dispute_freeze(tenancy=personas.b.prepaid_tenancy) == ""
