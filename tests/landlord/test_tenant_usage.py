"""The tenant's usage chart: money to the penny of the ledger, gaps as gaps."""

from __future__ import annotations

import json
import zoneinfo
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.models import Tenancy
from meters.models import Interval, Meter
from payments import billing, rating
from payments.ledger import tenant_account
from payments.models import LedgerTransaction, Posting, Tariff

pytestmark = pytest.mark.django_db

# Fractions of a penny on purpose: 12.345678p, 7.5p, ...
SLOT_SUBS = [int(Decimal(p) * rating.SCALE) for p in ("12.345678", "7.5", "0.333", "20.01", "3")]


def _day_slots(meter: Meter, day, tz, subs, skip=()):
    start = datetime.combine(day, time(0), tz).astimezone(UTC)
    out = []
    for i, sub in enumerate(subs):
        if i in skip:
            continue
        at = start + timedelta(minutes=30 * i)
        Interval.objects.create(
            landlord_id=meter.landlord_id,
            meter=meter,
            start=at,
            end=at + timedelta(minutes=30),
            energy_wh=100 + i,
            net_sub=sub * 100 // 105,
            gross_sub=sub,
        )
        out.append((at, sub))
    return out


@pytest.fixture
def usage_world(personas):
    a = personas.a
    tz = zoneinfo.ZoneInfo(a.prop.timezone)
    day = timezone.localdate(timezone=tz) - timedelta(days=2)
    Tenancy.objects.filter(pk=a.prepaid_tenancy.pk).update(start_date=day - timedelta(days=3))
    a.prepaid_tenancy.refresh_from_db()
    tariff = Tariff.objects.create_flat(
        landlord=a.landlord,
        name="With standing",
        currency="GBP",
        price_per_kwh_minor=Decimal("30"),
        standing_charge_per_day_minor=Decimal("45.5"),
    )
    a.prepaid.tariff = tariff
    a.prepaid.save(update_fields=["tariff"])
    meter = Meter.objects.get(unit=a.prepaid)
    return a, tz, day, meter


def _post_usage(meter, unit, slots):
    """The slots priced and posted as the billing does, fractions carried."""
    meter.refresh_from_db()
    meter.rated_at = slots[-1][0] + timedelta(minutes=30)
    billing.usage_accrue(meter=meter, unit=unit, changes=slots, rated_before=meter.rated_at)
    billing.usage_settle(meter=meter, unit=unit, now=timezone.now(), force=True)
    meter.save()


def _chart(client, tenancy, **params):
    resp = client.get(reverse("tenant:usage_data", args=[tenancy.pk]), params)
    assert resp.status_code == 200, resp.content
    return resp.json()


def _posted(tenancy, first_txn, day) -> tuple[int, int]:
    """The ledger's usage postings to the tenant since ``first_txn``, and ``day``'s
    standing charge."""
    account = tenant_account(tenancy=tenancy)
    usage_posted = Posting.objects.filter(
        debit=account,
        transaction__kind=LedgerTransaction.Kind.USAGE,
        transaction__pk__gt=first_txn.pk,
    ).aggregate(s=Sum("amount_minor"))["s"]
    standing_posted = Posting.objects.get(
        debit=account, transaction__idempotency_key=f"standing:{tenancy.pk}:{day.isoformat()}"
    ).amount_minor
    return int(usage_posted), standing_posted


def test_days_money_equals_the_ledger_postings_for_that_day(usage_world):
    a, tz, day, meter = usage_world
    tenancy = a.prepaid_tenancy
    # given: the day before (so fractions are already carried) and the day itself
    before = _day_slots(meter, day - timedelta(days=1), tz, SLOT_SUBS[:2])
    _post_usage(meter, a.prepaid, before)
    first_txn = LedgerTransaction.objects.latest("pk")
    slots = _day_slots(meter, day, tz, SLOT_SUBS)
    _post_usage(meter, a.prepaid, slots)
    billing.standing_charges_post(tenancy=tenancy, through=day)
    # when
    client = Client()
    client.force_login(a.prepaid_tenant)
    chart = _chart(client, tenancy, period="day", date=day.isoformat())
    # then: the day's usage postings and its standing charge, to the penny
    usage_posted, standing_posted = _posted(tenancy, first_txn, day)
    assert chart["energy_minor"] == usage_posted
    assert sum(v for v in chart["minor"] if v is not None) == usage_posted
    assert chart["standing_minor"] == standing_posted
    assert chart["total_minor"] == usage_posted + standing_posted
    assert "standing charge" in chart["includes"] and "tax" in chart["includes"]
    # and the week's bar for that day carries the same, standing charge included
    week = _chart(client, tenancy, period="week", date=day.isoformat())
    assert week["minor"][day.weekday()] == usage_posted + standing_posted
    # the day before is the previous period of the day view
    assert chart["previous_total_minor"] == sum(s for _, s in before) // rating.SCALE


