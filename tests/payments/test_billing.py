"""Debit windows, standing charges, postpaid invoices, emergency credit, reversals."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.models import Device, Meter
from meters.readings import ReadingInput, readings_record
from payments import allocation, billing, emergency, tariffs
from payments.billing import BillingError, usage_settle_meter
from payments.ledger import Leg, landlord_account, ledger_post, ledger_verify, tenant_account
from payments.models import Account, Invoice, LedgerTransaction, Payment, Tariff
from payments.services import payment_create, payment_transition

JAN = datetime(2026, 1, 14, tzinfo=UTC)  # a Wednesday


def _record(device, *items, base):
    return readings_record(
        device_id=device.pk,
        readings=[
            ReadingInput(seq=seq, taken_at=base + timedelta(minutes=m), register_wh=wh)
            for seq, m, wh in items
        ],
    )


def _balance(tenancy) -> int:
    return tenant_account(tenancy=tenancy).balance_minor


def _credit(world, amount, key="opening"):
    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    ledger_post(
        landlord_id=world.landlord.pk,
        kind="adjustment",
        idempotency_key=key,
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=amount)],
    )


def _pay(tenancy, amount) -> Payment:
    payment = payment_create(
        tenancy=tenancy, amount_minor=amount, provider="dev", created_by_id=None
    )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        payment_transition(
            payment=payment, status=Payment.Status.SUCCEEDED, provider_ref=f"pi_{payment.uuid.hex}"
        )
    return payment


# --- debit windows ------------------------------------------------------------------


def test_live_usage_is_posted_in_windows_not_per_reading(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DEBIT_WINDOW_SECONDS": 900}
    world = personas.a
    _credit(world, 100_000)
    dev = world.prepaid_device.device
    now = timezone.now()
    base = now - timedelta(minutes=10)
    for i in range(10):
        _record(dev, (i + 1, i, i * 100), base=base)
    meter = Meter.objects.get(device=dev)
    # 900 Wh at 30p = 27p rated, not yet posted: one window is still open
    assert LedgerTransaction.objects.filter(kind="usage").count() == 0
    assert meter.pending_sub // billing.rating.SCALE == 27
    # the tenant already sees it
    client = Client()
    client.force_login(world.prepaid_tenant)
    body = client.get(reverse("tenant:home", args=[world.prepaid_tenancy.pk])).content.decode()
    assert "£999.73" in body
    # when the window is over, the sweep posts one aggregated debit
    billing.billing_sweep(now=now + timedelta(minutes=16))
    assert LedgerTransaction.objects.filter(kind="usage").count() == 1
    assert _balance(world.prepaid_tenancy) == 100_000 - 27


def test_prepaid_near_low_credit_is_posted_at_once(personas):
    world = personas.a
    _credit(world, 250)  # threshold is 200
    dev = world.prepaid_device.device
    base = timezone.now() - timedelta(minutes=5)
    _record(dev, (1, 0, 0), (2, 1, 1000), base=base)  # 30p: 250 - 30 > 200, waits
    assert _balance(world.prepaid_tenancy) == 250
    _record(dev, (3, 3, 2500), base=base)  # 45p more: would be 175, so at once
    assert _balance(world.prepaid_tenancy) == 175


def test_vacant_unit_usage_is_the_landlords_own(personas):
    world = personas.a
    world.prepaid_tenancy.end_date = timezone.localdate() - timedelta(days=400)
    world.prepaid_tenancy.start_date = world.prepaid_tenancy.end_date
    world.prepaid_tenancy.save()
    _record(world.prepaid_device.device, (1, 0, 0), (2, 1, 1000), base=JAN)
    vacant = Account.objects.get(landlord=world.landlord, kind=Account.Kind.VACANT)
    assert vacant.balance_minor == -30


# --- standing charges ----------------------------------------------------------


def _standing_tariff(world, per_day_minor: str) -> None:
    """Put the prepaid unit on a flat tariff with this standing charge a day."""
    world.prepaid.tariff = Tariff.objects.create_flat(
        landlord=world.landlord,
        name="S",
        price_per_kwh_minor="30",
        standing_charge_per_day_minor=per_day_minor,
    )
    world.prepaid.save()


def test_standing_charge_is_posted_once_per_day(personas):
    world = personas.a
    _standing_tariff(world, "12.5")
    tenancy = world.prepaid_tenancy
    tenancy.start_date = date(2026, 1, 1)
    tenancy.save()
    assert billing.standing_charges_post(tenancy=tenancy, through=date(2026, 1, 4)) == 50
    assert billing.standing_charges_post(tenancy=tenancy, through=date(2026, 1, 4)) == 0
    # 12.5p a day: 12, 13, 12, 13 with the half penny carried
    amounts = list(
        LedgerTransaction.objects.filter(kind="standing")
        .order_by("pk")
        .values_list("postings__amount_minor", flat=True)
    )
    assert amounts == [12, 13, 12, 13]


def test_sweep_charges_standing_days_through_each_local_today_then_skips_settled_tenancies(
    personas,
):
    import zoneinfo

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    world = personas.a
    _standing_tariff(world, "10")
    world.prepaid.property.timezone = "Pacific/Kiritimati"  # UTC+14
    world.prepaid.property.save()
    tenancy = world.prepaid_tenancy
    now = timezone.now()
    local_today = timezone.localtime(now, zoneinfo.ZoneInfo("Pacific/Kiritimati")).date()
    tenancy.start_date = local_today - timedelta(days=2)
    tenancy.save()
    before = _balance(tenancy)
    billing.billing_sweep(now=now)
    assert _balance(tenancy) == before - 30  # three local days, through local today
    with CaptureQueriesContext(connection) as queries:
        billing.billing_sweep(now=now)
    assert _balance(tenancy) == before - 30
    # Due meters, the time zones, then one query per zone: nothing per tenancy.
    assert len(queries) <= 2 + len({t.unit.property.timezone for t in _active_tenancies()})
    billing.billing_sweep(now=now + timedelta(days=1))
    assert _balance(tenancy) == before - 40


def _active_tenancies():
    from landlord.models import Tenancy

    return list(Tenancy.objects.active().select_related("unit__property"))


# --- postpaid invoice ------------------------------------------------------------


def test_invoice_for_a_closed_month_itemises_bands_tiers_standing_and_tax(postpaid_tou):
    world = postpaid_tou
    dev = world.postpaid_device.device
    # 1 kWh at night (02:00-03:00), then 2 kWh at midday crossing the 2 kWh tier
    _record(dev, (1, 120, 0), (2, 180, 1000), (3, 420, 1000), (4, 660, 1000), base=JAN)
    _record(dev, (5, 720, 1000), (6, 730, 3000), base=JAN)
    invoice = billing.invoice_issue(tenancy=world.postpaid_tenancy, period_start=date(2026, 1, 1))
    lines = [(line.kind, line.description, line.amount_minor) for line in invoice.lines.all()]
    assert lines == [
        ("energy", "Energy", 20),  # 1 kWh at 20p
        ("energy", "Energy, above 2 kWh this month", 30),  # 1 kWh at 30p
        ("energy", "Night", 10),  # 1 kWh at 10p
        ("standing", "Standing charge", 1550),  # 31 days at 50p
        ("tax", "Tax 5%", 80),  # 5% of 1610p = 80.5p, rounded down
        ("rounding", billing.ROUNDING_LINE, 1),
    ]
    # what was posted: usage 63p and standing charges 52.5p a day, whose fraction
    # was carried since 1 Dec (1627p for December, 1628p for January)
    assert invoice.total_minor == 63 + 1628
    assert invoice.energy_wh == 3000
    # issuing again returns the same bill
    again = billing.invoice_issue(tenancy=world.postpaid_tenancy, period_start=date(2026, 1, 1))
    assert again.pk == invoice.pk and Invoice.objects.count() == 1
    # the tenant's account was charged as it went: usage 63p, standing 52.5p a day since 1 Dec
    assert _balance(world.postpaid_tenancy) == -(63 + 52 * 31 + 52 * 31 + 31)


def test_open_period_cannot_be_invoiced(postpaid_tou):
    today = timezone.localdate()
    with pytest.raises(BillingError, match="still open"):
        billing.invoice_issue(
            tenancy=postpaid_tou.postpaid_tenancy, period_start=today.replace(day=1)
        )


def test_invoice_page_for_tenant_and_landlord_only(personas, postpaid_tou):
    invoice = billing.invoice_issue(
        tenancy=postpaid_tou.postpaid_tenancy, period_start=date(2026, 1, 1)
    )
    url = reverse("payments:invoice", args=[invoice.pk])
    client = Client()
    for user, status in [
        (personas.a.postpaid_tenant, 200),
        (personas.a.staff, 200),
        (personas.a.prepaid_tenant, 404),
        (personas.b.staff, 404),
        (personas.b.postpaid_tenant, 404),
    ]:
        client.force_login(user)
        resp = client.get(url)
        assert resp.status_code == status, user
    client.force_login(personas.a.postpaid_tenant)
    body = client.get(url).content.decode()
    assert "Standing charge" in body and "£15.50" in body
    home = client.get(reverse("tenant:home", args=[personas.a.postpaid_tenancy.pk]))
    assert "January 2026" in home.content.decode()


def test_due_invoices_are_issued_for_every_closed_month_not_yet_billed(postpaid_tou):
    # the tenancy runs from 1 Dec 2025: December and January are closed on 3 Feb
    issued = billing.invoices_issue_due(now=datetime(2026, 2, 3, 9, tzinfo=UTC))
    tenancy = postpaid_tou.postpaid_tenancy.pk
    assert [(i.tenancy_id, i.period_start) for i in issued] == [
        (tenancy, date(2025, 12, 1)),
        (tenancy, date(2026, 1, 1)),
    ]
    assert billing.invoices_issue_due(now=datetime(2026, 2, 28, 9, tzinfo=UTC)) == []


def test_months_missed_while_the_billing_task_was_down_are_billed_in_order(postpaid_tou):
    tenancy = postpaid_tou.postpaid_tenancy
    billing.invoices_issue_due(now=datetime(2026, 1, 2, 9, tzinfo=UTC))  # December
    # the task does not run in February nor March; on 2 April it catches up
    issued = billing.invoices_issue_due(now=datetime(2026, 4, 2, 9, tzinfo=UTC))
    assert [i.period_start for i in issued] == [
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
    ]
    starts = list(
        Invoice.objects.filter(tenancy=tenancy)
        .order_by("period_start")
        .values_list("period_start", flat=True)
    )
    assert starts == [date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    # a payment pays the oldest first
    _pay(tenancy, 2000)
    december = Invoice.objects.get(tenancy=tenancy, period_start=date(2025, 12, 1))
    assert allocation.invoice_outstanding_minor(invoice=december) == 0
    assert ledger_verify() == []


# --- emergency credit and debt recovery ---------------------------------------------


def test_emergency_credit_once_then_recovered_from_top_ups(personas, settings):
    settings.SUBMETER = {**settings.SUBMETER, "DEBT_RECOVERY_PERCENT": 25}
    world = personas.a
    tenancy = world.prepaid_tenancy
    with pytest.raises(BillingError, match="not offered"):
        emergency.emergency_credit_take(tenancy=tenancy, actor_id=None)
    world.prepaid.emergency_credit_minor = 500
    world.prepaid.save()
    emergency.emergency_credit_take(tenancy=tenancy, actor_id=world.prepaid_tenant.pk)
    assert _balance(tenancy) == 500
    assert emergency.emergency_debt(tenancy=tenancy) == 500
    with pytest.raises(BillingError, match="already taken"):
        emergency.emergency_credit_take(tenancy=tenancy, actor_id=None)
    # a £10 top-up repays 25% of it: £2.50
    _pay(tenancy, 1000)
    assert _balance(tenancy) == 500 + 1000 - 250
    assert emergency.emergency_debt(tenancy=tenancy) == 250
    # a £20 top-up could repay £5, but only £2.50 is owed
    _pay(tenancy, 2000)
    assert _balance(tenancy) == 1250 + 2000 - 250
    assert emergency.emergency_debt(tenancy=tenancy) == 0
    # repaid: it is offered again only once credit is low
    with pytest.raises(BillingError, match="once your credit is low"):
        emergency.emergency_credit_take(tenancy=tenancy, actor_id=None)


def test_emergency_credit_keeps_the_supply_on(personas):
    world = personas.a
    world.prepaid.emergency_credit_minor = 300
    world.prepaid.save()
    _credit(world, 30)
    _record(world.prepaid_device.device, (1, 0, 0), (2, 2, 2000), base=JAN)  # 60p: -30p
    device = Device.objects.get(pk=world.prepaid_device.device.pk)
    assert device.desired_relay == "off"
    emergency.emergency_credit_take(tenancy=world.prepaid_tenancy, actor_id=None)
    device.refresh_from_db()
    assert device.desired_relay == "on" and _balance(world.prepaid_tenancy) == 270


def test_emergency_credit_button(personas):
    world = personas.a
    world.prepaid.emergency_credit_minor = 500
    world.prepaid.save()
    client = Client()
    client.force_login(world.prepaid_tenant)
    home = reverse("tenant:home", args=[world.prepaid_tenancy.pk])
    assert "Take £5.00 emergency credit" in client.get(home).content.decode()
    url = reverse("payments:emergency_credit", args=[world.prepaid_tenancy.pk])
    resp = client.post(url)
    assert resp.status_code == 302
    body = client.get(home).content.decode()
    assert "Emergency credit added" in body and "Emergency credit to repay: £5.00" in body
    client.post(url)
    assert "already taken" in client.get(home).content.decode()
    assert _balance(world.prepaid_tenancy) == 500
    # another tenant cannot take it for this tenancy
    client.force_login(personas.b.prepaid_tenant)
    assert client.post(url).status_code == 404


# --- reversals and verification ------------------------------------------------------


def test_reversal_mirrors_the_original(personas):
    world = personas.a
    _credit(world, 700)
    txn = LedgerTransaction.objects.get(idempotency_key="opening")
    reversal = billing.ledger_reverse(txn=txn, actor_id=None, reason="entered twice")
    again = billing.ledger_reverse(txn=txn, actor_id=None, reason="entered twice")
    assert again.pk == reversal.pk and reversal.reverses_id == txn.pk
    assert _balance(world.prepaid_tenancy) == 0


class _Rollback(Exception):
    pass


def test_verify_catches_a_reversal_that_does_not_mirror(personas):
    world = personas.a
    _credit(world, 700)
    txn = LedgerTransaction.objects.get(idempotency_key="opening")
    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    try:
        with transaction.atomic():
            ledger_post(
                landlord_id=world.landlord.pk,
                kind=LedgerTransaction.Kind.REVERSAL,
                idempotency_key="bad-reversal",
                legs=[Leg(debit=tenant, credit=clearing, amount_minor=600)],
                reverses=txn,
            )
            problems = ledger_verify()
            raise _Rollback
    except _Rollback:
        pass
    assert any("does not mirror" in p for p in problems)


def test_verify_catches_usage_that_was_lost(personas):
    world = personas.a
    _credit(world, 700)
    _record(world.prepaid_device.device, (1, 0, 0), (2, 1, 1000), base=JAN)
    meter = Meter.objects.get(device=world.prepaid_device.device)
    Meter.objects.filter(pk=meter.pk).update(pending_sub=meter.pending_sub + 1)
    assert any("priced intervals" in p for p in ledger_verify())
    Meter.objects.filter(pk=meter.pk).update(pending_sub=meter.pending_sub)


def test_flagged_page_lists_only_own_flagged_readings(personas):
    _record(personas.a.prepaid_device.device, (1, 0, 6000), (2, 1, 4000), base=JAN)
    _record(personas.b.prepaid_device.device, (1, 0, 6000), (2, 1, 4000), base=JAN)
    client = Client()
    client.force_login(personas.a.staff)
    body = client.get(reverse("landlord:flagged")).content.decode()
    assert body.count('data-rule="negative-delta"') == 1
    assert personas.a.prepaid.name in body
    client.force_login(personas.a.prepaid_tenant)
    assert client.get(reverse("landlord:flagged")).status_code == 404


def test_unit_page_shows_which_tariff_lines_priced_an_interval(personas):
    _record(personas.a.prepaid_device.device, (1, 0, 0), (2, 1, 1000), base=JAN)
    client = Client()
    client.force_login(personas.a.staff)
    url = reverse("landlord:unit", args=[personas.a.prepaid.pk])
    body = client.get(url, {"tab": "details"}).content.decode()
    assert "1000 Wh \u00d7 30/kWh any time" in body


def test_usage_settle_meter_force_posts_everything(personas):
    _credit(personas.a, 10_000)
    dev = personas.a.prepaid_device.device
    base = timezone.now() - timedelta(minutes=3)
    _record(dev, (1, 0, 0), (2, 1, 100), base=base)
    meter = Meter.objects.get(device=dev)
    assert meter.posted_minor == 0
    usage_settle_meter(meter_id=meter.pk, force=True)
    meter.refresh_from_db()
    assert meter.posted_minor == 3  # 100 Wh at 30p


# --- property: any mix of operations keeps every invariant ---------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("topup"), st.integers(100, 5000)),
        st.tuples(st.just("use"), st.integers(0, 3000)),
        st.tuples(st.just("emergency"), st.just(0)),
        st.tuples(st.just("reverse"), st.just(0)),
        st.tuples(st.just("sweep"), st.integers(0, 120)),
    ),
    min_size=1,
    max_size=20,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_property_any_mix_of_operations_keeps_the_ledger_exact(personas, ops):
    world = personas.a
    world.prepaid.emergency_credit_minor = 400
    world.prepaid.save()
    tenancy = world.prepaid_tenancy
    dev = world.prepaid_device.device
    try:
        with transaction.atomic():
            seq, register, minute = 0, 0, 0
            for kind, value in ops:
                if kind == "topup":
                    _pay(tenancy, value)
                elif kind == "use":
                    seq, minute, register = seq + 1, minute + 1 + value // 1500, register + value
                    _record(dev, (seq, minute, register), base=JAN)
                elif kind == "emergency":
                    with contextlib.suppress(BillingError):
                        emergency.emergency_credit_take(tenancy=tenancy, actor_id=None)
                elif kind == "reverse":
                    txn = LedgerTransaction.objects.filter(kind="payment").order_by("-pk").first()
                    if txn is not None:
                        billing.ledger_reverse(txn=txn, actor_id=None, reason="test")
                else:
                    billing.billing_sweep(now=timezone.now() + timedelta(minutes=value))
                assert ledger_verify() == []
                assert emergency.emergency_debt(tenancy=tenancy) >= 0
            raise _Rollback
    except _Rollback:
        pass


def test_a_new_tariff_version_is_seen_by_rating_at_once(personas):
    """Versions are cached per process by the tariff's revision; a change bumps it."""
    world = personas.a
    _credit(world, 10_000)
    dev = world.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 1, 1000), base=JAN)  # 30p
    # a version that would re-price consumption already priced is refused
    with pytest.raises(BillingError, match="already priced"):
        tariffs.tariff_version_create(
            tariff=world.tariff, valid_from=date(2026, 1, 14), rates=[("", 0, Decimal("50"))]
        )
    tariffs.tariff_version_create(
        tariff=world.tariff, valid_from=date(2026, 1, 16), rates=[("", 0, Decimal("50"))]
    )
    _record(dev, (3, 2 * 24 * 60, 2000), base=JAN)  # 16 Jan: 1 kWh, spread over two days
    # the step spans 14 Jan 10:01 to 16 Jan 10:01: a long gap, held, not priced
    _record(dev, (4, 2 * 24 * 60 + 1, 3000), base=JAN)  # 1 kWh on 16 Jan at 50p
    assert Meter.objects.get(device=dev).posted_minor == 80


