"""Moving a device and its meter to another unit (meters.meter_events.meter_move and
its page): energy up to the move is billed where the meter was, later energy where it
went; refusals change nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from landlord.models import AuditEvent, Unit
from meters.meter_events import MeterMoveError, meter_move
from meters.models import Device, Meter, MeterEvent, Reading
from meters.readings import ReadingInput, readings_record
from payments.ledger import ledger_verify, tenant_account


def _vacant(world, name="Flat 9") -> Unit:
    return Unit.objects.create(
        landlord=world.landlord, property=world.prop, name=name, tariff=world.tariff
    )


def _read(device: Device, *readings: tuple[int, timedelta, int]) -> None:
    now = timezone.now()
    readings_record(
        device_id=device.pk,
        readings=[
            ReadingInput(seq=s, taken_at=now - ago, register_wh=wh) for s, ago, wh in readings
        ],
    )


def test_a_moved_meter_bills_each_unit_its_own_energy(personas):
    world = personas.a
    device = world.prepaid_device.device
    target = _vacant(world)
    _read(device, (1, timedelta(minutes=30), 1000), (2, timedelta(minutes=20), 2000))

    event = meter_move(
        device=device,
        to_unit=target,
        at=timezone.now() - timedelta(minutes=10),
        register_wh=2500,
        actor_id=world.staff.pk,
        reason="tenant asked for the meter in the new flat",
    )

    device.refresh_from_db()
    assert device.unit == target
    new = Meter.objects.installed().get(device=device)
    assert event.kind == MeterEvent.Kind.MOVE and event.new_meter == new
    assert new.unit == target and new.last_register_wh == 2500
    old = event.meter
    old.refresh_from_db()
    assert old.unit == world.prepaid and old.removed_at == event.at
    # 1.5 kWh at 30p, all of it the prepaid tenant's
    assert tenant_account(tenancy=world.prepaid_tenancy).balance_minor == -45
    assert AuditEvent.objects.get(action="meter.move").actor == world.staff
    assert AuditEvent.objects.get(action="meter.move_in").unit == target

    # later readings belong to the new unit's meter and not to the former tenant
    _read(device, (3, timedelta(minutes=5), 3500))
    assert Reading.objects.get(seq=3).meter == new
    assert tenant_account(tenancy=world.prepaid_tenancy).balance_minor == -45
    assert ledger_verify() == []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("same unit", "already"),
        ("other landlord", "not one of yours"),
        ("unit with a meter", "has meter M-dev-a-post on device dev-a-post already"),
        ("future", "in the future"),
        ("below latest", "below the meter's latest reading"),
        ("negative", "cannot be negative"),
    ],
)
def test_a_refused_move_changes_nothing(personas, case, message):
    world = personas.a
    device = world.prepaid_device.device
    _read(device, (1, timedelta(minutes=30), 1000))
    kwargs: dict[str, Any] = {
        "to_unit": _vacant(world),
        "at": timezone.now() - timedelta(minutes=1),
        "register_wh": 1200,
    }
    if case == "same unit":
        kwargs["to_unit"] = world.prepaid
    elif case == "other landlord":
        kwargs["to_unit"] = personas.b.postpaid
    elif case == "unit with a meter":
        kwargs["to_unit"] = world.postpaid
    elif case == "future":
        kwargs["at"] = timezone.now() + timedelta(hours=1)
    elif case == "below latest":
        kwargs["register_wh"] = 900
    elif case == "negative":
        kwargs["register_wh"] = -1
    with pytest.raises(MeterMoveError, match=message):
        meter_move(device=device, actor_id=None, reason="test", **kwargs)
    device.refresh_from_db()
    assert device.unit == world.prepaid
    assert not MeterEvent.objects.exists()
    assert Meter.objects.installed().get(device=device).unit == world.prepaid


def test_staff_move_a_meter_from_the_devices_page(everyone):
    world = everyone.a
    device = world.prepaid_device.device
    target = _vacant(world)
    client = Client()
    client.force_login(everyone.a_staff)
    url = reverse("landlord:people:device_move", args=[world.prepaid.pk, device.pk])
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert f'value="{target.pk}"' in body
    assert f'value="{everyone.b.postpaid.pk}"' not in body  # only the landlord's own units
    devices = client.get(reverse("landlord:people:devices", args=[world.prepaid.pk]))
    assert url in devices.content.decode()

    form = {"at": "2000-01-01T00:00", "register": "1.5", "reason": "rewired"}
    # another landlord's unit is not a choice: nothing moves, the form keeps the input
    resp = client.post(url, {**form, "to_unit": str(everyone.b.postpaid.pk)})
    assert resp.status_code == 400 and 'value="rewired"' in resp.content.decode()
    resp = client.post(url, {**form, "to_unit": str(target.pk)})

    assert resp.status_code == 302
    assert resp["Location"] == reverse("landlord:people:devices", args=[target.pk])
    device.refresh_from_db()
    assert device.unit == target
    moved = client.get(resp["Location"]).content.decode()
    assert "Meter moved to another unit" in moved
