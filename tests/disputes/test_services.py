"""Every transition of the dispute state machine, and the input it refuses."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from disputes import services
from disputes.models import Dispute, DisputeAttachment
from landlord.models import AuditEvent
from payments.ledger import ledger_verify, tenant_account
from payments.models import LedgerTransaction

from .conftest import PDF, open_on_invoice, png

pytestmark = pytest.mark.django_db
S = Dispute.Status


@pytest.fixture
def world(personas):
    personas.a.prepaid_tenant.email = "tenant@example.com"
    personas.a.prepaid_tenant.save()
    personas.a.staff.email = "owner@example.com"
    personas.a.staff.save()
    return personas


def _admin2():
    user, _ = get_user_model().objects.get_or_create(username="admin2", defaults={"is_staff": True})
    return user


def _balance(tenancy):
    return tenant_account(tenancy=tenancy).balance_minor


def test_open_records_the_case_and_tells_both_parties(world, django_capture_on_commit_callbacks):
    tenancy = world.a.prepaid_tenancy
    with django_capture_on_commit_callbacks(execute=True):
        d = open_on_invoice(tenancy, files=[png()])
    assert d.status == S.OPEN and d.amount_minor == 1000
    assert d.due_at is not None and d.due_at > timezone.now() + timedelta(days=4)
    assert d.messages.get().step == "raised"
    attachment = DisputeAttachment.objects.get(dispute=d)
    assert attachment.content_type == "image/png"
    assert str(attachment.file.name).startswith(f"private/disputes/{d.landlord_id}/{d.pk}/")
    assert AuditEvent.objects.filter(action="dispute.raised", actor=tenancy.tenant).exists()
    [sent] = [m for m in mail.outbox if m.subject.startswith(f"Dispute #{d.pk}")]
    assert set(sent.to) == {"tenant@example.com", "owner@example.com"}


def test_landlord_offer_accepted_by_tenant_posts_exactly_that(world):
    tenancy = world.a.prepaid_tenancy
    before = _balance(tenancy)
    d = open_on_invoice(tenancy)
    d = services.dispute_respond(
        dispute=d,
        actor=world.a.staff,
        response=Dispute.Response.PARTIAL,
        note="The reading was estimated; half of it was wrong.",
        adjustment_minor=600,
    )
    assert d.status == S.LANDLORD_RESPONDED and d.proposed_minor == 600
    d = services.dispute_tenant_accept(dispute=d, actor=tenancy.tenant)
    assert d.status == S.RESOLVED and d.adjustment_minor == 600
    assert _balance(tenancy) == before + 600
    assert d.ledger_transaction is not None
    assert d.ledger_transaction.kind == LedgerTransaction.Kind.ADJUSTMENT
    assert ledger_verify() == []
    steps = list(d.messages.values_list("step", flat=True))
    assert steps == ["raised", "responded", "accepted"]


def test_accepting_a_contest_closes_without_money(world):
    tenancy = world.a.prepaid_tenancy
    before = _balance(tenancy)
    d = open_on_invoice(tenancy)
    services.dispute_respond(
        dispute=d, actor=world.a.staff, response=Dispute.Response.CONTEST, note="Reading is right."
    )
    d = services.dispute_tenant_accept(dispute=d, actor=tenancy.tenant)
    assert d.status == S.RESOLVED and d.adjustment_minor == 0 and d.ledger_transaction is None
    assert _balance(tenancy) == before


def test_contest_needs_a_note(world):
    d = open_on_invoice(world.a.prepaid_tenancy)
    with pytest.raises(services.DisputeError, match="why you contest"):
        services.dispute_respond(
            dispute=d, actor=world.a.staff, response=Dispute.Response.CONTEST, note="  "
        )
    d.refresh_from_db()
    assert d.status == S.OPEN


def test_escalate_then_admin_resolves_small_adjustment(world):
    tenancy = world.a.prepaid_tenancy
    before = _balance(tenancy)
    d = open_on_invoice(tenancy)
    services.dispute_respond(
        dispute=d, actor=world.a.staff, response=Dispute.Response.CONTEST, note="No."
    )
    d = services.dispute_escalate(
        dispute=d, actor=tenancy.tenant, role="tenant", note="The meter was broken."
    )
    assert d.status == S.ESCALATED
    d = services.dispute_resolve(
        dispute=d, actor=world.admin, adjustment_minor=700, note="Meter fault confirmed."
    )
    assert d.status == S.RESOLVED and _balance(tenancy) == before + 700
    assert ledger_verify() == []


def test_resolving_twice_is_refused_and_posts_once(world):
    tenancy = world.a.prepaid_tenancy
    d = open_on_invoice(tenancy)
    services.dispute_resolve(dispute=d, actor=world.admin, adjustment_minor=500, note="ok")
    after = _balance(tenancy)
    with pytest.raises(services.IllegalTransition, match="resolved"):
        services.dispute_resolve(dispute=d, actor=world.admin, adjustment_minor=500, note="again")
    assert _balance(tenancy) == after


def test_adjusting_more_than_disputed_needs_a_reason(world):
    tenancy = world.a.prepaid_tenancy
    d = open_on_invoice(tenancy, amount=1000)
    with pytest.raises(services.DisputeError, match="more than the disputed amount"):
        services.dispute_resolve(dispute=d, actor=world.admin, adjustment_minor=1001, note="x")
    d = services.dispute_resolve(
        dispute=d,
        actor=world.admin,
        adjustment_minor=1200,
        note="Refund plus the late fee.",
        over_reason="the cut-off caused a call-out charge",
    )
    assert d.adjustment_minor == 1200


def test_four_eyes_same_admin_cannot_approve(world, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_FOUR_EYES_ABOVE_MINOR": 500}
    tenancy = world.a.prepaid_tenancy
    before = _balance(tenancy)
    d = open_on_invoice(tenancy)
    d = services.dispute_resolve(dispute=d, actor=world.admin, adjustment_minor=900, note="big")
    assert d.status == S.AWAITING_APPROVAL and _balance(tenancy) == before
    with pytest.raises(services.FourEyes):
        services.dispute_approve(dispute=d, actor=world.admin)
    d = services.dispute_approve(dispute=d, actor=_admin2())
    assert d.status == S.RESOLVED and _balance(tenancy) == before + 900


def test_declined_proposal_goes_back_to_the_desk(world, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_FOUR_EYES_ABOVE_MINOR": 500}
    d = open_on_invoice(world.a.prepaid_tenancy)
    services.dispute_resolve(dispute=d, actor=world.admin, adjustment_minor=900, note="big")
    with pytest.raises(services.DisputeError, match="why the adjustment is declined"):
        services.dispute_decline(dispute=d, actor=_admin2(), note="")
    d = services.dispute_decline(dispute=d, actor=_admin2(), note="Evidence is thin.")
    assert d.status == S.ESCALATED and d.approval_minor is None


def test_reject_needs_reasons_and_is_final(world):
    d = open_on_invoice(world.a.prepaid_tenancy)
    with pytest.raises(services.DisputeError):
        services.dispute_reject(dispute=d, actor=world.admin, note="")
    d = services.dispute_reject(dispute=d, actor=world.admin, note="Readings are consistent.")
    assert d.status == S.REJECTED and d.closed_at is not None
    with pytest.raises(services.IllegalTransition):
        services.dispute_withdraw(dispute=d, actor=world.a.prepaid_tenant)


def test_withdraw_from_any_open_state(world):
    tenancy = world.a.prepaid_tenancy
    d = open_on_invoice(tenancy)
    services.dispute_respond(
        dispute=d,
        actor=world.a.staff,
        response=Dispute.Response.ACCEPT,
        note="",
        adjustment_minor=1000,
    )
    d = services.dispute_withdraw(dispute=d, actor=tenancy.tenant)
    assert d.status == S.WITHDRAWN


def test_escalating_too_early_is_refused_then_allowed_after_the_window(world):
    tenancy = world.a.prepaid_tenancy
    d = open_on_invoice(tenancy)
    with pytest.raises(services.IllegalTransition, match="still has time"):
        services.dispute_escalate(dispute=d, actor=tenancy.tenant, role="tenant", note="slow")
    Dispute.objects.filter(pk=d.pk).update(due_at=timezone.now() - timedelta(minutes=1))
    d = services.dispute_escalate(dispute=d, actor=world.admin, role="admin", note="No answer.")
    assert d.status == S.ESCALATED


def test_illegal_moves_raise_clear_errors(world):
    tenancy = world.a.prepaid_tenancy
    d = open_on_invoice(tenancy)
    with pytest.raises(services.IllegalTransition, match="accept the answer to dispute"):
        services.dispute_tenant_accept(dispute=d, actor=tenancy.tenant)
    with pytest.raises(services.IllegalTransition):
        services.dispute_approve(dispute=d, actor=world.admin)


def test_only_the_right_people_act(world):
    tenancy = world.a.prepaid_tenancy
    d = open_on_invoice(tenancy)
    with pytest.raises(services.DisputeError, match="Only the landlord"):
        services.dispute_respond(
            dispute=d, actor=world.b.staff, response="contest", note="not mine"
        )
    with pytest.raises(services.DisputeError, match="Only the tenant"):
        services.dispute_withdraw(dispute=d, actor=world.b.prepaid_tenant)
    with pytest.raises(services.DisputeError, match="platform admin"):
        services.dispute_resolve(dispute=d, actor=world.a.staff, adjustment_minor=1, note="x")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"message": "   "}, "what is wrong"),
        ({"amount_minor": 0}, "more than zero"),
        ({"amount_minor": 4001}, "explain why"),
        ({"category": "nonsense"}, "Choose what"),
    ],
)
def test_open_refuses_bad_input(world, kwargs, error):
    tenancy = world.a.prepaid_tenancy
    from .conftest import invoice

    args = {
        "tenancy": tenancy,
        "actor": tenancy.tenant,
        "item": services.DisputeItem(subject="invoice", invoice=invoice(tenancy, total=4000)),
        "category": "reading",
        "message": "wrong",
        "amount_minor": 1000,
    }
    with pytest.raises(services.DisputeError, match=error):
        services.dispute_open(**{**args, **kwargs})
    assert not Dispute.objects.exists()


def test_more_than_the_item_with_an_explanation_is_accepted(world):
    tenancy = world.a.prepaid_tenancy
    from .conftest import invoice

    d = services.dispute_open(
        tenancy=tenancy,
        actor=tenancy.tenant,
        item=services.DisputeItem(subject="invoice", invoice=invoice(tenancy, total=4000)),
        category="cutoff",
        message="wrong",
        amount_minor=5000,
        amount_explanation="I also paid a reconnection fee.",
    )
    assert d.amount_minor == 5000


def test_another_tenancys_item_is_refused(world):
    from .conftest import invoice

    tenancy = world.a.prepaid_tenancy
    with pytest.raises(services.DisputeError, match="not part of this tenancy"):
        services.dispute_open(
            tenancy=tenancy,
            actor=tenancy.tenant,
            item=services.DisputeItem(subject="invoice", invoice=invoice(world.b.prepaid_tenancy)),
            category="reading",
            message="wrong",
        )


def test_period_must_be_a_real_range(world):
    tenancy = world.a.prepaid_tenancy
    with pytest.raises(services.DisputeError, match="before its first day"):
        services.dispute_open(
            tenancy=tenancy,
            actor=tenancy.tenant,
            item=services.DisputeItem(
                subject="period", period_start=date(2026, 2, 2), period_end=date(2026, 2, 1)
            ),
            category="reading",
            message="wrong",
        )


def test_oversized_attachment_is_refused(world, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_ATTACHMENT_MAX_BYTES": 1024}
    big = SimpleUploadedFile("big.pdf", PDF + b"x" * 2000, content_type="application/pdf")
    with pytest.raises(services.DisputeError, match="larger than"):
        open_on_invoice(world.a.prepaid_tenancy, files=[big])
    assert not Dispute.objects.exists() and not DisputeAttachment.objects.exists()


@pytest.mark.parametrize(
    "upload",
    [
        SimpleUploadedFile(
            "photo.jpg", b"<html><script>alert(1)</script>", content_type="image/jpeg"
        ),
        SimpleUploadedFile("doc.pdf", b"MZ\x90\x00 an executable", content_type="application/pdf"),
        SimpleUploadedFile("empty.png", b"", content_type="image/png"),
    ],
)
def test_wrong_type_attachment_is_refused_by_its_bytes(world, upload):
    with pytest.raises(services.DisputeError):
        open_on_invoice(world.a.prepaid_tenancy, files=[upload])
    assert not Dispute.objects.exists()


def test_messages_on_a_closed_case_are_refused(world):
    tenancy = world.a.prepaid_tenancy
    d = open_on_invoice(tenancy)
    services.dispute_message_add(dispute=d, actor=world.a.staff, role="landlord", body="Looking.")
    services.dispute_withdraw(dispute=d, actor=tenancy.tenant)
    with pytest.raises(services.IllegalTransition, match="no more messages"):
        services.dispute_message_add(dispute=d, actor=tenancy.tenant, role="tenant", body="hi")


def test_assignment_is_for_admins(world):
    d = open_on_invoice(world.a.prepaid_tenancy)
    d = services.dispute_assign(dispute=d, actor=world.admin, assignee=world.admin)
    assert d.assigned_to_id == world.admin.pk
    with pytest.raises(services.DisputeError):
        services.dispute_assign(dispute=d, actor=world.admin, assignee=world.a.staff)