def test_a_gap_is_null_not_zero(usage_world):
    a, tz, day, meter = usage_world
    _post_usage(meter, a.prepaid, _day_slots(meter, day, tz, SLOT_SUBS, skip={2}))
    held_at = datetime.combine(day, time(0), tz).astimezone(UTC) + timedelta(minutes=30 * 6)
    Interval.objects.create(
        landlord_id=meter.landlord_id,
        meter=meter,
        start=held_at,
        end=held_at + timedelta(minutes=30),
        quality=Interval.Quality.HELD,
        held_reason="spike",
    )
    client = Client()
    client.force_login(a.prepaid_tenant)
    chart = _chart(client, a.prepaid_tenancy, period="day", date=day.isoformat())
    assert chart["wh"][1] == 101 and chart["wh"][3] == 103
    assert chart["wh"][2] is None and chart["minor"][2] is None  # no slot
    assert chart["wh"][6] is None and chart["minor"][6] is None  # held
    assert chart["wh"][40] is None  # not derived at all
    assert len(chart["wh"]) in (46, 48, 50)


def test_usage_page_and_bad_input(usage_world):
    a, tz, day, meter = usage_world
    _post_usage(meter, a.prepaid, _day_slots(meter, day, tz, SLOT_SUBS))
    client = Client()
    client.force_login(a.prepaid_tenant)
    url = reverse("tenant:usage", args=[a.prepaid_tenancy.pk])
    page = client.get(url, {"period": "month", "date": day.isoformat()}).content.decode()
    assert "uPlot.iife.min.js" in page and 'data-testid="usage-includes"' in page
    bad = client.get(url, {"period": "decade"})
    assert bad.status_code == 200 and "There is no" in bad.content.decode()
    data = client.get(reverse("tenant:usage_data", args=[a.prepaid_tenancy.pk]), {"date": "x"})
    assert data.status_code == 400 and "is not a date" in data.json()["error"]


def test_another_tenants_usage_is_404(personas):
    client = Client()
    client.force_login(personas.b.prepaid_tenant)
    for name in ("tenant:usage", "tenant:usage_data"):
        assert client.get(reverse(name, args=[personas.a.prepaid_tenancy.pk])).status_code == 404


# --- the landlord's unit page: the same chart, every tenant of the unit --------------------


def _unit_chart(client, unit, **params):
    resp = client.get(reverse("landlord:unit", args=[unit.pk]), params)
    assert resp.status_code == 200, resp.content
    body = resp.content.decode()
    raw = body.split('<script id="unit-usage-data" type="application/json">')[1].split("</script>")
    return json.loads(raw[0]), body


def test_unit_page_chart_equals_the_ledger_postings_for_the_day(usage_world):
    a, tz, day, meter = usage_world
    tenancy = a.prepaid_tenancy
    # given: the day before (fractions already carried), the day itself, its standing charge
    before = _day_slots(meter, day - timedelta(days=1), tz, SLOT_SUBS[:2])
    _post_usage(meter, a.prepaid, before)
    first_txn = LedgerTransaction.objects.latest("pk")
    _post_usage(meter, a.prepaid, _day_slots(meter, day, tz, SLOT_SUBS, skip={2}))
    billing.standing_charges_post(tenancy=tenancy, through=day)
    # when: the landlord's staff open the unit page on that day
    client = Client()
    client.force_login(a.staff)
    chart, body = _unit_chart(client, a.prepaid, period="day", date=day.isoformat())
    # then: the same figures as the ledger, to the penny
    usage_posted, standing_posted = _posted(tenancy, first_txn, day)
    assert chart["energy_minor"] == usage_posted
    assert sum(v for v in chart["minor"] if v is not None) == usage_posted
    assert chart["standing_minor"] == standing_posted
    assert chart["total_minor"] == usage_posted + standing_posted
    assert chart["wh"][2] is None and chart["minor"][2] is None  # a gap, not zero
    assert chart["previous_total_minor"] == sum(s for _, s in before) // rating.SCALE
    assert "the unit was charged" in chart["includes"]
    assert 'data-usage-json="unit-usage-data"' in body and "usage.js" in body
    # the week: the day's bar carries its standing charge, as the tenant's chart does
    week, _ = _unit_chart(client, a.prepaid, period="week", date=day.isoformat())
    assert week["minor"][day.weekday()] == usage_posted + standing_posted
    tenant = Client()
    tenant.force_login(a.prepaid_tenant)
    theirs = _chart(tenant, tenancy, period="week", date=day.isoformat())
    assert theirs["minor"] == week["minor"] and theirs["wh"] == week["wh"]


def test_unit_page_chart_counts_a_vacant_day(usage_world):
    a, tz, _day, meter = usage_world
    vacant = a.prepaid_tenancy.start_date - timedelta(days=1)
    _day_slots(meter, vacant, tz, SLOT_SUBS[:1])
    # priced, not yet posted (to the landlord's vacant-units account; the ledger checks it)
    Meter.objects.filter(pk=meter.pk).update(pending_sub=SLOT_SUBS[0])
    client = Client()
    client.force_login(a.staff)
    chart, _ = _unit_chart(client, a.prepaid, period="day", date=vacant.isoformat())
    assert chart["wh"][0] == 100 and chart["minor"][0] == SLOT_SUBS[0] // rating.SCALE
    assert chart["standing_minor"] == 0  # no tenancy: no standing charge


def test_unit_page_usage_bad_input_and_another_landlord(usage_world, personas):
    a = usage_world[0]
    client = Client()
    client.force_login(a.staff)
    url = reverse("landlord:unit", args=[a.prepaid.pk])
    bad = client.get(url, {"period": "decade"})
    assert bad.status_code == 200 and "There is no" in bad.content.decode()
    other = Client()
    other.force_login(personas.b.staff)
    assert other.get(url, {"period": "week"}).status_code == 404
