"""A switch between prepaid and postpaid at a chosen moment (landlord/mode_switches.py):
scheduled, cancelled, and made by the periodic task through the same cut-over as a
switch now; refusals change nothing, and the ledger verifies after each switch."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import pytest
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord import mode_switches, people
from landlord.models import AuditEvent, ModeSwitchSchedule, Unit
from landlord.tasks import mode_switches_periodic
from payments.ledger import Leg, landlord_account, ledger_post, ledger_verify, tenant_account
from payments.models import Account, Invoice

Status = ModeSwitchSchedule.Status


def _credit(tenancy, amount: int) -> None:
    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency="GBP"
    )
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="adjustment",
        idempotency_key=f"test-credit-{tenancy.pk}-{amount}",
        legs=[Leg(debit=clearing, credit=tenant_account(tenancy=tenancy), amount_minor=amount)],
    )


def _schedule(unit, mode, *, hours=2, confirmed=False, actor=None):
    return mode_switches.mode_switch_schedule(
        unit=unit,
        mode=mode,
        at=timezone.now() + timedelta(hours=hours),
        confirmed=confirmed,
        actor_id=actor.pk if actor else None,
    )


def test_a_scheduled_switch_waits_for_its_moment_then_carries_the_credit(personas):
    world = personas.a
    _credit(world.prepaid_tenancy, 1500)
    switch = _schedule(world.prepaid, "postpaid", actor=world.staff)
    assert AuditEvent.objects.get(action="unit.billing_mode_scheduled").actor == world.staff

    # before its moment: nothing happens
    assert mode_switches.mode_switches_apply_due() == 0
    assert Unit.objects.get(pk=world.prepaid.pk).billing_mode == "prepaid"

    # when its moment has come
    made = mode_switches.mode_switches_apply_due(now=switch.at + timedelta(seconds=30))

    assert made == 1
    switch.refresh_from_db()
    assert switch.status == Status.DONE and switch.finished_at is not None
    assert Unit.objects.get(pk=world.prepaid.pk).billing_mode == "postpaid"
    event = AuditEvent.objects.get(action="unit.billing_mode_switched")
    assert event.actor == world.staff and event.data["to"] == "postpaid"
    assert tenant_account(tenancy=world.prepaid_tenancy).balance_minor == 1500
    assert ledger_verify() == []
    # made once
    assert mode_switches.mode_switches_apply_due(now=switch.at + timedelta(minutes=5)) == 0


def test_a_scheduled_switch_to_prepaid_issues_the_closing_bill(personas):
    world = personas.a
    switch = _schedule(world.postpaid, "prepaid", confirmed=True)
    mode_switches.mode_switches_apply_due(now=switch.at + timedelta(seconds=1))
    switch.refresh_from_db()
    assert switch.status == Status.DONE
    assert Unit.objects.get(pk=world.postpaid.pk).billing_mode == "prepaid"
    assert Invoice.objects.filter(tenancy=world.postpaid_tenancy).exists()
    assert ledger_verify() == []


def test_the_periodic_task_is_registered_and_makes_due_switches(personas):
    world = personas.a
    switch = _schedule(world.prepaid, "postpaid")
    ModeSwitchSchedule.objects.filter(pk=switch.pk).update(at=timezone.now() - timedelta(minutes=1))
    assert mode_switches_periodic.call_local() == 1
    assert Unit.objects.get(pk=world.prepaid.pk).billing_mode == "postpaid"


def test_a_cancelled_switch_never_happens(personas):
    world = personas.a
    switch = _schedule(world.prepaid, "postpaid")
    mode_switches.mode_switch_cancel(switch=switch, actor_id=world.staff.pk)
    assert mode_switches.mode_switches_apply_due(now=switch.at + timedelta(hours=1)) == 0
    switch.refresh_from_db()
    assert switch.status == Status.CANCELLED and switch.finished_by == world.staff
    assert Unit.objects.get(pk=world.prepaid.pk).billing_mode == "prepaid"
    with pytest.raises(people.PeopleError, match="cancelled already"):
        mode_switches.mode_switch_cancel(switch=switch, actor_id=None)
    # a new one may be scheduled after a cancel
    assert _schedule(world.prepaid, "postpaid").status == Status.PENDING


def test_a_switch_made_by_hand_meanwhile_fails_with_its_reason(personas):
    world = personas.a
    switch = _schedule(world.prepaid, "postpaid")
    people.unit_billing_mode_switch(
        unit=world.prepaid, mode="postpaid", confirmed=True, actor_id=None
    )
    assert mode_switches.mode_switches_apply_due(now=switch.at) == 0
    switch.refresh_from_db()
    assert switch.status == Status.FAILED and "postpaid already" in switch.error
    assert AuditEvent.objects.filter(action="unit.billing_mode_schedule_failed").exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("past", "in the future"),
        ("same mode", "prepaid already"),
        ("too far", "within a year"),
        ("unconfirmed prepaid", "Confirm"),
        ("bad mode", "prepaid or postpaid"),
        ("twice", "scheduled already"),
    ],
)
def test_a_refused_schedule_changes_nothing(personas, case, message):
    world = personas.a
    unit, mode, hours, confirmed = world.prepaid, "postpaid", 2, False
    if case == "past":
        hours = -1
    elif case == "same mode":
        mode = "prepaid"
    elif case == "too far":
        hours = 367 * 24
    elif case == "unconfirmed prepaid":
        unit, mode = world.postpaid, "prepaid"
    elif case == "bad mode":
        mode = "free"
    elif case == "twice":
        _schedule(unit, mode)
    before = ModeSwitchSchedule.objects.count()
    with pytest.raises(people.PeopleError, match=message):
        _schedule(unit, mode, hours=hours, confirmed=confirmed)
    assert ModeSwitchSchedule.objects.count() == before


# --- pages ----------------------------------------------------------------------------


def _owner(world) -> Client:
    client = Client()
    client.force_login(world.staff)
    return client


def test_the_owner_schedules_in_local_time_sees_it_and_cancels(personas):
    world = personas.a
    world.prop.timezone = "America/New_York"
    world.prop.save(update_fields=["timezone"])
    client = _owner(world)
    local = timezone.localtime(timezone.now(), timezone.get_fixed_timezone(0)) + timedelta(days=3)
    at = f"{local:%Y-%m-%d}T09:30"
    resp = client.post(
        reverse("landlord:people:mode_schedule", args=[world.prepaid.pk]),
        {"mode": "postpaid", "at": at},
    )
    assert resp.status_code == 302
    switch = ModeSwitchSchedule.objects.get()
    new_york = timezone.localtime(switch.at, zoneinfo.ZoneInfo("America/New_York"))
    assert (new_york.hour, new_york.minute) == (9, 30)

    page = client.get(reverse("landlord:people:billing_mode", args=[world.prepaid.pk]))
    assert "Switch to postpaid scheduled" in page.content.decode()
    for name in ("landlord:unit", "landlord:people:tenants"):
        body = client.get(reverse(name, args=[world.prepaid.pk])).content.decode()
        assert "Switches to postpaid on" in body, name

    resp = client.post(
        reverse("landlord:people:mode_schedule_cancel", args=[world.prepaid.pk, switch.pk])
    )
    assert resp.status_code == 302
    switch.refresh_from_db()
    assert switch.status == Status.CANCELLED


def test_a_refused_schedule_keeps_the_input(personas):
    client = _owner(personas.a)
    at = f"{timezone.localdate() + timedelta(days=30):%Y-%m-%d}T08:15"
    resp = client.post(
        reverse("landlord:people:mode_schedule", args=[personas.a.postpaid.pk]),
        {"mode": "prepaid", "at": at},
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "Confirm the switch" in body and f'value="{at}"' in body
    assert not ModeSwitchSchedule.objects.exists()


def test_another_units_switch_is_not_found(personas):
    other = _schedule(personas.a.postpaid, "prepaid", confirmed=True)
    resp = _owner(personas.a).post(
        reverse("landlord:people:mode_schedule_cancel", args=[personas.a.prepaid.pk, other.pk])
    )
    assert resp.status_code == 404
    other.refresh_from_db()
    assert other.status == Status.PENDING


def test_the_tenant_note_explains_the_cut_over(personas):
    world = personas.a
    _schedule(world.prepaid, "postpaid")
    html = Template("{% load mode_switches %}{% tenancy_mode_switch tenancy %}").render(
        Context({"tenancy": world.prepaid_tenancy})
    )
    assert "your electricity is" in html and "pays your next bills" in html
    # not for a tenancy that ends before the switch
    world.prepaid_tenancy.end_date = timezone.localdate()
    world.prepaid_tenancy.save(update_fields=["end_date"])
    ModeSwitchSchedule.objects.update(at=timezone.now() + timedelta(days=3))
    html = Template("{% load mode_switches %}{% tenancy_mode_switch tenancy %}").render(
        Context({"tenancy": world.prepaid_tenancy})
    )
    assert html.strip() == ""
