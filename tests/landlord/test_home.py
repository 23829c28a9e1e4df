"""The landlord's home (exceptions first, then the numbers, each linking to its rows)
and the unit page for people: what they show, and their query counts pinned at
20 and at 200 units."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.models import Tenancy, Unit
from meters.models import CutoffNotice, Device, Interval, Meter, Reading, RelayCommand
from payments import tariffs
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account, Invoice, Payment
from payments.rating import SCALE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cold_tariff_cache(monkeypatch):
    monkeypatch.setattr(tariffs, "_VERSIONS", {})


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _credit(tenancy: Tenancy, amount: int, key: str) -> None:
    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency="GBP"
    )
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="adjustment",
        idempotency_key=key,
        legs=[Leg(debit=clearing, credit=tenant_account(tenancy=tenancy), amount_minor=amount)],
    )


def build_units(world, count: int) -> list[Unit]:
    """``count`` more units, each let with a tenant balance, a device and a meter with
    two readings in the last hour; every fifth offline, every seventh with its
    supply off, every eleventh silent (built in bulk: this is about the page)."""
    now = timezone.now()
    landlord = world.landlord
    units = Unit.objects.bulk_create(
        Unit(
            landlord=landlord,
            property=world.prop,
            name=f"Bulk {i:03d}",
            billing_mode=Unit.BillingMode.PREPAID if i % 2 else Unit.BillingMode.POSTPAID,
            tariff=world.tariff,
        )
        for i in range(count)
    )
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"bulk-tenant-{i}") for i in range(count)
    )
    tenancies = Tenancy.objects.bulk_create(
        Tenancy(landlord=landlord, unit=unit, tenant=user)
        for unit, user in zip(units, users, strict=True)
    )
    Account.objects.bulk_create(
        Account(landlord=landlord, kind=Account.Kind.TENANT, currency="GBP", tenancy=t)
        for t in tenancies
    )
    for i, tenancy in enumerate(tenancies):
        if i % 4 == 1:  # a quarter have prepaid credit: their runway is estimated
            _credit(tenancy, 5000, f"bulk-credit-{i}")
    devices = Device.objects.bulk_create(
        Device(
            landlord=landlord,
            unit=unit,
            ident=f"bulk-dev-{i}",
            secret_hash="sha256$x$y",
            connected=i % 5 != 0,
            last_seen_at=now - timedelta(minutes=1 if i % 5 else 90),
            reported_relay="off" if i % 7 == 0 else "on",
            desired_relay="off" if i % 7 == 0 else "on",
        )
        for i, unit in enumerate(units)
    )
    meters = Meter.objects.bulk_create(
        Meter(
            landlord=landlord,
            unit=unit,
            device=device,
            serial=f"BULK-{i}",
            installed_at=now - timedelta(days=2),
            last_register_wh=1500,
            last_reading_at=now - timedelta(hours=2 if i % 11 == 0 else 0, minutes=1),
        )
        for i, (unit, device) in enumerate(zip(units, devices, strict=True))
    )
    Reading.objects.bulk_create(
        Reading(
            landlord=landlord,
            device=meter.device,
            meter=meter,
            seq=seq,
            taken_at=now - timedelta(minutes=minutes),
            register_wh=wh,
        )
        for meter in meters
        for seq, minutes, wh in ((1, 50, 1000), (2, 1, 1500))
    )
    return units


def _exceptions(world) -> None:
    """A fixed number of things needing attention, whatever the number of units."""
    now = timezone.now()
    CutoffNotice.objects.create(
        landlord=world.landlord,
        unit=world.prepaid,
        tenancy=world.prepaid_tenancy,
        earliest_at=now + timedelta(hours=5),
        balance_minor=0,
    )
    device = world.postpaid_device.device
    device.desired_generation = 3
    device.desired_relay = "off"
    device.save()
    RelayCommand.objects.create(
        landlord=world.landlord,
        device=device,
        generation=3,
        state="off",
        reason="arrears",
        status=RelayCommand.Status.SENT,
        created_at=now - timedelta(minutes=10),
        attempts=4,
    )


def _counted(client, url, django_assert_num_queries, expected):
    assert client.get(url).status_code == 200  # warm the tariff cache
    with django_assert_num_queries(expected):
        resp = client.get(url)
    assert resp.status_code == 200
    return resp.content.decode()


# One query per scheduled cut-off (its protections ask the dispute freeze hook);
# the world has one. The rest: the session and membership, the units with their
# devices, meters and tenancies, the role, then the home's own fixed queries
# (one of them every prepaid meter's last hour at once, for the runways; one the
# payment-plan requests waiting for an answer).
HOME_QUERIES = 22
# The unit page also asks for a switch of billing mode scheduled for the unit and for
# the tenancy's deposit; its usage chart (landlord.usage.unit_usage) reads the meters and
# the tenancies, then, for the period and the one before, the slots, each meter's priced
# total before it and the standing charges: 8; and the tenant's payment-plan request: 1.
UNIT_QUERIES = 27


@pytest.mark.parametrize("count", [20, 200])
def test_home_query_count_does_not_grow_with_units(personas, count, django_assert_num_queries):
    world = personas.a
    build_units(world, count - 2)
    _exceptions(world)
    body = _counted(
        _client(world.staff), reverse("landlord:units"), django_assert_num_queries, HOME_QUERIES
    )
    assert body.count('class="unit"') == count
    assert 'data-kind="cutoff"' in body and 'data-kind="relay"' in body


@pytest.mark.parametrize("count", [20, 200])
def test_unit_page_query_count_does_not_grow_with_units(personas, count, django_assert_num_queries):
    world = personas.a
    build_units(world, count - 2)
    _exceptions(world)
    url = reverse("landlord:unit", args=[world.prepaid.pk])
    body = _counted(_client(world.staff), url, django_assert_num_queries, UNIT_QUERIES)
    assert 'data-testid="usage-rows"' in body


# --- exceptions ---------------------------------------------------------------------


def test_home_lists_what_needs_attention_first(personas):
    world = personas.a
    units = build_units(world, 12)
    _exceptions(world)
    Payment.objects.create(
        landlord=world.landlord,
        tenancy=world.postpaid_tenancy,
        amount_minor=1500,
        currency="GBP",
        provider="dev",
        status=Payment.Status.FAILED,
    )
    meter = Meter.objects.get(device=world.prepaid_device.device)
    Reading.objects.create(
        landlord=world.landlord,
        device=meter.device,
        meter=meter,
        seq=99,
        taken_at=timezone.now() - timedelta(hours=1),
        register_wh=5,
        quality=Reading.Quality.FLAGGED,
        rule="negative",
    )
    body = _client(world.staff).get(reverse("landlord:units")).content.decode()
    section = body.split('data-testid="exceptions"')[1].split('data-testid="kpis"')[0]
    # the scheduled cut-off comes first, with the time left
    first = section.split("<li")[1]
    assert 'data-kind="cutoff"' in first and "supply goes off in about 4 hours" in first
    # supplies off (units 0 and 7), offline meters (0, 5, 10), a silent one (11)
    assert section.count('data-kind="off"') == 2
    assert section.count('data-kind="offline"') == 3
    assert f'data-kind="silent" data-unit="{units[11].pk}"' in section
    assert 'data-kind="relay"' in section and "relay not switching off" in section
    assert 'data-kind="payment"' in section and "payment failed" in section
    assert 'data-kind="flagged"' in section and "1 reading flagged" in section
    assert section.index('data-kind="off"') < section.index('data-kind="payment"')


def test_credit_running_out_is_listed_with_hours_left(personas):
    world = personas.a
    _credit(world.prepaid_tenancy, 100, "runway-credit")
    meter = Meter.objects.get(device=world.prepaid_device.device)
    now = timezone.now()
    for seq, minutes, wh in ((1, 60, 0), (2, 0, 1000)):  # 1 kW at 30p/kWh: 30p an hour
        Reading.objects.create(
            landlord=world.landlord,
            device=meter.device,
            meter=meter,
            seq=seq,
            taken_at=now - timedelta(minutes=minutes, seconds=-1),
            register_wh=wh,
        )
    body = _client(world.staff).get(reverse("landlord:units")).content.decode()
    section = body.split('data-testid="exceptions"')[1].split('data-testid="kpis"')[0]
    assert 'data-kind="runway"' in section and "credit runs out in about 3 hours" in section


def test_an_open_dispute_is_listed(personas):
    from tests.landlord.test_access import _dispute, _invoice

    world = personas.a
    dispute = _dispute(world.prepaid_tenancy, _invoice(world.prepaid_tenancy))
    body = _client(world.staff).get(reverse("landlord:units")).content.decode()
    assert reverse("disputes:detail", args=[dispute.pk]) in body
    assert 'data-kind="dispute"' in body


def test_nothing_to_attend_to_says_so(personas):
    body = _client(personas.a.staff).get(reverse("landlord:units")).content.decode()
    assert "Nothing needs attention" in body


# --- the numbers and the rows behind them ---------------------------------------------


def _invoice(tenancy, start: date, total: int, due: date | None) -> Invoice:
    return Invoice.objects.create(
        landlord=tenancy.landlord,
        tenancy=tenancy,
        period_start=start,
        period_end=start + timedelta(days=28),
        currency="GBP",
        total_minor=total,
        due_date=due,
    )


def _figures(body: str) -> dict[str, tuple[str, str]]:
    """{label: (value, link)} of the home page's figures."""
    out = {}
    for chunk in body.split('<a class="kpi" href="')[1:]:
        url = chunk.split('"')[0].replace("&amp;", "&")
        label = chunk.split('class="kpi-label">')[1].split("<")[0]
        value = chunk.split('class="kpi-value">')[1].split("</strong>")[0]
        out[label] = (value, url)
    return out


