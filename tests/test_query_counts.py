"""Database queries per page and per hot path, pinned.

A new query on one of these paths fails here first; a query per unit on the
landlord's list shows up as a count that grows with the units. When a count
changes on purpose, update the number in the same commit and say why.

Counts are of a warm process: the tariff's rating versions are cached per
process (``payments.tariffs._VERSIONS``), so only the first use of a tariff
reads them. Each test starts from an empty cache and warms it (pages are
fetched twice, the second request counted), whatever ran before it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.models import Tenancy, Unit
from meters import intake, readings
from meters.models import Meter, Reading
from payments import tariffs
from payments.emergency import emergency_credit_take
from payments.ledger import tenant_account
from payments.models import Invoice
from payments.services import payment_create
from supply.decision import supply_evaluate
from tests.factories import make_device
from tests.landlord.tenant_helpers import credit as move
from tests.payments.conftest import ACCT_A, connected, fake_stripe  # noqa: F401 (fixtures)
from tests.payments.stripe_fake import deliver, event, intent_obj, session_obj

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cold_tariff_cache(monkeypatch):
    monkeypatch.setattr(tariffs, "_VERSIONS", {})


def _reading(device, seq, minutes_ago, register_wh):
    meter = Meter.objects.get(device=device)
    Reading.objects.create(
        landlord=device.landlord,
        device=device,
        meter=meter,
        seq=seq,
        taken_at=timezone.now() - timedelta(minutes=minutes_ago),
        register_wh=register_wh,
        quality=Reading.Quality.ACTUAL,
    )


@pytest.fixture
def world(personas):
    """Landlord A with an hour and a half of usage on the prepaid unit (so the tenant's
    page draws the chart and estimates the runway) and credit on its tenancy."""
    a = personas.a
    for seq, minutes_ago, register_wh in [(1, 90, 1000), (2, 40, 1100), (3, 2, 1400)]:
        _reading(a.prepaid_device.device, seq, minutes_ago, register_wh)
    _credit(a.prepaid_tenancy, 2500)
    return a


def _credit(tenancy, amount):
    from payments.ledger import Leg, landlord_account, ledger_post
    from payments.models import Account

    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency="GBP"
    )
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="adjustment",
        idempotency_key=f"query-count-credit-{tenancy.pk}",
        legs=[Leg(debit=clearing, credit=tenant_account(tenancy=tenancy), amount_minor=amount)],
    )


def _get_counted(client, url, django_assert_num_queries, expected):
    assert client.get(url).status_code == 200
    with django_assert_num_queries(expected):
        resp = client.get(url)
    assert resp.status_code == 200
    return resp


# The tenant's home, whatever it shows: session and user, the tenancy with its
# balance, unit, property, tariff, open cut-off notice and emergency credit owed;
# the installed meter with its device; the dispute freeze (prepaid, or a scheduled
# cut-off); the last hour's readings; bills with what was paid on them (postpaid:
# the month so far instead of the freeze); alerts; the saved card; payments.
TENANT_HOME_QUERIES = 10


def _tenant_home(client, tenancy, django_assert_num_queries):
    client.force_login(tenancy.tenant)
    url = reverse("tenant:home", args=[tenancy.pk])
    return _get_counted(client, url, django_assert_num_queries, TENANT_HOME_QUERIES).content


def test_tenant_home_prepaid(world, django_assert_num_queries):
    body = _tenant_home(Client(), world.prepaid_tenancy, django_assert_num_queries).decode()
    assert "Lasts until about" in body
    assert 'class="bar"' in body


def test_tenant_home_prepaid_on_emergency_credit_with_a_cutoff(world, django_assert_num_queries):
    """Emergency credit owed, a scheduled cut-off, an alert, payments: the same count."""
    tenancy = world.prepaid_tenancy
    Unit.objects.filter(pk=world.prepaid.pk).update(emergency_credit_minor=300)
    world.prop.cutoff_notice_minutes = 60
    world.prop.save(update_fields=["cutoff_notice_minutes"])
    move(tenancy, -2500 - 40)
    emergency_credit_take(tenancy=tenancy, actor_id=None)
    move(tenancy, -300)  # the emergency credit spent: below zero, a cut-off is scheduled
    supply_evaluate(unit=world.prepaid, reason="test")
    for amount in (500, 1000):
        payment_create(tenancy=tenancy, amount_minor=amount, provider="dev", created_by_id=None)
    body = _tenant_home(Client(), tenancy, django_assert_num_queries).decode()
    assert "scheduled off" in body
    assert "Emergency credit to repay: £3.00" in body
    assert 'data-testid="alert"' in body
    assert "R-" in body  # the receipts


def test_tenant_home_postpaid_with_a_bill(world, django_assert_num_queries):
    tenancy = world.postpaid_tenancy
    for seq, minutes_ago, register_wh in [(1, 90, 1000), (2, 40, 1100), (3, 2, 1400)]:
        _reading(world.postpaid_device.device, seq, minutes_ago, register_wh)
    move(tenancy, -3000)
    today = timezone.localdate()
    Invoice.objects.create(
        landlord=world.landlord,
        tenancy=tenancy,
        period_start=(today.replace(day=1) - timedelta(days=1)).replace(day=1),
        period_end=today.replace(day=1),
        currency="GBP",
        total_minor=3000,
    )
    body = _tenant_home(Client(), tenancy, django_assert_num_queries).decode()
    assert "£30.00 still to pay" in body
    assert 'data-testid="accrued"' in body and 'data-testid="projected"' in body


def _add_units(world, count):
    """More units like the world's own: a tenant with credit, a meter with readings."""
    for i in range(count):
        unit = Unit.objects.create(
            landlord=world.landlord,
            property=world.prop,
            name=f"Extra {i}",
            billing_mode=Unit.BillingMode.PREPAID if i % 2 else Unit.BillingMode.POSTPAID,
            tariff=world.tariff,
        )
        tenant = get_user_model().objects.create_user(f"extra{i}")
        tenancy = Tenancy.objects.create(landlord=world.landlord, unit=unit, tenant=tenant)
        _credit(tenancy, 1000 + i)
        device = make_device(unit, f"extra-dev-{i}").device
        _reading(device, 1, 30, 100)
        _reading(device, 2, 1, 150)


