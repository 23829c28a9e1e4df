"""Platform admins: the home sends them to the admin, and the admin shows and takes
money in currency units (``config.admin_money``)."""

from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from config.admin_money import MoneyField, row_currency, to_minor
from landlord.models import Property, Unit
from payments.models import Invoice, InvoiceLine

pytestmark = pytest.mark.django_db


def _admin(personas) -> Client:
    client = Client()
    client.force_login(personas.admin)
    return client


def test_home_sends_a_superuser_to_the_admin(personas):
    resp = _admin(personas).get("/")
    assert resp.status_code == 302 and resp["Location"] == reverse("admin:index")


def test_a_superuser_who_is_also_a_member_goes_to_the_landlord_home(personas):
    staff = personas.a.staff
    staff.is_superuser = staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    assert client.get("/")["Location"] == reverse("landlord:units")


@pytest.mark.parametrize(
    ("text", "minor"),
    [("1.23", 123), ("£1,234.50", 123450), ("0", 0), ("-2.5", -250), (" 7 ", 700)],
)
def test_amounts_in_currency_units(text, minor):
    assert to_minor(text) == minor
    assert MoneyField().clean(text) == minor


@pytest.mark.parametrize("text", ["1.234", "abc", "NaN", "1e400"])
def test_not_an_amount(text):
    with pytest.raises(ValidationError, match=r"amount like 12\.34|two decimal places"):
        MoneyField().clean(text)


def test_lists_show_money(personas):
    client = _admin(personas)
    page = client.get(reverse("admin:landlord_unit_changelist")).content.decode()
    assert "£2.00" in page  # the prepaid unit's low-credit threshold: 200
    Invoice.objects.create(
        landlord=personas.a.landlord,
        tenancy=personas.a.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        period_end=date(2026, 2, 1),
        currency="EUR",
        total_minor=12345,
    )
    page = client.get(reverse("admin:payments_invoice_changelist")).content.decode()
    assert "€123.45" in page


def test_a_read_only_page_shows_money_and_its_lines_stay_read_only(personas):
    invoice = Invoice.objects.create(
        landlord=personas.a.landlord,
        tenancy=personas.a.postpaid_tenancy,
        period_start=date(2026, 1, 1),
        period_end=date(2026, 2, 1),
        currency="GBP",
        total_minor=4321,
    )
    InvoiceLine.objects.create(
        invoice=invoice, position=1, kind="energy", description="Energy", amount_minor=4321
    )
    page = (
        _admin(personas)
        .get(reverse("admin:payments_invoice_change", args=[invoice.pk]))
        .content.decode()
    )
    assert page.count("£43.21") >= 2  # the bill's total and its line
    assert 'name="lines-0-amount_minor"' not in page


def test_a_form_takes_currency_units(personas):
    prop = personas.a.prop
    client = _admin(personas)
    url = reverse("admin:landlord_property_change", args=[prop.pk])
    page = client.get(url).content.decode()
    assert 'name="late_fee_fixed_minor" value="0.00"' in page
    data = {
        "landlord": prop.landlord_id,
        "name": prop.name,
        "timezone": prop.timezone,
        "currency": "GBP",
        "cutoff_days": prop.cutoff_days,
        "cutoff_start": "00:00",
        "cutoff_end": "00:00",
        "cutoff_holidays": "[]",
        "cutoff_notice_minutes": "0",
        "landlord_may_disconnect": "on",
        "bill_cycle_day": "1",
        "bill_due_days": "14",
        "late_fee_grace_days": "5",
        "late_fee_fixed_minor": "£2.50",
        "late_fee_percent": "0",
        "late_fee_cap_minor": "10",
    }
    bad = client.post(url, {**data, "late_fee_fixed_minor": "2.505"})
    assert bad.status_code == 200 and "two decimal places" in bad.content.decode()
    assert client.post(url, data).status_code == 302
    prop = Property.objects.get(pk=prop.pk)
    assert (prop.late_fee_fixed_minor, prop.late_fee_cap_minor) == (250, 1000)


def test_row_currency(personas):
    unit = Unit.objects.select_related("property").get(pk=personas.a.prepaid.pk)
    assert row_currency(unit) == "GBP"
    assert row_currency(object()) == "GBP"