def test_money_figures_link_to_their_rows(personas):
    from tests.payments.test_billing import _pay

    world = personas.a
    today = timezone.localdate()
    bill = _invoice(world.postpaid_tenancy, date(2025, 1, 1), 4200, today - timedelta(days=20))
    _pay(world.postpaid_tenancy, 1200)
    _invoice(personas.b.postpaid_tenancy, date(2025, 1, 1), 999, today - timedelta(days=20))
    client = _client(world.staff)
    figures = _figures(client.get(reverse("landlord:units")).content.decode())

    value, url = figures["Collected this month"]
    assert value == "£12.00"
    rows = client.get(url).content.decode().split('data-testid="payments"')[1]
    assert rows.count("<tr>") == 2 and "£12.00" in rows  # the header and the payment

    value, url = figures["Billed this month"]
    assert value == "£42.00"
    rows = client.get(url).content.decode()
    assert f'data-invoice="{bill.pk}"' in rows and "£30.00" in rows  # owed after the payment

    value, url = figures["16\u201330 days"]
    assert value == "£30.00"
    rows = client.get(url).content.decode()
    assert f'data-tenancy="{world.postpaid_tenancy.pk}"' in rows
    assert f'data-invoice="{bill.pk}"' in rows
    assert figures["1\u201315 days"][0] == "£0.00"

    value, url = figures["Revenue, last 30 days"]
    assert value == "£0.00"
    assert client.get(url).status_code == 200


