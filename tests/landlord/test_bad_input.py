"""What a landlord's browser may send that the pages must refuse with a message, not a 500."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from landlord.models import AuditEvent


def _landlord(personas) -> Client:
    client = Client()
    client.force_login(personas.a.staff)
    return client


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1999-12-31", "not-a-day"])
def test_an_unusable_day_shows_the_latest_intervals_and_says_why(personas, day):
    url = reverse("landlord:unit", args=[personas.a.prepaid.pk])
    resp = _landlord(personas).get(url, {"day": day})
    assert resp.status_code == 200
    body = resp.content.decode()
    assert 'data-testid="day-error"' in body
    assert "The latest half hours" in body


def test_a_usable_day_is_no_error(personas):
    url = reverse("landlord:unit", args=[personas.a.prepaid.pk])
    resp = _landlord(personas).get(url, {"day": "2026-01-15"})
    assert resp.status_code == 200
    assert 'data-testid="day-error"' not in resp.content.decode()


def test_a_nul_byte_in_an_override_reason_is_a_form_error(personas):
    url = reverse("landlord:override", args=[personas.a.prepaid.pk])
    resp = _landlord(personas).post(url, {"state": "on", "reason": "fault\x00"})
    assert resp.status_code == 400
    assert "Null characters are not allowed" in resp.content.decode()
    personas.a.prepaid.refresh_from_db()
    assert personas.a.prepaid.override_state == ""
    assert not AuditEvent.objects.filter(action__startswith="supply.override").exists()


def test_a_nul_byte_in_a_release_note_is_a_form_error(personas):
    client = _landlord(personas)
    client.post(
        reverse("landlord:override", args=[personas.a.prepaid.pk]),
        {"state": "on", "reason": "fault"},
    )
    url = reverse("landlord:override_release", args=[personas.a.prepaid.pk])
    resp = client.post(url, {"reason": "done\x00"})
    assert resp.status_code == 400
    assert "Null characters are not allowed" in resp.content.decode()
    personas.a.prepaid.refresh_from_db()
    assert personas.a.prepaid.override_state == "on"


def test_a_nul_byte_in_a_held_release_reason_is_a_form_error(personas):
    from datetime import UTC, datetime, timedelta

    from meters.models import Interval
    from meters.readings import ReadingInput, readings_record

    base = datetime(2026, 1, 14, 10, 0, tzinfo=UTC)
    readings_record(
        device_id=personas.a.prepaid_device.device.pk,
        readings=[
            ReadingInput(seq=1, taken_at=base, register_wh=0),
            ReadingInput(seq=2, taken_at=base + timedelta(hours=7), register_wh=3000),
        ],
    )
    gap = Interval.objects.get(kind=Interval.Kind.GAP)
    url = reverse("landlord:held_release", args=[gap.pk])
    resp = _landlord(personas).post(url, {"reason": "offline\x00"}, follow=True)
    assert "Null characters are not allowed" in resp.content.decode()
    gap.refresh_from_db()
    assert gap.quality == Interval.Quality.HELD
