"""The set-up pages through the HTTP client: each renders, keeps what was typed when
refused, and creates through its service when valid."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.demo import DEMO_PASSWORD, demo_seed
from landlord.models import AuditEvent, Landlord, Membership, Property, Unit
from meters.models import Interval, Meter
from payments.models import Tariff, TariffVersion
from payments.rating import SCALE
from tests.factories import make_staff_member

pytestmark = pytest.mark.django_db

PROPERTY = {
    "name": "Canal Court",
    "address": "2 Canal St",
    "timezone": "Europe/London",
    "currency": "GBP",
    "cutoff_days": ["1", "2", "3"],
    "cutoff_start": "10:00",
    "cutoff_end": "14:00",
    "cutoff_holidays": "2026-12-25\n2026-12-28",
    "cutoff_notice_minutes": "1440",
    "landlord_may_disconnect": "on",
}


def _owner(personas) -> Client:
    client = Client()
    client.force_login(personas.a.staff)
    return client


def _future() -> str:
    return (timezone.localdate() + timedelta(days=3)).isoformat()


def test_every_page_renders_for_an_owner(personas):
    client = _owner(personas)
    a = personas.a
    for url in [
        reverse("landlord:setup"),
        reverse("landlord:property_new"),
        reverse("landlord:property_edit", args=[a.prop.pk]),
        reverse("landlord:unit_new"),
        reverse("landlord:unit_import"),
        reverse("landlord:unit_edit", args=[a.prepaid.pk]),
        reverse("landlord:tariff_new"),
        reverse("landlord:tariff", args=[a.tariff.pk]),
    ]:
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert b'name="viewport"' in resp.content


def test_staff_are_refused_and_other_landlords_objects_are_missing(personas):
    staff = Client()
    member: Any = make_staff_member(personas.a)
    staff.force_login(member)
    assert staff.get(reverse("landlord:setup")).status_code == 403
    assert staff.post(reverse("landlord:property_new"), PROPERTY).status_code == 403
    other = Client()
    other.force_login(personas.b.staff)
    a = personas.a
    assert other.get(reverse("landlord:property_edit", args=[a.prop.pk])).status_code == 404
    assert other.post(reverse("landlord:unit_archive", args=[a.postpaid.pk])).status_code == 404
    assert other.get(reverse("landlord:tariff", args=[a.tariff.pk])).status_code == 404
    assert Property.objects.filter(name="Canal Court").count() == 0


def test_setup_home_lists_the_landlords_own(personas):
    body = _owner(personas).get(reverse("landlord:setup")).content.decode()
    assert "House a" in body and "Prepaid flat" in body and "Flat" in body
    assert "House b" not in body


# --- properties -----------------------------------------------------------------


def test_property_new_refuses_a_bad_time_zone_and_keeps_the_input(personas):
    resp = _owner(personas).post(
        reverse("landlord:property_new"), {**PROPERTY, "timezone": "Europe/Londn"}
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "is not a time zone" in body
    assert 'value="Canal Court"' in body and "2 Canal St" in body and "2026-12-28" in body
    assert not Property.objects.filter(name="Canal Court").exists()


def test_property_new_creates(personas):
    resp = _owner(personas).post(reverse("landlord:property_new"), PROPERTY)
    assert resp.status_code == 302
    prop = Property.objects.get(name="Canal Court")
    assert prop.landlord == personas.a.landlord
    assert (prop.cutoff_days, prop.cutoff_notice_minutes) == ("123", 1440)
    assert prop.cutoff_holidays == ["2026-12-25", "2026-12-28"]
    assert resp["Location"] == reverse("landlord:unit_new") + f"?property={prop.pk}"


def test_property_edit_shows_defaults_and_saves_protections(personas):
    client = _owner(personas)
    url = reverse("landlord:property_edit", args=[personas.a.prop.pk])
    body = client.get(url).content.decode()
    assert "Default Monday to Friday" in body and "Default 1440" in body
    resp = client.post(url, {**PROPERTY, "name": "House a", "cutoff_notice_minutes": "-5"})
    assert resp.status_code == 400 and "greater than or equal to 0" in resp.content.decode()
    resp = client.post(url, {**PROPERTY, "name": "House a", "landlord_may_disconnect": ""})
    assert resp.status_code == 302
    personas.a.prop.refresh_from_db()
    assert personas.a.prop.landlord_may_disconnect is False
    assert AuditEvent.objects.filter(action="property.update", actor=personas.a.staff).exists()


# --- units --------------------------------------------------------------------------


def _unit(personas, **changes):
    return {
        "property": str(personas.a.prop.pk),
        "name": "Flat 7",
        "billing_mode": "prepaid",
        "tariff": str(personas.a.tariff.pk),
        "emergency_credit": "3.00",
        "low_credit_threshold": "2.50",
        **changes,
    }


def test_unit_new_refuses_a_duplicate_name_and_keeps_the_input(personas):
    resp = _owner(personas).post(reverse("landlord:unit_new"), _unit(personas, name="Prepaid flat"))
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "already has a unit named" in body and 'value="3.00"' in body


def test_unit_new_refuses_bad_money(personas):
    resp = _owner(personas).post(
        reverse("landlord:unit_new"), _unit(personas, emergency_credit="3.005")
    )
    assert resp.status_code == 400 and "two decimal places" in resp.content.decode()


def test_unit_new_creates_with_money_in_minor_units(personas):
    resp = _owner(personas).post(reverse("landlord:unit_new"), _unit(personas))
    assert resp.status_code == 302
    unit = Unit.objects.get(name="Flat 7")
    assert (unit.emergency_credit_minor, unit.low_credit_threshold_minor) == (300, 250)
    assert unit.tariff == personas.a.tariff


def test_unit_new_offers_only_the_landlords_own_property_and_tariff(personas):
    resp = _owner(personas).post(
        reverse("landlord:unit_new"),
        _unit(personas, property=str(personas.b.prop.pk), tariff=str(personas.b.tariff.pk)),
    )
    assert resp.status_code == 400
    assert not Unit.objects.filter(name="Flat 7").exists()


def test_unit_new_without_a_property_sends_to_the_property_form():
    User = get_user_model()
    user = User.objects.create_user("fresh", password="pw")
    Membership.objects.create(
        landlord=Landlord.objects.create(name="Fresh"), user=user, role=Membership.Role.OWNER
    )
    client = Client()
    client.force_login(user)
    resp = client.get(reverse("landlord:unit_new"))
    assert resp.status_code == 302 and resp["Location"] == reverse("landlord:property_new")


def test_unit_edit_of_an_occupied_unit_keeps_its_mode(personas):
    client = _owner(personas)
    url = reverse("landlord:unit_edit", args=[personas.a.prepaid.pk])
    body = client.get(url).content.decode()
    assert "only while it is vacant" in body and "a separate step" in body
    resp = client.post(url, _unit(personas, name="Prepaid flat", billing_mode="postpaid"))
    assert resp.status_code == 400 and "only while it is vacant" in resp.content.decode()
    resp = client.post(url, _unit(personas, name="Prepaid flat", low_credit_threshold="4"))
    assert resp.status_code == 302
    personas.a.prepaid.refresh_from_db()
    assert personas.a.prepaid.low_credit_threshold_minor == 400


def test_archive_refused_for_an_occupied_unit_and_done_for_a_vacant_one(personas):
    client = _owner(personas)
    resp = client.post(reverse("landlord:unit_archive", args=[personas.a.prepaid.pk]))
    assert resp.status_code == 400 and "end the tenancy" in resp.content.decode()
    client.post(reverse("landlord:unit_new"), _unit(personas, name="Spare"))
    spare = Unit.objects.get(name="Spare")
    assert client.post(reverse("landlord:unit_archive", args=[spare.pk])).status_code == 302
    assert f'id="unit-{spare.pk}"' not in client.get(reverse("landlord:units")).content.decode()
    body = client.get(reverse("landlord:setup")).content.decode()
    assert "Spare was archived" in body and f'id="setup-unit-{spare.pk}"' not in body


# --- units from a CSV file ---------------------------------------------------------------

CSV = "name,billing_mode,tariff\nFlat 30,prepaid,Flat\nFlat 31,postpaid,\n"


def test_csv_upload_shows_a_preview_then_creates_on_confirm(personas):
    client = _owner(personas)
    url = reverse("landlord:unit_import")
    upload = SimpleUploadedFile("units.csv", CSV.encode(), content_type="text/csv")
    resp = client.post(url, {"property": personas.a.prop.pk, "csv_file": upload, "preview": "1"})
    assert resp.status_code == 200
    body = resp.content.decode()
    assert "Flat 30" in body and "Add these 2 units" in body
    assert not Unit.objects.filter(name__in=["Flat 30", "Flat 31"]).exists()
    # the confirm button sends back the rows shown (kept in the text box)
    assert "Flat 31,postpaid," in body
    resp = client.post(url, {"property": personas.a.prop.pk, "csv_text": CSV, "confirm": "1"})
    assert resp.status_code == 302
    assert Unit.objects.filter(name__in=["Flat 30", "Flat 31"]).count() == 2


def test_csv_preview_shows_row_errors_and_offers_no_confirm(personas):
    client = _owner(personas)
    text = "name,billing_mode\nFlat 30,prepaid\nPrepaid flat,prepaid\nFlat 32,monthly\n"
    resp = client.post(
        reverse("landlord:unit_import"),
        {"property": personas.a.prop.pk, "csv_text": text, "preview": "1"},
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "already has a unit named &#x27;Prepaid flat&#x27;" in body
    assert "Choose prepaid or postpaid" in body
    assert "Add these" not in body
    # a confirm sent anyway saves nothing
    resp = client.post(
        reverse("landlord:unit_import"),
        {"property": personas.a.prop.pk, "csv_text": text, "confirm": "1"},
    )
    assert resp.status_code == 400 and "Nothing was saved" in resp.content.decode()
    assert not Unit.objects.filter(name="Flat 30").exists()


def test_csv_without_rows_is_refused(personas):
    resp = _owner(personas).post(
        reverse("landlord:unit_import"), {"property": personas.a.prop.pk, "csv_text": " "}
    )
    assert resp.status_code == 400 and "Choose a CSV file" in resp.content.decode()


# --- tariffs ------------------------------------------------------------------------------


def _tariff(**changes):
    return {
        "name": "Evening saver",
        "currency": "GBP",
        "kind": "flat",
        "valid_from": timezone.localdate().isoformat(),
        "price": "28.5",
        "band": "night",
        "band_days": "all",
        "standing_charge": "45",
        "tax_percent": "5",
        "tax_included": "included",
        **changes,
    }


def test_tariff_new_shows_the_services_message_and_keeps_the_input(personas):
    resp = _owner(personas).post(
        reverse("landlord:tariff_new"),
        _tariff(kind="tou", price="", band_price="12", band_start_hour="0", band_end_hour="7"),
    )
    assert resp.status_code == 400
    body = resp.content.decode()
    assert "has no price for any time" in body
    assert 'value="Evening saver"' in body and 'value="12"' in body
    assert not Tariff.objects.filter(name="Evening saver").exists()


def test_tariff_new_labels_prices_per_kwh_in_pence(personas):
    body = _owner(personas).get(reverse("landlord:tariff_new")).content.decode()
    assert "Energy price (p/kWh)" in body and "Daily standing charge (p/day)" in body


def test_tariff_new_creates_a_tiered_tariff(personas):
    resp = _owner(personas).post(
        reverse("landlord:tariff_new"),
        _tariff(kind="tiered", price="20", tier_from_kwh="150", tier_price="31.5"),
    )
    assert resp.status_code == 302
    version = TariffVersion.objects.get(tariff__name="Evening saver")
    assert [(r.tier_from_wh, str(r.price_per_kwh_minor)) for r in version.rates.all()] == [
        (0, "20.0000"),
        (150_000, "31.5000"),
    ]
    assert version.tax_inclusive and version.standing_charge_per_day_minor == 45


def test_scheduling_refuses_a_past_day(personas):
    url = reverse("landlord:tariff", args=[personas.a.tariff.pk])
    resp = _owner(personas).post(
        url, {**_tariff(valid_from=timezone.localdate().isoformat()), "confirm": "1"}
    )
    assert resp.status_code == 400 and "tomorrow or later" in resp.content.decode()
    assert TariffVersion.objects.filter(tariff=personas.a.tariff).count() == 1


def test_scheduling_previews_the_impact_then_saves_on_confirm(personas):
    client = _owner(personas)
    a = personas.a
    meter = Meter.objects.get(unit=a.prepaid)
    start = (timezone.now() - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    start = start.astimezone(UTC)
    Interval.objects.create(
        landlord=a.landlord,
        meter=meter,
        start=start,
        end=start + timedelta(minutes=30),
        energy_wh=2000,
        net_sub=60 * SCALE,
        gross_sub=60 * SCALE,
        tariff_version_id=a.tariff.versions.get().pk,
    )
    Meter.objects.filter(pk=meter.pk).update(pending_sub=60 * SCALE)  # priced, not yet posted
    url = reverse("landlord:tariff", args=[a.tariff.pk])
    data = _tariff(valid_from=_future(), price="45", tax_percent="0")
    resp = client.post(url, {**data, "preview": "1"})
    assert resp.status_code == 200
    body = resp.content.decode()
    # 2 kWh cost 60p at 30p; at 45p they would cost 90p
    assert 'data-testid="impact-old">£0.60' in body and 'data-testid="impact-new">£0.90' in body
    assert "Schedule these prices" in body
    assert TariffVersion.objects.filter(tariff=a.tariff).count() == 1
    resp = client.post(url, {**data, "confirm": "1"})
    assert resp.status_code == 302
    assert TariffVersion.objects.filter(tariff=a.tariff).count() == 2
    assert AuditEvent.objects.filter(action="tariff.version_schedule", actor=a.staff).exists()


# --- the onboarding checklist ------------------------------------------------------------------


def test_a_new_landlord_sees_the_checklist_until_done(personas):
    User = get_user_model()
    user = User.objects.create_user("fresh", password="pw")
    Membership.objects.create(
        landlord=Landlord.objects.create(name="Fresh"), user=user, role=Membership.Role.OWNER
    )
    client = Client()
    client.force_login(user)
    body = client.get(reverse("landlord:units")).content.decode()
    assert 'data-testid="onboarding"' in body
    assert "No property yet" in body and reverse("landlord:property_new") in body
    client.post(reverse("landlord:property_new"), PROPERTY)
    body = client.get(reverse("landlord:units")).content.decode()
    assert "No property yet" not in body and "No units yet: add them" in body


def test_a_landlord_set_up_in_full_sees_no_checklist(personas):
    body = _owner(personas).get(reverse("landlord:units")).content.decode()
    assert 'data-testid="onboarding"' not in body


def test_the_checklist_names_units_without_a_tariff_or_meter(personas):
    Unit.objects.filter(pk=personas.a.postpaid.pk).update(tariff=None)
    _owner(personas).post(reverse("landlord:unit_new"), _unit(personas, name="Flat 8"))
    body = _owner(personas).get(reverse("landlord:units")).content.decode()
    assert "2 units without a tariff" not in body and "1 unit without a tariff" in body
    assert "1 unit without a meter: Flat 8" in body


def test_the_demo_has_an_empty_landlord_to_onboard(db):
    logins = demo_seed()
    assert ("newlandlord", "a landlord with nothing set up yet") in [
        (login.username, login.role) for login in logins
    ]
    demo_seed()  # once only
    landlord = Landlord.objects.get(name="New Lettings")
    assert not landlord.properties.exists() and not landlord.units.exists()
    client = Client()
    assert client.login(username="newlandlord", password=DEMO_PASSWORD)
    body = client.get(reverse("landlord:units")).content.decode()
    assert 'data-testid="onboarding"' in body and "No property yet" in body


def test_csv_import_with_htmx_swaps_only_the_form_and_preview(personas):
    client = _owner(personas)
    url = reverse("landlord:unit_import")
    page = client.get(url).content.decode()
    assert 'hx-post="' + url + '"' in page and 'id="unit-import"' in page
    htmx = {"HX-Request": "true"}
    # the preview: the part of the page that is swapped, not the whole page
    upload = SimpleUploadedFile("units.csv", CSV.encode(), content_type="text/csv")
    data = {"property": personas.a.prop.pk, "csv_file": upload, "preview": "1"}
    resp = client.post(url, data, headers=htmx)
    body = resp.content.decode()
    assert resp.status_code == 200 and body.lstrip().startswith('<div id="unit-import"')
    assert "<html" not in body and "Add these 2 units" in body and "Flat 31,postpaid," in body
    # row errors: a 422, which static/app.js still swaps in
    bad = "name,billing_mode\nFlat 32,monthly\n"
    resp = client.post(
        url, {"property": personas.a.prop.pk, "csv_text": bad, "preview": "1"}, headers=htmx
    )
    assert resp.status_code == 422 and "Choose prepaid or postpaid" in resp.content.decode()
    assert "<html" not in resp.content.decode() and "Flat 32,monthly" in resp.content.decode()
    # the confirm: the browser is sent to the set-up page, the units exist
    resp = client.post(
        url, {"property": personas.a.prop.pk, "csv_text": CSV, "confirm": "1"}, headers=htmx
    )
    assert resp.status_code == 200 and resp["HX-Redirect"] == reverse("landlord:setup")
    assert Unit.objects.filter(name__in=["Flat 30", "Flat 31"]).count() == 2
