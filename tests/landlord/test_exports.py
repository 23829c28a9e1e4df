"""CSV exports of units, payments, bills and ledger postings for a range of days:
their content, that another landlord's rows never appear, bad input, the audit row."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.models import AuditEvent, Unit
from meters.models import Interval, Meter
from payments.models import Invoice
from payments.rating import SCALE
from tests.payments.test_billing import _pay

pytestmark = pytest.mark.django_db

TODAY = timezone.localdate()
RANGE = {"from": (TODAY - timedelta(days=7)).isoformat(), "to": TODAY.isoformat()}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _export(client: Client, kind: str, **params: str) -> list[dict[str, str]]:
    resp = client.get(reverse("landlord:exports"), {"kind": kind, **RANGE, **params})
    assert resp.status_code == 200, resp.content[:500]
    assert resp["Content-Type"].startswith("text/csv")
    assert resp.streaming
    text = b"".join(resp.streaming_content).decode()  # type: ignore[attr-defined]
    return list(csv.DictReader(io.StringIO(text)))


def _bill(tenancy, total: int) -> Invoice:
    return Invoice.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        period_start=date(2026, 1, 1),
        period_end=date(2026, 2, 1),
        currency="GBP",
        total_minor=total,
        due_date=TODAY,
    )


@pytest.fixture
def both(personas):
    """Both landlords with a bill, a payment on it and an hour of priced energy."""
    for world in (personas.a, personas.b):
        _bill(world.postpaid_tenancy, 2500)
        _pay(world.postpaid_tenancy, 1000)
        meter = Meter.objects.get(device=world.postpaid_device.device)
        start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        Interval.objects.create(
            landlord=world.landlord,
            meter=meter,
            start=start,
            end=start + timedelta(minutes=30),
            energy_wh=1200,
            gross_sub=36 * SCALE,
        )
        Meter.objects.filter(pk=meter.pk).update(pending_sub=36 * SCALE)
    return personas


def test_units(both):
    rows = _export(_client(both.a.staff), "units")
    assert [r["unit"] for r in rows] == ["Postpaid flat", "Prepaid flat"]
    postpaid = rows[0]
    assert postpaid["tenant"] == "tenant_a2" and postpaid["billing_mode"] == "postpaid"
    assert postpaid["energy_wh"] == "1200" and postpaid["charged_minor"] == "36"
    assert postpaid["charged"] == "0.36" and postpaid["balance_minor"] == "1000"
    assert all(r["property"] == "House a" for r in rows)


def test_payments(both):
    [row] = _export(_client(both.a.staff), "payments")
    assert row["amount_minor"] == "1000" and row["amount"] == "10.00"
    assert row["status"] == "succeeded" and row["unit"] == "Postpaid flat"
    assert row["receipt"].startswith("R-")


def test_bills(both):
    [row] = _export(_client(both.a.staff), "bills")
    assert row["total_minor"] == "2500" and row["paid_minor"] == "1000"
    assert row["outstanding_minor"] == "1500" and row["outstanding"] == "15.00"
    assert row["period_first_day"] == "2026-01-01" and row["period_last_day"] == "2026-01-31"


def test_postings(both):
    rows = _export(_client(both.a.staff), "postings")
    assert [r["kind"] for r in rows] == ["payment"]
    assert rows[0]["amount_minor"] == "1000"
    assert rows[0]["credit_account"].startswith("tenant balance: Postpaid flat")


@pytest.mark.parametrize("kind", ["units", "payments", "bills", "postings"])
def test_another_landlords_rows_never_appear(both, kind):
    text = "".join(",".join(row.values()) for row in _export(_client(both.a.staff), kind))
    assert "House b" not in text and "tenant_b" not in text
    b_rows = _export(_client(both.b.staff), kind)
    assert b_rows and "House a" not in "".join(",".join(r.values()) for r in b_rows)


def test_a_range_leaves_out_what_is_outside_it(both):
    client = _client(both.a.staff)
    old = {"from": "2020-01-01", "to": "2020-01-31"}
    for kind in ("payments", "bills", "postings"):
        assert _export(client, kind, **old) == []
    [postpaid, _prepaid] = _export(client, "units", **old)
    assert postpaid["energy_wh"] == "0" and postpaid["charged_minor"] == ""


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"kind": "units"}, "This field is required."),
        ({"kind": "units", "from": "2026-02-01", "to": "2026-01-01"}, "before its start"),
        ({"kind": "units", "from": "31/01/2026", "to": "2026-02-01"}, "a date like"),
        ({"kind": "units", "from": "1999-12-31", "to": "2026-02-01"}, "Pick a day between"),
        ({"kind": "everything", **RANGE}, "Select a valid choice"),
        # a year and a day: longer than one export covers
        ({"kind": "postings", "from": "2025-01-01", "to": "2026-01-02"}, "at most 366 days"),
    ],
)
def test_bad_input_is_refused_with_the_form_kept(personas, params, error):
    resp = _client(personas.a.staff).get(reverse("landlord:exports"), params)
    assert resp.status_code == 400
    body = resp.content.decode()
    assert error in body and "Nothing was exported" in body
    if "from" in params and "/" not in params["from"]:
        assert f'value="{params["from"]}"' in body  # nothing typed is lost
    assert not AuditEvent.objects.filter(action="export").exists()


def test_a_whole_leap_year_is_one_export(personas):
    rows = _export(_client(personas.a.staff), "bills", **{"from": "2024-01-01", "to": "2024-12-31"})
    assert rows == []  # 366 days: accepted (the world's bills are from 2026)


def test_an_export_is_audit_logged_with_its_actor(personas):
    client = _client(personas.a.staff)
    _export(client, "bills")
    event = AuditEvent.objects.get(action="export")
    assert event.actor_id == personas.a.staff.pk
    assert event.landlord_id == personas.a.landlord.pk
    assert event.subject == "bills CSV" and RANGE["from"] in event.reason


def test_staff_may_export(everyone):
    assert _export(_client(everyone.a_staff), "units")


def test_the_form(personas):
    resp = _client(personas.a.staff).get(reverse("landlord:exports"))
    assert resp.status_code == 200 and "Download CSV" in resp.content.decode()


def test_a_cell_a_spreadsheet_would_run_is_defused(personas):
    Unit.objects.filter(pk=personas.a.prepaid.pk).update(name="=HYPERLINK(1)")
    rows = _export(_client(personas.a.staff), "units")
    assert "'=HYPERLINK(1)" in [r["unit"] for r in rows]
