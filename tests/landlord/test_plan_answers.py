"""A landlord answers a tenant's payment-plan request: accepted with its terms or
declined with a note, once; the tenant reads it on their page and by email."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord import people
from landlord.hardship import PlanRequestError, payment_plan_answer, payment_plan_request
from landlord.models import AuditEvent, PaymentPlanRequest
from tests.factories import make_staff_member

pytestmark = pytest.mark.django_db


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def _asked(world, message="I lost my job"):
    world.prepaid_tenant.email = "tenant@example.com"
    world.prepaid_tenant.save(update_fields=["email"])
    return payment_plan_request(
        tenancy=world.prepaid_tenancy,
        actor_id=world.prepaid_tenant.pk,
        weekly_minor=1000,
        message=message,
    )


def _answer_url(world, plan):
    return reverse("landlord:plan_answer", args=[world.prepaid.pk, plan.pk])


# --- the service -------------------------------------------------------------------------


def test_accept_records_the_terms_audits_and_emails_the_tenant(
    personas, mailoutbox, django_capture_on_commit_callbacks
):
    a = personas.a
    plan = _asked(a)
    with django_capture_on_commit_callbacks(execute=True):
        payment_plan_answer(
            plan_request=plan, actor_id=a.staff.pk, accept=True, note="  £10 a week from Monday  "
        )
    plan.refresh_from_db()
    assert plan.status == PaymentPlanRequest.Status.ACCEPTED
    assert plan.answer == "£10 a week from Monday" and plan.answered_by_id == a.staff.pk
    assert plan.closed_at is not None
    row = AuditEvent.objects.get(action="payment_plan.accepted")
    assert row.actor_id == a.staff.pk and row.tenancy_id == a.prepaid_tenancy.pk
    assert row.reason == "£10 a week from Monday"
    [mail] = mailoutbox
    assert mail.to == ["tenant@example.com"] and "accepted" in mail.subject
    assert "£10 a week from Monday" in mail.body


def test_an_answer_is_given_once_and_needs_a_note(personas):
    a = personas.a
    plan = _asked(a)
    with pytest.raises(PlanRequestError, match="why"):
        payment_plan_answer(plan_request=plan, actor_id=a.staff.pk, accept=False, note="   ")
    with pytest.raises(PlanRequestError, match="terms"):
        payment_plan_answer(plan_request=plan, actor_id=a.staff.pk, accept=True, note="")
    payment_plan_answer(plan_request=plan, actor_id=a.staff.pk, accept=False, note="Not now")
    with pytest.raises(PlanRequestError, match="already been answered"):
        payment_plan_answer(
            plan_request=plan, actor_id=a.staff.pk, accept=True, note="Yes after all"
        )
    plan.refresh_from_db()
    assert (plan.status, plan.answer) == ("declined", "Not now")
    assert AuditEvent.objects.filter(action__startswith="payment_plan.").count() == 2
    # answered: the tenant may ask again
    _asked(a, message="Could we try again?")
    assert PaymentPlanRequest.objects.filter(status="open").count() == 1


# --- the pages ---------------------------------------------------------------------------


def test_home_and_unit_page_show_the_request_and_the_tenant_reads_the_answer(
    personas, mailoutbox, django_capture_on_commit_callbacks
):
    a = personas.a
    plan = _asked(a)
    landlord = _client(a.staff)
    home = landlord.get(reverse("landlord:units")).content.decode()
    assert 'data-kind="plan"' in home and "payment-plan request" in home
    unit = landlord.get(reverse("landlord:unit", args=[a.prepaid.pk])).content.decode()
    assert 'data-testid="plan-answer"' in unit and "I lost my job" in unit
    # a missing note: refused, what was chosen and typed is kept
    bad = landlord.post(_answer_url(a, plan), {"decision": "decline", "note": ""})
    assert bad.status_code == 400 and "the tenant reads it" in bad.content.decode()
    long = "x" * 1001
    bad = landlord.post(_answer_url(a, plan), {"decision": "accept", "note": long})
    assert bad.status_code == 400 and long in bad.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        ok = landlord.post(
            _answer_url(a, plan), {"decision": "accept", "note": "£10 a week, first on 1 March"}
        )
    assert ok.status_code == 302 and ok["Location"].endswith("#plan-request")
    assert len(mailoutbox) == 1
    unit = landlord.get(reverse("landlord:unit", args=[a.prepaid.pk])).content.decode()
    assert 'data-testid="plan-answered"' in unit and "£10 a week, first on 1 March" in unit
    home = landlord.get(reverse("landlord:units")).content.decode()
    assert 'data-kind="plan"' not in home
    again = landlord.post(_answer_url(a, plan), {"decision": "decline", "note": "No"})
    assert again.status_code == 400 and "already been answered" in again.content.decode()
    tenant = _client(a.prepaid_tenant)
    page = tenant.get(reverse("tenant:cant_pay", args=[a.prepaid_tenancy.pk])).content.decode()
    assert 'data-testid="plan-answer"' in page and "accepted" in page
    assert "£10 a week, first on 1 March" in page
    assert "Send my request" in page  # they may ask again


def test_only_that_units_landlord_may_answer(personas):
    a, b = personas.a, personas.b
    plan = _asked(a)
    data = {"decision": "decline", "note": "No"}
    for user in (b.staff, a.prepaid_tenant, b.prepaid_tenant):
        assert _client(user).post(_answer_url(a, plan), data).status_code == 404
    # the request through another unit of the same landlord: not that unit's
    other_unit = reverse("landlord:plan_answer", args=[a.postpaid.pk, plan.pk])
    assert _client(a.staff).post(other_unit, data).status_code == 404
    assert _client(a.staff).get(_answer_url(a, plan)).status_code == 405
    plan.refresh_from_db()
    assert plan.status == "open"
    # staff of the landlord may answer, as owners may
    resp = _client(make_staff_member(a)).post(_answer_url(a, plan), data)
    assert resp.status_code == 302
    plan.refresh_from_db()
    assert plan.status == "declined"


# --- the tenancy ends --------------------------------------------------------------------


def _move_out(world):
    people.tenancy_move_out(
        tenancy=world.prepaid_tenancy,
        end_date=timezone.localdate(),
        closing_wh=0,
        actor_id=world.staff.pk,
    )


def test_an_open_request_is_closed_unanswered_when_the_tenancy_ends(personas, mailoutbox):
    a = personas.a
    plan = _asked(a)
    landlord = _client(a.staff)
    # given the request waiting on the landlord's pages
    assert 'data-kind="plan"' in landlord.get(reverse("landlord:units")).content.decode()
    # when the tenant moves out
    _move_out(a)
    # then it is closed, audited, and no page asks the landlord to answer it
    plan.refresh_from_db()
    assert plan.status == PaymentPlanRequest.Status.CLOSED and plan.closed_at is not None
    assert plan.answer == "" and plan.answered_by_id is None
    row = AuditEvent.objects.get(action="payment_plan.closed")
    assert row.tenancy_id == a.prepaid_tenancy.pk and row.reason == "the tenancy ended"
    assert 'data-kind="plan"' not in landlord.get(reverse("landlord:units")).content.decode()
    flagged = landlord.get(reverse("landlord:flagged")).content.decode()
    assert "I lost my job" not in flagged
    unit = landlord.get(reverse("landlord:unit", args=[a.prepaid.pk])).content.decode()
    assert 'data-testid="plan-answer"' not in unit  # no answer form
    assert "without an answer" in unit and "the tenancy ended" in unit  # on its last day
    tenant = _client(a.prepaid_tenant)
    page = tenant.get(reverse("tenant:cant_pay", args=[a.prepaid_tenancy.pk])).content.decode()
    assert "was <strong>closed</strong> without an answer" in page
    refused = landlord.post(_answer_url(a, plan), {"decision": "accept", "note": "£5 a week"})
    assert refused.status_code == 400
    assert "closed when the tenancy ended" in refused.content.decode()
    plan.refresh_from_db()
    assert plan.status == PaymentPlanRequest.Status.CLOSED
    assert mailoutbox == []


def test_an_answered_request_keeps_its_answer_when_the_tenancy_ends(personas):
    a = personas.a
    plan = _asked(a)
    payment_plan_answer(plan_request=plan, actor_id=a.staff.pk, accept=True, note="£10 a week")
    _move_out(a)
    plan.refresh_from_db()
    assert (plan.status, plan.answer) == (PaymentPlanRequest.Status.ACCEPTED, "£10 a week")
    assert not AuditEvent.objects.filter(action="payment_plan.closed").exists()
