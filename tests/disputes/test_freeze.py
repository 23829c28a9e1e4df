"""An open dispute freezes automatic disconnection; closing it lets the normal notice run."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disputes import services
from disputes.freeze import open_dispute_freeze
from disputes.models import Dispute
from meters.models import CutoffNotice, Device, RelayState
from payments.ledger import ledger_verify, tenant_account
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
    ]
)


class _Rollback(Exception):
    pass


def _do(action, d, world, admin, admin2):
    tenant = world.prepaid_tenant
    if action == "respond_offer":
        services.dispute_respond(
            dispute=d, actor=world.staff, response="partial", note="", adjustment_minor=400
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


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=st.lists(ACTIONS, max_size=8))
def test_property_freeze_follows_the_case(personas, actions, django_settings_for_four_eyes):
    """Any sequence of steps: the supply is held on exactly while the case is open,
    and the balance moves by exactly the adjustment posted."""
    world = personas.a
    tenancy = world.prepaid_tenancy
    admin = personas.admin
    admin2 = django_settings_for_four_eyes
    try:
        with transaction.atomic():
            charge(tenancy, 100_000, "deep-debt")
            d = open_on_invoice(tenancy, amount=1000)
            before = tenant_account(tenancy=tenancy).balance_minor
            for action in actions:
                try:
                    with transaction.atomic():
                        _do(action, d, world, admin, admin2)
                except services.DisputeError:
                    pass
                d.refresh_from_db()
                frozen = bool(open_dispute_freeze(tenancy=tenancy))
                assert frozen == (not d.is_final), (action, d.status)
                assert _relay(world) == (RelayState.ON if frozen else RelayState.OFF), (
                    action,
                    d.status,
                )
            assert tenant_account(tenancy=tenancy).balance_minor == before + d.adjustment_minor
            assert ledger_verify() == []
            raise _Rollback
    except _Rollback:
        pass


@pytest.fixture
def django_settings_for_four_eyes(settings):
    from django.contrib.auth import get_user_model

    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_FOUR_EYES_ABOVE_MINOR": 500}
    user, _ = get_user_model().objects.get_or_create(username="admin2", defaults={"is_staff": True})
    return user
