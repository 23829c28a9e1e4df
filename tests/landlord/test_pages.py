from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.selectors import tenancy_view
from meters.models import Meter, Reading
from tests.factories import make_device
from tests.landlord.tenant_helpers import credit


def _reading(device, seq, minutes_ago, register_wh, quality="actual"):
    meter = Meter.objects.get(device=device)
    Reading.objects.create(
        landlord=device.landlord,
        device=device,
        meter=meter,
        seq=seq,
        taken_at=timezone.now() - timedelta(minutes=minutes_ago),
        register_wh=register_wh,
        quality=quality,
    )


def test_usage_chart_starts_from_the_reading_before_the_window(personas):
    device = personas.a.prepaid_device.device
    _reading(device, 1, 90, 1000)  # before the hour: the baseline
    _reading(device, 2, 57, 1100)  # first slot: +100
    _reading(device, 3, 2, 1400)  # last slot: +300
    _reading(device, 4, 1, 900, quality="flagged")  # flagged: ignored
    view = tenancy_view(tenancy=personas.a.prepaid_tenancy)
    assert [b.wh for b in view.usage] == [100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 300]
    assert view.usage[-1].pct == 100 and view.usage[0].pct == 33
    assert view.avg_power_w == round(400 * 60 / 88)  # 400 Wh over 88 minutes


def test_usage_chart_on_a_new_meter_uses_its_first_reading(personas):
    device = personas.a.prepaid_device.device
    credit(personas.a.prepaid_tenancy, 500)  # something to estimate the runway of
    _reading(device, 1, 30, 500)
    _reading(device, 2, 29, 520)
    view = tenancy_view(tenancy=personas.a.prepaid_tenancy)
    assert sum(b.wh for b in view.usage) == 20
    assert view.avg_power_w == 1200
    assert view.runway  # an estimate is shown as soon as two readings exist


def test_unit_list_query_count_does_not_grow_with_units(personas, django_assert_max_num_queries):
    client = Client()
    client.force_login(personas.a.staff)
    url = reverse("landlord:units")
    with django_assert_max_num_queries(20):
        assert client.get(url).status_code == 200
    from django.contrib.auth import get_user_model

    from landlord.models import Tenancy, Unit

    for i in range(10):
        unit = Unit.objects.create(
            landlord=personas.a.landlord,
            property=personas.a.prop,
            name=f"Extra {i}",
            tariff=personas.a.tariff,
        )
        tenant = get_user_model().objects.create_user(f"extra{i}")
        Tenancy.objects.create(landlord=personas.a.landlord, unit=unit, tenant=tenant)
        make_device(unit, f"extra-dev-{i}")
    with django_assert_max_num_queries(20):
        resp = client.get(url)
    assert resp.content.decode().count('class="unit"') == 12


def test_postpaid_debt_reads_as_amount_due(personas):
    from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
    from payments.models import Account

    tenancy = personas.a.postpaid_tenancy
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="usage",
        idempotency_key="u1",
        legs=[
            Leg(
                debit=tenant_account(tenancy=tenancy),
                credit=landlord_account(
                    landlord=tenancy.landlord, kind=Account.Kind.REVENUE, currency="GBP"
                ),
                amount_minor=1234,
                energy_wh=4000,
            )
        ],
    )
    client = Client()
    client.force_login(personas.a.staff)
    body = client.get(reverse("landlord:units")).content.decode()
    assert "Amount due" in body and "£12.34" in body
    # The tenant's page calls nothing "amount due" that is not a bill: with no bill
    # yet, the debt is this month's usage so far (tests/landlord/test_tenant_home.py).
    client.force_login(personas.a.postpaid_tenant)
    body = client.get(
        reverse("tenant:home", args=[personas.a.postpaid_tenancy.pk])
    ).content.decode()
    assert "Amount due" not in body and "No bill yet" in body
