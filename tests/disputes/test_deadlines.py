"""Deadlines: a reminder before each one, and what happens once it passed,
run by the periodic task with a fixed ``now``; and the emails of every step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from disputes import services
from disputes.freeze import open_dispute_freeze
from disputes.models import Dispute, DisputeMessage
from disputes.tasks import dispute_deadlines_periodic
from landlord.models import AuditEvent
from payments.ledger import tenant_account

from .conftest import open_on_invoice

pytestmark = pytest.mark.django_db
S = Dispute.Status
TENANT, OWNER, ADMIN, ADMIN2 = (
    "tenant@example.com",
    "owner@example.com",
    "admin@example.com",
    "admin2@example.com",
)


@pytest.fixture
def world(personas):
    personas.a.prepaid_tenant.email = TENANT
    personas.a.prepaid_tenant.save()
    personas.a.staff.email = OWNER
    personas.a.staff.save()
    get_user_model().objects.create_user("admin2", email=ADMIN2, is_staff=True)
    return personas


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """The periodic run at a fixed moment; returns (cases acted on, emails sent)."""

    def at(now):
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            acted = services.dispute_deadlines_run(now=now)
        return acted, [(m.subject, sorted(m.to), m.body) for m in mail.outbox]

    return at


def _open(world, django_capture_on_commit_callbacks) -> Dispute:
    with django_capture_on_commit_callbacks(execute=True):
        return open_on_invoice(world.a.prepaid_tenancy, amount=1000)


def _fresh(d: Dispute) -> Dispute:
    return Dispute.objects.get(pk=d.pk)


def test_the_landlord_is_reminded_once_then_the_case_goes_to_the_desk(
    world, run, django_capture_on_commit_callbacks
):
    d = _open(world, django_capture_on_commit_callbacks)
    due = d.due_at
    assert due is not None
    # two days before the deadline: nothing yet
    assert run(due - timedelta(days=2)) == (0, [])
    # within the reminder window: the landlord, and only the landlord, is reminded, once
    acted, sent = run(due - timedelta(hours=3))
    assert acted == 1
    [(subject, to, body)] = sent
    assert to == [OWNER]
    assert f"Dispute #{d.pk}" in subject and "Reminder: respond by" in subject
    assert "goes to the platform's admins" in body
    assert run(due - timedelta(hours=2)) == (0, [])
    assert _fresh(d).status == S.OPEN
    # the window passes: escalated by the deadlines, both parties and the admins told
    now = due + timedelta(minutes=1)
    acted, sent = run(now)
    assert acted == 1
    d = _fresh(d)
    assert d.status == S.ESCALATED
    assert d.due_at == now + timedelta(days=10)
    step = DisputeMessage.objects.filter(dispute=d).last()
    assert step is not None and step.author_id is None
    assert (step.role, step.step) == (DisputeMessage.Role.SYSTEM, "escalated")
    assert "did not respond by" in step.body
    recipients = {frozenset(to) for _, to, _ in sent}
    assert {OWNER, TENANT} in recipients  # both parties, in one email
    assert {ADMIN, ADMIN2} in recipients  # nobody assigned: every admin
    assert AuditEvent.objects.filter(action="dispute.escalated", actor__isnull=True).exists()
    # and the case stays frozen: escalation is not a closing
    assert open_dispute_freeze(tenancy=world.a.prepaid_tenancy)
    assert run(now + timedelta(minutes=5)) == (0, [])


def test_the_admins_are_reminded_and_told_once_when_overdue(
    world, run, django_capture_on_commit_callbacks
):
    d = _open(world, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_respond(dispute=d, actor=world.a.staff, response="contest", note="no")
        services.dispute_escalate(dispute=d, actor=world.a.prepaid_tenant, role="tenant", note="?")
        services.dispute_assign(dispute=d, actor=world.admin, assignee=world.admin)
    due = _fresh(d).due_at
    assert due is not None
    acted, sent = run(due - timedelta(hours=1))
    assert acted == 1
    assert [(to, "Reminder: decide by" in subject) for subject, to, _ in sent] == [([ADMIN], True)]
    acted, sent = run(due + timedelta(hours=1))
    assert acted == 1
    [(subject, to, _)] = sent
    assert to == [ADMIN] and "Overdue" in subject
    # nothing is decided for the admins, and nothing is sent twice
    assert _fresh(d).status == S.ESCALATED
    assert run(due + timedelta(days=3)) == (0, [])


def test_a_tenant_who_does_not_answer_an_offer_gets_it(
    world, run, django_capture_on_commit_callbacks
):
    d = _open(world, django_capture_on_commit_callbacks)
    tenancy = world.a.prepaid_tenancy
    before = tenant_account(tenancy=tenancy).balance_minor
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_respond(
            dispute=d, actor=world.a.staff, response="partial", note="", adjustment_minor=400
        )
    due = _fresh(d).due_at
    assert due is not None
    acted, sent = run(due - timedelta(hours=1))
    [(subject, to, body)] = sent
    assert to == [TENANT] and "accept the landlord's answer or escalate" in subject
    assert "£4.00 is credited to your balance" in body
    acted, sent = run(due + timedelta(seconds=1))
    assert acted == 1
    d = _fresh(d)
    assert d.status == S.RESOLVED and d.adjustment_minor == 400
    assert "did not answer" in d.outcome
    assert tenant_account(tenancy=tenancy).balance_minor == before + 400
    assert {tuple(to) for _, to, _ in sent} == {(OWNER, TENANT)}
    assert open_dispute_freeze(tenancy=tenancy) == ""


def test_a_final_case_has_no_deadline_to_act_on(world, run, django_capture_on_commit_callbacks):
    d = _open(world, django_capture_on_commit_callbacks)
    due = d.due_at
    assert due is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.dispute_withdraw(dispute=d, actor=world.a.prepaid_tenant)
    assert run(due + timedelta(days=1)) == (0, [])
    assert _fresh(d).status == S.WITHDRAWN


def test_the_periodic_task_is_registered_and_runs(world, django_capture_on_commit_callbacks):
    d = _open(world, django_capture_on_commit_callbacks)
    Dispute.objects.filter(pk=d.pk).update(due_at=timezone.now() - timedelta(seconds=1))
    assert dispute_deadlines_periodic.call_local() == 1
    assert _fresh(d).status == S.ESCALATED


def test_every_step_emails_both_parties(world, django_capture_on_commit_callbacks):
    """Each transition a person takes sends one email to the tenant and the landlord."""
    tenant, owner, admin = world.a.prepaid_tenant, world.a.staff, world.admin
    steps = [
        lambda d: services.dispute_respond(
            dispute=d, actor=owner, response="contest", note="Readings agree."
        ),
        lambda d: services.dispute_message_add(dispute=d, actor=tenant, role="tenant", body="?"),
        lambda d: services.dispute_escalate(dispute=d, actor=tenant, role="tenant", note="Look."),
        lambda d: services.dispute_assign(dispute=d, actor=admin, assignee=admin),
        lambda d: services.dispute_resolve(dispute=d, actor=admin, adjustment_minor=200, note="Ok"),
    ]
    mail.outbox.clear()
    d = _open(world, django_capture_on_commit_callbacks)
    assert len([m for m in mail.outbox if {OWNER, TENANT} <= set(m.to)]) == 1
    for step in steps:
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            step(d)
        party_mails = [m for m in mail.outbox if {OWNER, TENANT} <= set(m.to)]
        assert len(party_mails) == 1, [(m.subject, m.to) for m in mail.outbox]
    assert _fresh(d).status == S.RESOLVED