def test_unit_page_shows_the_intervals_of_any_day(personas):
    dev = personas.a.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 1, 1000), base=JAN)
    _record(dev, (3, 60 * 36, 2000), (4, 60 * 36 + 1, 2100), base=JAN)  # 15 Jan 12:00
    client = Client()
    client.force_login(personas.a.staff)
    url = reverse("landlord:unit", args=[personas.a.prepaid.pk])
    section = (
        client.get(url, {"day": "2026-01-14"})
        .content.decode()
        .split('id="intervals"')[1]
        .split("Relay commands")[0]
    )
    assert "14 Jan 00:00" in section and "<td>15 Jan 12:00</td>" not in section
    section = (
        client.get(url, {"day": "2026-01-15"})
        .content.decode()
        .split('id="intervals"')[1]
        .split("Relay commands")[0]
    )
    assert "<td>15 Jan 12:00</td>" in section and "<td>14 Jan 00:00</td>" not in section
    assert client.get(url, {"day": "not-a-day"}).status_code == 200


def test_back_filled_usage_is_charged_to_the_tenant_of_that_day(personas):
    from django.contrib.auth import get_user_model

    from landlord.models import Tenancy

    world = personas.a
    old = world.prepaid_tenancy
    old.start_date, old.end_date = date(2025, 12, 1), date(2026, 1, 31)
    old.save()
    newcomer = get_user_model().objects.create_user("newcomer")
    new = Tenancy.objects.create(
        landlord=world.landlord, unit=world.prepaid, tenant=newcomer, start_date=date(2026, 2, 1)
    )
    # the meter was offline; its January readings arrive in the new tenancy
    _record(world.prepaid_device.device, (1, 0, 0), (2, 1, 1000), base=JAN)
    assert _balance(old) == -30 and _balance(new) == 0