def test_revenue_is_what_was_charged_less_corrections(personas):
    world = personas.a
    tenancy = world.prepaid_tenancy
    revenue = landlord_account(landlord=world.landlord, kind=Account.Kind.REVENUE, currency="GBP")
    account = tenant_account(tenancy=tenancy)
    ledger_post(
        landlord_id=world.landlord.pk,
        kind="usage",
        idempotency_key="rev-1",
        legs=[Leg(debit=account, credit=revenue, amount_minor=900)],
    )
    ledger_post(
        landlord_id=world.landlord.pk,
        kind="correction",
        idempotency_key="rev-2",
        legs=[Leg(debit=revenue, credit=account, amount_minor=150)],
    )
    client = _client(world.staff)
    value, url = _figures(client.get(reverse("landlord:units")).content.decode())[
        "Revenue, last 30 days"
    ]
    assert value == "£7.50"
    rows = client.get(url).content.decode()
    assert rows.count("data-posting=") == 2 and "\u2212£1.50" in rows


def test_counts_link_to_the_units_they_count(personas):
    world = personas.a
    Unit.objects.create(landlord=world.landlord, property=world.prop, name="Empty flat")
    client = _client(world.staff)
    figures = _figures(client.get(reverse("landlord:units")).content.decode())
    assert figures["Units"][0] == "3" and figures["vacant"][0] == "1"
    body = client.get(figures["vacant"][1]).content.decode().split('id="unit-list"')[1]
    assert body.count('class="unit"') == 1 and "Empty flat" in body
    body = client.get(figures["let"][1]).content.decode().split('id="unit-list"')[1]
    assert body.count('class="unit"') == 2 and "Empty flat" not in body