@pytest.mark.parametrize("units", [2, 6])
def test_landlord_home_does_not_grow_with_units(world, units, django_assert_num_queries):
    _add_units(world, units - 2)
    client = Client()
    client.force_login(world.staff)
    # The home: the units (8), then what needs attention and the numbers
    # (landlord.dashboard: a fixed number of landlord-wide queries, one of them the
    # payment-plan requests waiting for an answer).
    resp = _get_counted(client, reverse("landlord:units"), django_assert_num_queries, 21)
    assert resp.content.decode().count('class="unit"') == units


def test_landlord_unit_page(world, django_assert_num_queries):
    client = Client()
    client.force_login(world.staff)
    url = reverse("landlord:unit", args=[world.prepaid.pk])
    # One of them is the dispute freeze hook (disputes.freeze) asked by the protections,
    # one the switch of billing mode scheduled for the unit, if any, one the tenancy's
    # deposit, if any; the tenant alerts are one query (supply.alerts.open_alerts). The
    # raw records are on the details tab; the overview reads bills, payments and the
    # usage chart (8: the meters, the tenancies, then for the period and the one before
    # the slots, each meter's priced total before it, the standing charges), and the
    # tenant's payment-plan request.
    _get_counted(client, url, django_assert_num_queries, 26)


def test_device_reading_frame(personas, django_assert_num_queries):
    # The socket hands a frame's readings to meters.intake, whose batcher stores
    # them on a worker thread (off_thread), where this test's connection cannot
    # count queries. So this counts the sync function that thread runs for a
    # batch of one frame: stage the readings, then rate them and re-evaluate the
    # unit (the test settings run the rating task at once). The usage is well
    # inside the debit window, so nothing is posted yet, as for most frames.
    world = personas.a
    _credit(world.prepaid_tenancy, 2500)
    device = world.prepaid_device.device
    # All six readings (a minute) inside one half-hour slot, a few minutes old:
    # readings that cross into the next slot derive one more slot, and more queries.
    now = datetime.now(UTC)
    slot = now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0)
    base = slot if now - slot > timedelta(minutes=5) else slot - timedelta(minutes=10)

    def frame(first_seq):
        frame_readings = [
            readings.ReadingInput(
                seq=seq, taken_at=base + timedelta(seconds=10 * seq), register_wh=2000 + seq
            )
            for seq in range(first_seq, first_seq + 3)
        ]
        return [readings.StageRequest(device.pk, device.landlord_id, frame_readings)]

    intake._write(frame(1))  # the meter's first frame: its starting point, a cold cache
    # PostgreSQL stages a batch in one statement (readings._STAGE_SQL), a
    # transaction of its own (no savepoint inside the test's transaction), and
    # takes it for rating in one (readings._TAKE_SQL: elsewhere a select, a
    # delete and the duplicate check, and a save of the device's last_seen_at);
    # both go through the driver's own cursor (binary values), which this
    # count does not see. The unit's evaluation asks the dispute freeze hook:
    # one query.
    expected = {"postgresql": 23}.get(connection.vendor, 34)
    with django_assert_num_queries(expected):
        [answer] = intake._write(frame(4))
    assert isinstance(answer, readings.ReadingsResult) and answer.accepted == [4, 5, 6]


@pytest.mark.usefixtures("connected")
@pytest.mark.parametrize("kind", ["payment_intent.succeeded", "checkout.session.completed"])
def test_stripe_top_up_webhook(
    world, kind, django_assert_num_queries, django_capture_on_commit_callbacks
):
    payment = payment_create(
        tenancy=world.prepaid_tenancy, amount_minor=1000, provider="stripe", created_by_id=None
    )
    payment.stripe_account = ACCT_A
    payment.checkout_session_id = f"cs_test_{payment.uuid.hex[:20]}"
    payment.save(update_fields=["stripe_account", "checkout_session_id"])
    obj = intent_obj(payment) if kind == "payment_intent.succeeded" else session_obj(payment)
    balance = tenant_account(tenancy=world.prepaid_tenancy).balance_minor
    tariffs.current_price_per_kwh(unit=world.prepaid)  # a warm tariff cache
    client = Client()
    # Receiving (verify, store) and processing (credit, re-evaluate the supply),
    # which the view queues for after its commit.
    # 43 (the re-evaluated unit is read with its tariff, for the runway alert's price)
    # + the dispute freeze hook asked when the unit is re-evaluated (the emergency
    # credit owed is one query: payments.emergency.emergency_debt) + whether the
    # tenancy has bills a top-up would pay (payments.allocation.bills_allocate).
    with django_assert_num_queries(45), django_capture_on_commit_callbacks(execute=True):
        resp = deliver(client, event(kind, obj, account=ACCT_A))
    assert resp.status_code == 200 and resp.json()["duplicate"] is False
    assert tenant_account(tenancy=world.prepaid_tenancy).balance_minor == balance + 1000