def _zone(world, name: str) -> None:
    world.prop.timezone = name
    world.prop.save(update_fields=["timezone"])


def test_a_version_may_start_the_day_after_the_last_priced_local_day(personas):
    world = personas.a
    _zone(world, "America/New_York")
    _credit(world, 10_000)
    dev = world.prepaid_device.device
    # 14 Jan 20:00-20:01 in New York is already 15 Jan (01:00) in UTC
    _record(dev, (1, 0, 0), (2, 1, 1000), base=datetime(2026, 1, 15, 1, tzinfo=UTC))
    with pytest.raises(BillingError, match=r"up to 14 Jan 2026 .* on 15 Jan 2026 or later"):
        tariffs.tariff_version_create(
            tariff=world.tariff, valid_from=date(2026, 1, 14), rates=[("", 0, Decimal("50"))]
        )
    tariffs.tariff_version_create(
        tariff=world.tariff, valid_from=date(2026, 1, 15), rates=[("", 0, Decimal("50"))]
    )
    # 15 Jan 09:00 in New York: the new prices
    _record(
        dev, (3, 13 * 60, 1000), (4, 13 * 60 + 1, 2000), base=datetime(2026, 1, 15, 1, tzinfo=UTC)
    )
    assert Meter.objects.get(device=dev).posted_minor == 30 + 50


