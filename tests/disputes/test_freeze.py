"""An open dispute freezes automatic disconnection; closing it lets the normal notice run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from disputes import services
from disputes.freeze import open_dispute_freeze
from disputes.models import Dispute
from meters.models import CutoffNotice, Device, RelayState
from payments.ledger import ledger_verify, tenant_account
from payments.models import Refund
from payments.providers import DevelopmentProvider
from payments.services import payment_create
from supply.decision import supply_evaluate

from .conftest import charge, open_on_invoice

pytestmark = pytest.mark.django_db


def _relay(world) -> str:
    return Device.objects.get(pk=world.prepaid_device.device.pk).desired_relay


def test_open_dispute_keeps_a_negative_prepaid_supply_on(personas):
    world = personas.a
    tenancy = world.prepaid_tenancy
    d = open_on_invoice(tenancy)
    charge(tenancy, 500, "usage-1")
    supply_evaluate(unit=world.prepaid, reason="usage")
    assert tenant_account(tenancy=tenancy).balance_minor < 0
    assert _relay(world) == RelayState.ON
    device = Device.objects.get(pk=world.prepaid_device.device.pk)
    assert f"dispute #{d.pk} open" in device.desired_reason
    assert not CutoffNotice.objects.filter(tenancy=tenancy, status="scheduled").exists()


def test_opening_a_dispute_restores_a_cut_supply(personas):
    world = personas.a
    tenancy = world.prepaid_tenancy
    charge(tenancy, 500, "usage-1")
    supply_evaluate(unit=world.prepaid, reason="usage")
    assert _relay(world) == RelayState.OFF  # the test property cuts without notice
    open_on_invoice(tenancy)
    assert _relay(world) == RelayState.ON


def test_closing_lets_the_cutoff_proceed_through_a_new_notice(personas):
    world = personas.a
    world.prop.cutoff_notice_minutes = 60
    world.prop.save()
    tenancy = world.prepaid_tenancy
    d = open_on_invoice(tenancy)
    charge(tenancy, 500, "usage-1")
    supply_evaluate(unit=world.prepaid, reason="usage")
    assert _relay(world) == RelayState.ON
    # when the tenant withdraws
    services.dispute_withdraw(dispute=d, actor=tenancy.tenant)
    # then a notice is given with the full notice period, and the supply stays on until then
    notice = CutoffNotice.objects.get(tenancy=tenancy, status="scheduled")
    assert notice.earliest_at is not None
    assert notice.earliest_at >= timezone.now() + timedelta(minutes=59)
    assert _relay(world) == RelayState.ON
    supply_evaluate(
        unit=world.prepaid, reason="cut-off due", now=notice.earliest_at + timedelta(seconds=1)
    )
    assert _relay(world) == RelayState.OFF


def test_freeze_hook_is_configured():
    from django.conf import settings as dj

    assert "disputes.freeze.open_dispute_freeze" in dj.SUBMETER["DISCONNECTION_FREEZE_HOOKS"]


ACTIONS = st.sampled_from(
    [
        "respond_offer",
        "respond_contest",
        "accept",
        "escalate",
        "resolve_small",
        "resolve_big",
        "approve",
        "decline",
        "reject",
        "withdraw",
        "message",
        "overdue",
        "deadlines",
        "refund_small",
        "refund_big",
        "respond_refund",
        "respond_refund_credit",
    ]
)


class _Rollback(Exception):
    pass


def _do(action, d, world, admin, admin2, payment):
    tenant = world.prepaid_tenant
    if action == "respond_offer":
        services.dispute_respond(
            dispute=d, actor=world.staff, response="partial", note="", adjustment_minor=400
        )
    elif action in ("respond_refund", "respond_refund_credit"):
        # The landlord's own refund: above the four-eyes amount, and no admin approves it.
        services.dispute_respond(
            dispute=d,
            actor=world.staff,
            response="refund",
            note="",
            adjustment_minor=700,
            payment=payment,
            credit=action == "respond_refund_credit",
        )
    elif action == "respond_contest":
        services.dispute_respond(dispute=d, actor=world.staff, response="contest", note="no")
    elif action == "accept":
        services.dispute_tenant_accept(dispute=d, actor=tenant)
    elif action == "escalate":
        services.dispute_escalate(dispute=d, actor=tenant, role="tenant", note="please")
    elif action == "resolve_small":
        services.dispute_resolve(dispute=d, actor=admin, adjustment_minor=300, note="ok")
    elif action == "resolve_big":
        services.dispute_resolve(
            dispute=d, actor=admin, adjustment_minor=900, note="big", over_reason=""
        )
    elif action == "approve":
        services.dispute_approve(dispute=d, actor=admin2)
    elif action == "decline":
        services.dispute_decline(dispute=d, actor=admin2, note="no")
    elif action == "reject":
        services.dispute_reject(dispute=d, actor=admin, note="no")
    elif action == "withdraw":
        services.dispute_withdraw(dispute=d, actor=tenant)
    elif action == "message":
        services.dispute_message_add(dispute=d, actor=tenant, role="tenant", body="hello")
    elif action == "overdue":
        Dispute.objects.filter(pk=d.pk).update(due_at=timezone.now() - timedelta(seconds=1))
    elif action == "deadlines":
        services.dispute_deadlines_run(now=timezone.now() + timedelta(days=30))
    elif action == "refund_small":
        services.dispute_resolve_refund(
            dispute=d, actor=admin, payment=payment, amount_minor=200, note="refund"
        )
    elif action == "refund_big":
        services.dispute_resolve_refund(
            dispute=d, actor=admin, payment=payment, amount_minor=800, note="refund", credit=True
        )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(st.tuples(ACTIONS, st.integers(0, 1)), max_size=10))
@example(steps=[("refund_small", 0), ("refund_big", 1), ("approve", 1)])
@example(steps=[("respond_contest", 1), ("deadlines", 0), ("deadlines", 1), ("deadlines", 0)])
@example(
    steps=[("respond_refund", 0), ("respond_refund_credit", 1), ("accept", 0), ("deadlines", 0)]
)
def test_property_freeze_follows_the_cases(
    personas, steps, django_settings_for_four_eyes, django_capture_on_commit_callbacks
):
    """Any sequence of steps on two cases of one tenancy (the deadlines and refunds
    through the development provider, an admin's or the landlord's, among them): the supply is held on exactly
    while a case is open, never frozen once both are closed and never released
    while one is open; the balance moves by exactly the adjustments posted less
    the refunds the provider confirmed."""
    world = personas.a
    tenancy = world.prepaid_tenancy
    admin = personas.admin
    admin2 = django_settings_for_four_eyes
    try:
        with transaction.atomic():
            charge(tenancy, 100_000, "deep-debt")
            with django_capture_on_commit_callbacks(execute=True):
                payment = payment_create(
                    tenancy=tenancy, amount_minor=5000, provider="dev", created_by_id=None
                )
                DevelopmentProvider().complete(payment=payment, outcome="succeeded")
            cases = [open_on_invoice(tenancy, amount=1000, total=4000, month=m) for m in (1, 2)]
            before = tenant_account(tenancy=tenancy).balance_minor
            for action, which in steps:
                try:
                    with transaction.atomic(), django_capture_on_commit_callbacks(execute=True):
                        _do(action, cases[which], world, admin, admin2, payment)
                except services.DisputeError:
                    pass
                for d in cases:
                    d.refresh_from_db()
                is_open = any(not d.is_final for d in cases)
                frozen = bool(open_dispute_freeze(tenancy=tenancy))
                assert frozen == is_open, (action, [d.status for d in cases])
                assert _relay(world) == (RelayState.ON if frozen else RelayState.OFF), (
                    action,
                    [d.status for d in cases],
                )
            refunded = sum(
                d.refund.amount_minor
                for d in cases
                if d.refund is not None and d.refund.status == Refund.Status.SUCCEEDED
            )
            adjusted = sum(d.adjustment_minor for d in cases)
            balance = tenant_account(tenancy=tenancy).balance_minor
            assert balance == before + adjusted - refunded
            assert ledger_verify() == []
            raise _Rollback
    except _Rollback:
        pass


@pytest.fixture
def django_settings_for_four_eyes(settings):
    from django.contrib.auth import get_user_model

    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_FOUR_EYES_ABOVE_MINOR": 500}
    settings.STRIPE_SECRET_KEY = ""
    settings.DEVELOPMENT_PAYMENTS = True
    user, _ = get_user_model().objects.get_or_create(username="admin2", defaults={"is_staff": True})
    return user
