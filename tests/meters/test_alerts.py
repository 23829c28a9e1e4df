"""Alerts: hysteresis, no repeats, runway in clock time, offline, restored; live, email, device."""

from __future__ import annotations

import contextlib
import json
import zoneinfo
from datetime import datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from django.core import mail
from django.utils import timezone

from meters.devices import device_presence
from meters.models import Alert, Device
from meters.readings import ReadingInput, readings_record
from supply.alerts import clock, runway_forecast, runway_message
from supply.decision import supply_evaluate, supply_reconcile
from supply.protections import Protections
from supply.reports import relay_report
from tests.wsutil import FakeDevice, browser_communicator, device_communicator

from .test_protections import _protect, _set_balance

LONDON = zoneinfo.ZoneInfo("Europe/London")


def _low_credit_alerts(tenancy):
    return Alert.objects.filter(subject_key=f"tenancy:{tenancy.pk}", kind="low_credit")


@pytest.mark.django_db
def test_low_credit_alert_has_hysteresis_and_never_repeats(
    personas, django_capture_on_commit_callbacks
):
    world = personas.a
    world.prepaid_tenant.email = "tenant@example.com"
    world.prepaid_tenant.save()
    tenancy = world.prepaid_tenancy  # threshold 200, re-arm margin 100

    def evaluate(*balances: int) -> None:
        # Each evaluation commits on its own, so its email goes before the next change.
        for balance in balances:
            with django_capture_on_commit_callbacks(execute=True):
                _set_balance(tenancy, balance)
                supply_evaluate(unit=world.prepaid, reason="test")

    evaluate(1000, 150, 100, 150, 220, 150, 299)
    assert _low_credit_alerts(tenancy).count() == 1
    evaluate(300, 150)  # cleared past the margin, then low again
    alerts = list(_low_credit_alerts(tenancy).order_by("pk"))
    assert len(alerts) == 2 and alerts[0].cleared_at is not None and alerts[1].cleared_at is None
    assert "£1.50 left" in alerts[1].message
    low_mails = [m for m in mail.outbox if m.subject.startswith("Low credit")]
    assert len(low_mails) == 2 and low_mails[0].to == ["tenant@example.com"]


def test_runway_message_knows_the_protected_hours():
    thursday_evening = datetime(2026, 11, 26, 17, 55, tzinfo=LONDON)
    text = runway_message(runs_out=thursday_evening, protections=Protections())
    # Runs out Thu ~18:00; a day's notice ends Fri 17:55, after the window: Monday 09:00.
    assert text == (
        "At current usage your credit lasts until Thu ~18:00; "
        "the supply could be switched off from Mon 09:00."
    )
    protected = runway_message(runs_out=thursday_evening, protections=Protections(vulnerable=True))
    assert protected.endswith("protected from automatic disconnection.")


def test_runway_forecast_in_clock_time():
    now = datetime(2026, 11, 24, 12, 0, tzinfo=LONDON)
    # 1 kW at 30p/kWh costs 30p an hour: £3.00 lasts ten hours.
    runs_out = runway_forecast(balance_minor=300, power_w=1000, price_per_kwh_minor=30, now=now)
    assert runs_out == now + timedelta(hours=10)
    assert clock(runs_out, "Europe/London", approx=True) == "Tue ~22:00"
    assert runway_forecast(balance_minor=300, power_w=None, price_per_kwh_minor=30, now=now) is None


@pytest.mark.django_db
def test_low_runway_alert_from_recent_usage(personas):
    world = personas.a
    _protect(world)  # the default window and a day's notice
    _set_balance(world.prepaid_tenancy, 5000)
    base = timezone.now() - timedelta(minutes=30)
    readings_record(
        device_id=world.prepaid_device.device.pk,
        readings=[
            ReadingInput(seq=1, taken_at=base, register_wh=0),
            ReadingInput(seq=2, taken_at=base + timedelta(minutes=30), register_wh=1000),
        ],
    )  # 2 kW at 30p/kWh = 60p/h; about £49.70 left lasts ~83 h: no alert yet
    assert not Alert.objects.filter(kind="low_runway").exists()
    _set_balance(world.prepaid_tenancy, 1200)  # 20 h
    supply_evaluate(unit=world.prepaid, reason="test")
    alert = Alert.objects.get(kind="low_runway")
    assert "credit lasts until" in alert.message and "switched off from" in alert.message
    supply_evaluate(unit=world.prepaid, reason="test")
    assert Alert.objects.filter(kind="low_runway").count() == 1