def test_a_version_may_not_start_on_a_local_day_already_priced(personas):
    world = personas.a
    _zone(world, "Pacific/Auckland")
    _credit(world, 10_000)
    # 14 Jan 21:00 in UTC is already 15 Jan (10:00) in Auckland
    _record(
        world.prepaid_device.device,
        (1, 0, 0),
        (2, 1, 1000),
        base=datetime(2026, 1, 14, 21, tzinfo=UTC),
    )
    with pytest.raises(BillingError, match=r"up to 15 Jan 2026 .* on 16 Jan 2026 or later"):
        tariffs.tariff_version_create(
            tariff=world.tariff, valid_from=date(2026, 1, 15), rates=[("", 0, Decimal("50"))]
        )
    tariffs.tariff_version_create(
        tariff=world.tariff, valid_from=date(2026, 1, 16), rates=[("", 0, Decimal("50"))]
    )


def test_a_tax_inclusive_bill_shows_net_plus_tax_equal_to_the_total(personas):
    world = personas.a
    tariff = Tariff.objects.create(landlord=world.landlord, name="Inclusive", currency="GBP")
    tariffs.tariff_version_create(
        tariff=tariff,
        valid_from=date(2020, 1, 1),
        rates=[("", 0, Decimal("24"))],
        tax_percent=Decimal("20"),
        tax_inclusive=True,
    )
    world.postpaid.tariff = tariff
    world.postpaid.save()
    world.postpaid_tenancy.start_date = date(2025, 12, 1)
    world.postpaid_tenancy.save()
    _record(world.postpaid_device.device, (1, 0, 0), (2, 1, 1000), base=JAN)
    invoice = billing.invoice_issue(tenancy=world.postpaid_tenancy, period_start=date(2026, 1, 1))
    # 1 kWh at 24p including 20% tax: 20p net and 4p tax
    assert (invoice.total_minor, invoice.tax_minor, invoice.net_minor) == (24, 4, 20)


