"""The device, tenant and billing-mode pages and the invitation page, through the
test client: what each shows, what a form keeps on error, who may do what."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord import people
from landlord.models import Invitation, Tenancy, Unit
from meters.devices import device_authenticate
from meters.models import Device, Meter, MeterEvent
from meters.readings import ReadingInput, readings_record
from payments.ledger import ledger_verify
from payments.models import Invoice
from tests.factories import make_staff_member
from tests.landlord.test_people import _credit


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _vacant(world) -> Unit:
    return Unit.objects.create(
        landlord=world.landlord, property=world.prop, name="Flat 9", tariff=world.tariff
    )


# --- meter and device -------------------------------------------------------------------


def test_register_a_native_device_shows_its_secret_once(personas):
    unit = _vacant(personas.a)
    client = _client(personas.a.staff)
    page = client.get(reverse("landlord:people:devices", args=[unit.pk]))
    assert page.status_code == 200
    assert "no meter registered" in page.text and "Register device" in page.text
    assert 'ws-connect="/ws/live/landlord/"' in page.text and f'id="unit-{unit.pk}"' in page.text

    resp = client.post(
        reverse("landlord:people:device_register", args=[unit.pk]),
        {"protocol": "native", "ident": "acme-0042", "serial": "SN-1"},
    )

    assert resp.status_code == 200
    assert "no-store" in resp["Cache-Control"]
    secret = resp.context["secret"]
    assert secret in resp.text and "acme-0042" in resp.text
    assert "ws://testserver/ws/device/v1" in resp.text
    assert 'data-copy="#device-secret"' in resp.text
    device = Device.objects.get(ident="acme-0042")
    assert device_authenticate(ident="acme-0042", secret=secret) == device
    assert Meter.objects.get(device=device).serial == "SN-1"
    # the secret is never shown again; the page waits for the first connection
    after = client.get(reverse("landlord:people:devices", args=[unit.pk]))
    assert secret not in after.text
    assert "waiting for first connection" in after.text


def test_register_a_shelly_shows_its_outbound_websocket_address(personas):
    unit = _vacant(personas.a)
    resp = _client(personas.a.staff).post(
        reverse("landlord:people:device_register", args=[unit.pk]),
        {"protocol": "shelly", "ident": "shellyplus1pm-a8032ab12345"},
    )
    assert resp.status_code == 200
    secret = resp.context["secret"]
    assert f"ws://testserver/ws/shelly/shellyplus1pm-a8032ab12345/{secret}" in resp.text
    assert "Outbound WebSocket" in resp.text


def test_register_refusals_keep_the_form(personas):
    client = _client(personas.a.staff)
    taken = client.post(
        reverse("landlord:people:device_register", args=[_vacant(personas.a).pk]),
        {"protocol": "native", "ident": personas.b.prepaid_device.device.ident},
    )
    assert taken.status_code == 400
    assert "already registered" in taken.text
    assert f'value="{personas.b.prepaid_device.device.ident}"' in taken.text
    has_meter = client.post(
        reverse("landlord:people:device_register", args=[personas.a.prepaid.pk]),
        {"protocol": "native", "ident": "new-one"},
    )
    assert has_meter.status_code == 400 and "already has meter" in has_meter.text
    assert not Device.objects.filter(ident="new-one").exists()


def test_another_landlords_unit_and_device_are_not_found(personas):
    client = _client(personas.b.staff)
    unit = personas.a.prepaid
    device = personas.a.prepaid_device.device
    assert client.get(reverse("landlord:people:devices", args=[unit.pk])).status_code == 404
    rotate = reverse("landlord:people:device_rotate", args=[unit.pk, device.pk])
    assert client.post(rotate).status_code == 404
    # nor through one's own unit
    own = reverse("landlord:people:device_rotate", args=[personas.b.prepaid.pk, device.pk])
    assert _client(personas.b.staff).post(own).status_code == 404
    assert device_authenticate(ident=device.ident, secret=personas.a.prepaid_device.secret)


def test_rotate_shows_a_new_secret_and_the_old_one_stops_working(personas):
    creds = personas.a.prepaid_device
    resp = _client(personas.a.staff).post(
        reverse("landlord:people:device_rotate", args=[personas.a.prepaid.pk, creds.device.pk])
    )
    assert resp.status_code == 200 and "old secret no longer works" in resp.text
    assert device_authenticate(ident=creds.device.ident, secret=creds.secret) is None
    assert device_authenticate(ident=creds.device.ident, secret=resp.context["secret"])


def test_replace_a_meter_from_the_page(personas):
    device = personas.a.prepaid_device.device
    now = timezone.now()
    readings_record(
        device_id=device.pk,
        readings=[
            ReadingInput(seq=1, taken_at=now - timedelta(minutes=20), register_wh=1000),
            ReadingInput(seq=2, taken_at=now - timedelta(minutes=5), register_wh=1500),
        ],
    )
    meter = Meter.objects.get(device=device)
    url = reverse("landlord:people:meter_event", args=[personas.a.prepaid.pk, meter.pk])
    client = _client(personas.a.staff)
    assert client.get(url).status_code == 200
    tz = zoneinfo.ZoneInfo(personas.a.prop.timezone)
    at = timezone.localtime(now, tz).strftime("%Y-%m-%dT%H:%M")
    bad = client.post(url, {"kind": "replacement", "at": at, "old_last": "-1", "new_first": ""})
    assert bad.status_code == 400 and "errorlist" in bad.text

    resp = client.post(
        url,
        {
            "kind": "replacement",
            "at": at,
            "old_last": "1.600",
            "new_first": "0.012",
            "new_serial": "NEW-1",
            "reason": "meter failed",
        },
    )

    assert resp.status_code == 302
    event = MeterEvent.objects.get()
    assert (event.old_last_wh, event.new_first_wh, event.kind) == (1600, 12, "replacement")
    assert event.created_by == personas.a.staff
    assert Meter.objects.installed().get(device=device).serial == "NEW-1"
    assert ledger_verify() == []


# --- tenants ---------------------------------------------------------------------------


def test_invite_accept_and_sign_in(personas, django_capture_on_commit_callbacks):
    unit = _vacant(personas.a)
    client = _client(personas.a.staff)
    assert client.get(reverse("landlord:people:tenants", args=[unit.pk])).status_code == 200
    move_in = timezone.localdate()
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(
            reverse("landlord:people:invite", args=[unit.pk]),
            {"email": "sam@example.com", "move_in": move_in.isoformat()},
        )
    assert resp.status_code == 302
    assert "sam@example.com" in client.get(resp["Location"]).text  # pending
    link = next(line for line in mail.outbox[0].body.splitlines() if "/invite/" in line)
    path = link.split("testserver", 1)[1]

    tenant = Client()
    form = tenant.get(path)
    assert form.status_code == 200 and "Flat 9" in form.text
    differ = tenant.post(path, {"password1": "a-long-pass-9x", "password2": "other-pass-9x"})
    assert differ.status_code == 400 and "The two passwords differ" in differ.text
    done = tenant.post(path, {"password1": "a-long-pass-9x", "password2": "a-long-pass-9x"})
    assert done.status_code == 302
    tenancy = Tenancy.objects.get(unit=unit)
    assert tenancy.start_date == move_in
    home = tenant.get(reverse("home"), follow=True)
    assert home.status_code == 200 and home.context["tenancy"] == tenancy

    again = Client().get(path)
    assert again.status_code == 400 and "already used" in again.text


def test_expired_or_tampered_link_shows_a_clear_page(personas):
    invitation = Invitation.objects.create(
        landlord=personas.a.landlord,
        unit=_vacant(personas.a),
        email="x@example.com",
        move_in=timezone.localdate(),
    )
    token = people.invitation_token(invitation)
    resp = Client().post(
        reverse("invite", args=[token[:-2] + "zz"]),
        {"password1": "a-long-pass-9x", "password2": "a-long-pass-9x"},
    )
    assert resp.status_code == 400 and "not a valid invitation" in resp.text
    assert "Nothing was created" in resp.text
    assert not Tenancy.objects.filter(unit=invitation.unit).exists()


def test_invite_errors_keep_what_was_typed(personas):
    resp = _client(personas.a.staff).post(
        reverse("landlord:people:invite", args=[personas.a.prepaid.pk]),
        {"email": "sam@example.com", "move_in": timezone.localdate().isoformat()},
    )
    assert resp.status_code == 400
    assert "Record their move-out first" in resp.text and 'value="sam@example.com"' in resp.text


def test_move_in_then_move_out_and_the_final_statement(personas):
    tenancy = personas.a.prepaid_tenancy
    client = _client(personas.a.staff)
    move_in = reverse("landlord:people:move_in", args=[tenancy.pk])
    assert "no reading yet" in client.get(move_in).text
    done = client.post(move_in, {"opening": "52.000"})
    assert done.status_code == 200 and "starting point" in done.text

    move_out = reverse("landlord:people:move_out", args=[tenancy.pk])
    below = client.post(move_out, {"end_date": timezone.localdate().isoformat(), "closing": "51.5"})
    assert below.status_code == 400 and "below the opening reading" in below.text
    assert 'value="51.5"' in below.text
    resp = client.post(move_out, {"end_date": timezone.localdate().isoformat(), "closing": "53"})
    assert resp.status_code == 302
    statement = client.get(resp["Location"])
    assert statement.status_code == 200 and "Settled" in statement.text
    tenancy.refresh_from_db()
    assert tenancy.end_date == timezone.localdate() and tenancy.closing_wh == 53_000
    # the former tenant keeps their history page
    assert _client(tenancy.tenant).get(reverse("tenant:home", args=[tenancy.pk])).status_code == 200


def test_tenant_pages_of_another_landlord_are_not_found(personas):
    client = _client(personas.b.staff)
    tenancy = personas.a.prepaid_tenancy
    for name in ("move_in", "move_out", "statement"):
        assert client.get(reverse(f"landlord:people:{name}", args=[tenancy.pk])).status_code == 404
    assert (
        client.get(reverse("landlord:people:tenants", args=[personas.a.prepaid.pk])).status_code
        == 404
    )


# --- billing mode -----------------------------------------------------------------------


def test_switch_to_prepaid_asks_for_confirmation_first(personas):
    url = reverse("landlord:people:billing_mode", args=[personas.a.postpaid.pk])
    client = _client(personas.a.staff)
    page = client.get(url)
    assert page.status_code == 200 and "debt" in page.text and 'name="confirm"' in page.text
    unconfirmed = client.post(url, {"mode": "prepaid"})
    assert unconfirmed.status_code == 400 and "Confirm the switch" in unconfirmed.text
    assert Unit.objects.get(pk=personas.a.postpaid.pk).billing_mode == "postpaid"
    confirmed = client.post(url, {"mode": "prepaid", "confirm": "on"})
    assert confirmed.status_code == 302
    assert Unit.objects.get(pk=personas.a.postpaid.pk).billing_mode == "prepaid"
    assert Invoice.objects.filter(tenancy=personas.a.postpaid_tenancy).count() == 1
    assert "is now prepaid" in client.get(confirmed["Location"]).text


def test_staff_may_not_switch_billing_mode(personas):
    staff = make_staff_member(personas.a)
    url = reverse("landlord:people:billing_mode", args=[personas.a.prepaid.pk])
    page = _client(staff).get(url)
    assert page.status_code == 200 and "Only an owner" in page.text
    assert _client(staff).post(url, {"mode": "postpaid"}).status_code == 403
    assert Unit.objects.get(pk=personas.a.prepaid.pk).billing_mode == "prepaid"


def test_tenant_page_explains_credit_carried_to_postpaid(personas):
    tenancy = personas.a.prepaid_tenancy
    _credit(tenancy, 800)
    people.unit_billing_mode_switch(
        unit=personas.a.prepaid, mode="postpaid", confirmed=False, actor_id=None
    )
    page = _client(tenancy.tenant).get(reverse("tenant:home", args=[tenancy.pk]))
    assert "In credit" in page.text and 'data-testid="credit-carried"' in page.text


@pytest.mark.parametrize("name", ["devices", "tenants", "billing_mode"])
def test_pages_fit_a_phone(personas, name):
    """Mobile-first: the pages use the shared layout (viewport meta, cards)."""
    page = _client(personas.a.staff).get(
        reverse(f"landlord:people:{name}", args=[personas.a.prepaid.pk])
    )
    assert 'name="viewport"' in page.text and 'class="card' in page.text