def test_the_checklist_stays_until_done(personas):
    world = personas.a
    Unit.objects.create(landlord=world.landlord, property=world.prop, name="No meter yet")
    body = _client(world.staff).get(reverse("landlord:units")).content.decode()
    assert 'data-testid="onboarding"' in body
    assert body.index('id="onboarding"') < body.index('id="exceptions"')


def test_a_bad_range_on_a_list_page_is_shown_and_ignored(personas):
    client = _client(personas.a.staff)
    resp = client.get(reverse("landlord:bills"), {"from": "2026-02-01", "to": "2026-01-01"})
    assert resp.status_code == 400
    assert "before its start" in resp.content.decode()


# --- the unit page ----------------------------------------------------------------------


def test_unit_page_shows_people_first_and_records_behind_details(personas):
    world = personas.a
    _credit(world.prepaid_tenancy, 700, "unit-page-credit")
    meter = Meter.objects.get(device=world.prepaid_device.device)
    yesterday = timezone.localdate() - timedelta(days=1)
    start = datetime.combine(yesterday, time(0), timezone.get_current_timezone())
    for i in range(2):
        Interval.objects.create(
            landlord=world.landlord,
            meter=meter,
            start=start + timedelta(hours=10, minutes=30 * i),
            end=start + timedelta(hours=10, minutes=30 * (i + 1)),
            energy_wh=500,
            gross_sub=15 * SCALE,
        )
    # priced, not yet posted: the meter's pending amount (the ledger checks it)
    Meter.objects.filter(pk=meter.pk).update(pending_sub=30 * SCALE)
    client = _client(world.staff)
    url = reverse("landlord:unit", args=[world.prepaid.pk])
    body = client.get(url).content.decode()
    summary = body.split('data-testid="unit-summary"')[1].split("</section>")[0]
    assert "tenant_a1" in summary and "Prepaid" in summary and "£6.70" in summary
    assert "supply" in summary and 'data-testid="meter-status"' in summary
    assert 'id="unit-usage-chart"' in body and 'id="unit-usage-data"' in body
    month = client.get(url, {"period": "month", "date": yesterday.isoformat()}).content.decode()
    days = month.split('data-testid="usage-rows"')[1].split("</table>")[0]
    assert "1.000 kWh" in days and "£0.30" in days  # yesterday: two half hours of 500 Wh
    # every other day of the month has no data: a gap, not zero
    assert days.count('data-gap="1"') == days.count("<tr") - 2
    assert "Recent readings" not in body and "Relay commands" not in body
    details = client.get(url, {"tab": "details"}).content.decode()
    assert "Recent readings" in details and "Relay commands" in details and "Audit log" in details


def test_silent_and_stuck_thresholds_are_settings(personas, settings):
    world = personas.a
    units = build_units(world, 12)  # unit 11's meter: no reading for two hours
    _exceptions(world)  # a relay command sent ten minutes ago, not acknowledged
    client = _client(world.staff)

    def section():
        body = client.get(reverse("landlord:units")).content.decode()
        return body.split('data-testid="exceptions"')[1].split('data-testid="kpis"')[0]

    silent = f'data-kind="silent" data-unit="{units[11].pk}"'
    assert silent in section() and 'data-kind="relay"' in section()
    settings.SUBMETER = {
        **settings.SUBMETER,
        "METER_SILENT_MINUTES": 180,
        "RELAY_STUCK_SECONDS": 3600,
    }
    assert silent not in section() and 'data-kind="relay"' not in section()
    settings.SUBMETER = {**settings.SUBMETER, "METER_SILENT_MINUTES": 60}
    assert silent in section()