# --- who pays at a tenancy boundary ---------------------------------------------------

BERLIN_FEB_1 = datetime(2026, 1, 31, 23, tzinfo=UTC)  # local midnight starting 1 Feb in Berlin


def _tenancy_ending_31_jan_in_berlin(world):
    _zone(world, "Europe/Berlin")
    old = world.prepaid_tenancy
    old.start_date, old.end_date = date(2026, 1, 1), date(2026, 1, 31)
    old.save()
    return old


def test_a_reading_at_local_midnight_is_charged_to_the_tenancy_whose_last_day_it_ends(personas):
    world = personas.a
    old = _tenancy_ending_31_jan_in_berlin(world)
    # 23:00 to 00:00 on 31 Jan, Berlin time; then the unit stays empty
    _record(world.prepaid_device.device, (1, -60, 0), (2, 0, 1000), base=BERLIN_FEB_1)
    assert _balance(old) == -30
    assert not Account.objects.filter(landlord=world.landlord, kind=Account.Kind.VACANT).exists()


def test_the_next_tenancy_pays_from_its_first_local_midnight(personas):
    from landlord.models import Tenancy

    world = personas.a
    old = _tenancy_ending_31_jan_in_berlin(world)
    new = Tenancy.objects.create(
        landlord=world.landlord,
        unit=world.prepaid,
        tenant=world.postpaid_tenant,
        start_date=date(2026, 2, 1),
    )
    dev = world.prepaid_device.device
    _record(dev, (1, -60, 0), (2, 0, 1000), base=BERLIN_FEB_1)  # 31 Jan 23:00-00:00
    _record(dev, (3, 30, 3000), base=BERLIN_FEB_1)  # 1 Feb 00:00-00:30
    assert (_balance(old), _balance(new)) == (-30, -60)


