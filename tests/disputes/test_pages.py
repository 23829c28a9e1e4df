"""Every dispute page through the test client: the tenant's, the landlord's, the desk."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from disputes import selectors, services
from disputes.models import Dispute, DisputeAttachment
from meters.models import Reading
from meters.readings import ReadingInput, readings_record
from payments.ledger import tenant_account
from payments.models import Dispute as Chargeback
from payments.models import Payment
from supply.decision import supply_evaluate

from .conftest import PNG, charge, invoice, open_on_invoice

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_tenant_raises_a_dispute_with_a_photo(personas):
    tenancy = personas.a.prepaid_tenancy
    bill = invoice(tenancy)
    client = _client(tenancy.tenant)
    home = client.get(reverse("tenant:home", args=[tenancy.pk])).content.decode()
    assert reverse("disputes:tenant_list", args=[tenancy.pk]) in home
    page = client.get(reverse("disputes:new", args=[tenancy.pk]), {"subject": "invoice"})
    assert page.status_code == 200 and "January 2026" in page.content.decode()
    resp = client.post(
        reverse("disputes:new", args=[tenancy.pk]),
        {
            "subject": "invoice",
            "invoice": bill.pk,
            "category": "reading",
            "message": "The reading on the 14th is wrong.",
            "amount": "12.50",
            "files": SimpleUploadedFile("photo.png", PNG, content_type="image/png"),
        },
    )
    d = Dispute.objects.get()
    assert resp.status_code == 302 and resp["Location"] == reverse("disputes:detail", args=[d.pk])
    assert d.amount_minor == 1250 and d.invoice == bill
    body = client.get(resp["Location"]).content.decode()
    assert "Waiting for the landlord" in body and "The reading on the 14th is wrong." in body
    attachment = DisputeAttachment.objects.get()
    url = reverse("disputes:attachment", args=[d.pk, attachment.pk])
    assert url in body
    got = client.get(url)
    assert got.status_code == 200 and got["Content-Type"] == "image/png"
    assert b"".join(got.streaming_content) == PNG  # type: ignore[attr-defined]
    assert _client(personas.b.prepaid_tenant).get(url).status_code == 404
    assert Client().get(url).status_code == 302
    listing = client.get(reverse("disputes:tenant_list", args=[tenancy.pk])).content.decode()
    assert f"#{d.pk}" in listing


def test_a_refused_dispute_keeps_what_was_typed(personas):
    tenancy = personas.a.prepaid_tenancy
    client = _client(tenancy.tenant)
    resp = client.post(
        reverse("disputes:new", args=[tenancy.pk]),
        {
            "subject": "period",
            "period_start": "2026-01-01",
            "period_end": "2026-01-31",
            "category": "price",
            "message": "Night rate was never applied.",
            "files": SimpleUploadedFile("x.png", b"GIF89a not allowed", content_type="image/png"),
        },
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "is not a photo" in body
    assert "Night rate was never applied." in body and 'value="2026-01-31"' in body
    assert not Dispute.objects.exists()


def test_landlord_offers_and_tenant_accepts_through_the_pages(personas):
    world = personas.a
    tenancy = world.prepaid_tenancy
    d = open_on_invoice(tenancy, amount=1000)
    owner = _client(world.staff)
    unit_page = owner.get(reverse("landlord:unit", args=[world.prepaid.pk])).content.decode()
    assert reverse("disputes:landlord_list") in unit_page
    listing = owner.get(reverse("disputes:landlord_list"), {"unit": world.prepaid.pk})
    assert f"#{d.pk}" in listing.content.decode()
    page = owner.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "Send response" in page
    bad = owner.post(
        reverse("disputes:respond", args=[d.pk]),
        {"response": "partial", "adjustment": "20", "note": "too much"},
    )
    assert bad.status_code == 400 and "more than the disputed amount" in bad.content.decode()
    ok = owner.post(
        reverse("disputes:respond", args=[d.pk]),
        {"response": "partial", "adjustment": "4", "note": "Half of the estimate was wrong."},
    )
    assert ok.status_code == 302
    tenant = _client(tenancy.tenant)
    page = tenant.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "Accept the offer of £4.00" in page and "Half of the estimate was wrong." in page
    before = tenant_account(tenancy=tenancy).balance_minor
    assert tenant.post(reverse("disputes:accept", args=[d.pk])).status_code == 302
    assert tenant_account(tenancy=tenancy).balance_minor == before + 400
    page = tenant.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "£4.00 credited" in page


def test_staff_member_can_only_contest(personas):
    from tests.factories import make_staff_member

    d = open_on_invoice(personas.a.prepaid_tenancy)
    staff = _client(make_staff_member(personas.a))
    page = staff.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "Only an owner can offer an adjustment" in page
    resp = staff.post(
        reverse("disputes:respond", args=[d.pk]),
        {"response": "accept", "adjustment": "10", "note": ""},
    )
    assert resp.status_code == 400
    resp = staff.post(
        reverse("disputes:respond", args=[d.pk]), {"response": "contest", "note": "Meter is fine."}
    )
    assert resp.status_code == 302


def test_desk_queue_orders_by_time_left_and_filters(personas):
    a, b = personas.a, personas.b
    later = open_on_invoice(a.prepaid_tenancy)
    sooner = open_on_invoice(b.prepaid_tenancy)
    Dispute.objects.filter(pk=sooner.pk).update(due_at=timezone.now() + timedelta(hours=1))
    payment = Payment.objects.create(
        landlord=a.landlord,
        tenancy=a.prepaid_tenancy,
        amount_minor=500,
        currency="GBP",
        provider="dev",
        status=Payment.Status.SUCCEEDED,
    )
    chargeback = Chargeback.objects.create(
        landlord=a.landlord,
        payment=payment,
        provider_ref="dp_1",
        amount_minor=500,
        currency="GBP",
        status="needs_response",
        evidence_due_by=timezone.now() + timedelta(hours=3),
    )
    admin = _client(personas.admin)
    body = admin.get(reverse("disputes:desk")).content.decode()
    sooner_at = body.index(f"Dispute #{sooner.pk}")
    chargeback_at = body.index(f"Chargeback #{chargeback.pk}")
    later_at = body.index(f"Dispute #{later.pk}")
    assert sooner_at < chargeback_at < later_at
    only_a = admin.get(reverse("disputes:desk"), {"landlord": a.landlord.pk}).content.decode()
    assert f"Dispute #{later.pk}" in only_a and f"Dispute #{sooner.pk}" not in only_a
    services.dispute_assign(dispute=later, actor=personas.admin, assignee=personas.admin)
    mine = admin.get(reverse("disputes:desk"), {"mine": "1"}).content.decode()
    assert f"Dispute #{later.pk}" in mine and f"Dispute #{sooner.pk}" not in mine
    assert "Chargeback #" not in mine
    cbs = admin.get(reverse("disputes:desk"), {"status": "chargebacks"}).content.decode()
    assert f"Chargeback #{chargeback.pk}" in cbs and "Dispute #" not in cbs
    page = admin.get(reverse("disputes:desk_chargeback", args=[chargeback.pk])).content.decode()
    assert "dp_1" in page and "Payment £5.00" in page


def _evidence(world):
    """Readings (one flagged), priced half hours, postings, a cut and its relay command."""
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=3)
    readings_record(
        device_id=world.prepaid_device.device.pk,
        readings=[
            ReadingInput(seq=1, taken_at=base, register_wh=1000),
            ReadingInput(seq=2, taken_at=base + timedelta(minutes=30), register_wh=1400),
            ReadingInput(seq=3, taken_at=base + timedelta(minutes=60), register_wh=900),
        ],
    )
    charge(world.prepaid_tenancy, 300, "evidence-usage")
    supply_evaluate(unit=world.prepaid, reason="usage")


def test_desk_case_shows_the_evidence_timeline(personas):
    world = personas.a
    _evidence(world)
    today = timezone.localdate()
    d = services.dispute_open(
        tenancy=world.prepaid_tenancy,
        actor=world.prepaid_tenant,
        item=services.DisputeItem(
            subject="period", period_start=today - timedelta(days=1), period_end=today
        ),
        category="reading",
        message="The register went backwards.",
    )
    assert Reading.objects.exclude(quality="actual").exists()
    body = _client(personas.admin).get(reverse("disputes:desk_case", args=[d.pk])).content.decode()
    for expected in (
        "tl-reading",
        "tl-interval",
        "tl-posting",
        "tl-relay",
        "tl-notice",
        "tl-message",
        "Flagged",
        "The register went backwards.",
        "Resolve",
    ):
        assert expected in body, expected
    timeline = selectors.dispute_timeline(dispute=d)
    assert [i.at for i in timeline.items] == sorted(i.at for i in timeline.items)


def test_timeline_queries_do_not_grow_with_the_evidence(personas, django_assert_max_num_queries):
    world = personas.a
    _evidence(world)
    d = open_on_invoice(world.prepaid_tenancy)
    Dispute.objects.filter(pk=d.pk).update(invoice=None, subject="period")
    d = Dispute.objects.select_related("unit__property").get(pk=d.pk)
    d.period_start = timezone.localdate() - timedelta(days=1)
    d.period_end = timezone.localdate()
    with django_assert_max_num_queries(11):
        timeline = selectors.dispute_timeline(dispute=d)
    assert len(timeline.items) > 8


def test_four_eyes_on_the_desk(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DISPUTE_FOUR_EYES_ABOVE_MINOR": 500}
    d = open_on_invoice(personas.a.prepaid_tenancy, amount=1000)
    first = _client(personas.admin)
    assert (
        first.post(reverse("disputes:desk_assign", args=[d.pk]), {"assignee": "me"}).status_code
        == 302
    )
    resp = first.post(
        reverse("disputes:desk_resolve", args=[d.pk]), {"adjustment": "9", "note": "Confirmed."}
    )
    assert resp.status_code == 302
    page = first.get(reverse("disputes:desk_case", args=[d.pk])).content.decode()
    assert "a second admin must approve it" in page and "Approve £9.00" not in page
    refused = first.post(reverse("disputes:desk_approve", args=[d.pk]))
    assert refused.status_code == 400 and "second admin" in refused.content.decode()
    second_admin = get_user_model().objects.create_user("admin2", password="pw", is_staff=True)
    second = _client(second_admin)
    assert (
        "Approve £9.00" in second.get(reverse("disputes:desk_case", args=[d.pk])).content.decode()
    )
    assert second.post(reverse("disputes:desk_approve", args=[d.pk])).status_code == 302
    d.refresh_from_db()
    assert d.status == Dispute.Status.RESOLVED and d.adjustment_minor == 900
    tenant_view = _client(personas.a.prepaid_tenant).get(reverse("disputes:detail", args=[d.pk]))
    assert "£9.00 credited" in tenant_view.content.decode()


def test_desk_reject_and_escalate_pages(personas):
    tenancy = personas.a.prepaid_tenancy
    d = open_on_invoice(tenancy)
    tenant = _client(tenancy.tenant)
    early = tenant.post(reverse("disputes:escalate", args=[d.pk]), {"note": "slow"})
    assert early.status_code == 400 and "still has time" in early.content.decode()
    admin = _client(personas.admin)
    resp = admin.post(reverse("disputes:desk_reject", args=[d.pk]), {"note": "Readings agree."})
    assert resp.status_code == 302
    page = tenant.get(reverse("disputes:detail", args=[d.pk])).content.decode()
    assert "Rejected" in page and "Readings agree." in page and "Withdraw" not in page