@pytest.mark.django_db
def test_device_offline_alert_to_the_landlord_once_then_cleared(
    personas, django_capture_on_commit_callbacks
):
    world = personas.a
    world.staff.email = "owner@example.com"
    world.staff.save()
    device = world.prepaid_device.device
    Device.objects.filter(pk=device.pk).update(last_seen_at=timezone.now() - timedelta(minutes=5))
    Device.objects.exclude(pk=device.pk).update(last_seen_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        supply_reconcile()
        supply_reconcile()
    alert = Alert.objects.get(kind="device_offline")
    assert alert.audience == "landlord" and device.ident in alert.message
    assert [m.to for m in mail.outbox] == [["owner@example.com"]]
    device_presence(device_id=device.pk, connected=True)
    assert Alert.objects.get(pk=alert.pk).cleared_at is not None


@pytest.mark.django_db
def test_offline_check_does_not_revisit_devices_already_alerted(personas):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from supply.alerts import device_offline_check

    now = timezone.now()
    Device.objects.update(last_seen_at=now - timedelta(minutes=5))
    assert device_offline_check(now=now) == Device.objects.count()
    with CaptureQueriesContext(connection) as queries:
        assert device_offline_check(now=now) == 0
    assert len(queries) == 1  # the one query that finds nobody new


@pytest.mark.django_db
def test_supply_restored_alert_when_the_relay_reports_on_again(personas):
    world = personas.a
    device = world.prepaid_device.device
    relay_report(device_id=device.pk, state="off", generation=0)
    assert not Alert.objects.filter(kind="supply_restored").exists()
    _set_balance(world.prepaid_tenancy, 1000)
    relay_report(device_id=device.pk, state="on", generation=5)
    assert Alert.objects.get(kind="supply_restored").message == "Your supply is back on."


@pytest.mark.django_db(transaction=True)
async def test_alerts_reach_the_meter_display_once_and_the_tenant_page_live(tpersonas):
    world = tpersonas.a
    await database_sync_to_async(_set_balance)(world.prepaid_tenancy, 500)
    client_session = await database_sync_to_async(_session_for)(world.prepaid_tenant)
    page = browser_communicator(f"/ws/live/tenancy/{world.prepaid_tenancy.pk}/", client_session)
    assert (await page.connect())[0]
    await page.receive_from(timeout=5)  # the snapshot
    comm = device_communicator(world.prepaid_device.headers)
    assert (await comm.connect())[0]
    dev = FakeDevice(comm)
    await dev.boot()
    # Readings a minute apart per seq: about 3 kW, plausible.
    await dev.readings((1, 0), (200, 10000))  # 10 kWh at 30p: £2.00 left, not below £2.00
    await dev.readings((260, 11000))  # £1.70 left: low credit
    for _ in range(100):
        if any(n["kind"] == "low_credit" for n in dev.notifications):
            break
        with contextlib.suppress(TimeoutError):
            await dev.next_frame(timeout=0.1)
    kinds = [n["kind"] for n in dev.notifications]
    assert "low_credit" in kinds
    note = next(n for n in dev.notifications if n["kind"] == "low_credit")
    assert note["level"] == "warning" and note["beep"] is True and "Low credit" in note["message"]
    alert = await database_sync_to_async(Alert.objects.get)(pk=note["id"])
    for _ in range(50):
        alert = await database_sync_to_async(Alert.objects.get)(pk=note["id"])
        if alert.device_notified_at:
            break
        await dev.comm.receive_nothing(timeout=0.05)
    assert alert.device_notified_at is not None
    # The tenant's live page re-rendered with the alert.
    seen = ""
    for _ in range(20):
        if await page.receive_nothing(timeout=0.1):
            continue
        seen += await page.receive_from(timeout=5)
        if "Low credit" in seen:
            break
    assert "Low credit" in seen
    await comm.disconnect()
    # Reconnecting does not show it again.
    comm2 = device_communicator(world.prepaid_device.headers)
    assert (await comm2.connect())[0]
    dev2 = FakeDevice(comm2)
    await dev2.boot()
    with pytest.raises(TimeoutError):
        await dev2.next_frame(timeout=0.5)
    assert not [n for n in dev2.notifications if n["id"] == note["id"]]
    await comm2.disconnect()
    await page.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_alert_raised_while_the_meter_was_offline_shows_when_it_connects(tpersonas):
    world = tpersonas.a

    def raise_alert() -> Alert:
        return Alert.objects.create(
            landlord=world.landlord,
            unit=world.prepaid_device.device.unit,
            tenancy=world.prepaid_tenancy,
            kind=Alert.Kind.LOW_CREDIT,
            audience=Alert.Audience.TENANT,
            subject_key=f"tenancy:{world.prepaid_tenancy.pk}",
            message="Low credit: £1.50 left",
        )

    alert = await database_sync_to_async(raise_alert)()
    comm = device_communicator(world.prepaid_device.headers)
    assert (await comm.connect())[0]
    dev = FakeDevice(comm)
    for _ in range(50):  # no boot: the socket itself finds the work
        if dev.notifications:
            break
        with contextlib.suppress(TimeoutError):
            await dev.next_frame(timeout=0.1)
    assert [n["id"] for n in dev.notifications] == [alert.pk]
    await comm.disconnect()


def _session_for(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.mark.django_db(transaction=True)
async def test_a_meter_without_a_display_answers_notify_with_an_error_and_is_not_asked_again(
    tpersonas,
):
    world = tpersonas.a
    await database_sync_to_async(_set_balance)(world.prepaid_tenancy, 100)  # below £2.00
    comm = device_communicator(world.prepaid_device.headers)
    assert (await comm.connect())[0]
    dev = FakeDevice(comm)
    dev.pass_notify = True
    await dev.boot()  # the first sight of the device evaluates the unit: low credit

    def notify_calls():
        return [f for f in dev.server_calls if f[2] == "Notify"]

    while not notify_calls():
        await dev.next_frame()
    frame = notify_calls()[0]
    await dev.send_raw(json.dumps([4, frame[1], "NotSupported", "no display", {}]))
    for _ in range(50):
        alert = await database_sync_to_async(Alert.objects.get)(pk=frame[3]["id"])
        if alert.device_notified_at:
            break
        await comm.receive_nothing(timeout=0.05)
    assert alert.device_notified_at is not None
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_shelly_device_cannot_use_the_native_endpoint(tpersonas):
    world = tpersonas.a
    device = world.prepaid_device.device
    await database_sync_to_async(Device.objects.filter(pk=device.pk).update)(protocol="shelly")
    comm = device_communicator(world.prepaid_device.headers)
    assert (await comm.connect())[0]
    closed = await comm.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4401


def test_no_runway_forecast_once_the_credit_has_run_out(personas):
    from django.utils import timezone

    from meters.models import Alert
    from supply.alerts import tenancy_alerts_evaluate
    from supply.cutoff import protections_for

    world = personas.a
    now = timezone.now()
    Alert.objects.create(
        landlord=world.landlord,
        unit=world.prepaid,
        tenancy=world.prepaid_tenancy,
        kind=Alert.Kind.LOW_RUNWAY,
        audience=Alert.Audience.TENANT,
        subject_key=f"tenancy:{world.prepaid_tenancy.pk}",
        created_at=now,
        message="lasts until Fri ~22:00",
    )
    tenancy_alerts_evaluate(
        tenancy=world.prepaid_tenancy,
        unit=world.prepaid,
        balance_minor=-28,
        protections=protections_for(unit=world.prepaid, tenancy=world.prepaid_tenancy),
        now=now,
    )
    assert not Alert.objects.filter(kind=Alert.Kind.LOW_RUNWAY, cleared_at__isnull=True).exists()