NEW_YORK_FEB_1 = datetime(2026, 2, 1, 5, tzinfo=UTC)  # local midnight starting 1 Feb in New York


@pytest.mark.parametrize("after", ["next tenant", "vacant"])
def test_a_debit_window_across_a_move_out_charges_each_side_for_its_own_slots(
    personas, settings, monkeypatch, after
):
    from landlord.models import Tenancy

    settings.SUBMETER = {**settings.SUBMETER, "DEBIT_WINDOW_SECONDS": 900}
    world = personas.a
    _zone(world, "America/New_York")
    old = world.prepaid_tenancy
    old.start_date, old.end_date = date(2026, 1, 1), date(2026, 1, 31)
    old.save()
    _credit(world, 10_000)
    new = None
    if after == "next tenant":
        new = Tenancy.objects.create(
            landlord=world.landlord,
            unit=world.prepaid,
            tenant=world.postpaid_tenant,
            start_date=date(2026, 2, 1),
        )
        ledger_post(
            landlord_id=world.landlord.pk,
            kind="adjustment",
            idempotency_key="new-opening",
            legs=[
                Leg(
                    debit=landlord_account(
                        landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP"
                    ),
                    credit=tenant_account(tenancy=new),
                    amount_minor=10_000,
                )
            ],
        )
    # Each frame arrives a minute after it is taken, so one debit window
    # stays open across the move-out at local midnight.
    clock = [NEW_YORK_FEB_1]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    dev = world.prepaid_device.device
    for seq, minute, wh in [(1, -8, 0), (2, -5, 1000), (3, 5, 3000)]:
        clock[0] = NEW_YORK_FEB_1 + timedelta(minutes=minute + 1)
        # 31 Jan 23:52, 23:55 (1 kWh), then 00:05 (2 kWh, half before midnight)
        _record(dev, (seq, minute, wh), base=NEW_YORK_FEB_1)
    meter = Meter.objects.get(device=dev)
    assert meter.pending_sub // billing.rating.SCALE >= 30  # the window is still open
    billing.usage_settle_meter(meter_id=meter.pk, now=NEW_YORK_FEB_1 + timedelta(minutes=30))
    # 2 kWh at 30p before midnight is the former tenant's, 1 kWh after is not
    assert _balance(old) == 10_000 - 60
    if new is not None:
        assert _balance(new) == 10_000 - 30
    else:
        vacant = Account.objects.get(landlord=world.landlord, kind=Account.Kind.VACANT)
        assert vacant.balance_minor == -30
    assert Meter.objects.get(pk=meter.pk).posted_minor == 90
