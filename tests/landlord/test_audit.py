"""Audit rows carry keys (unit, device, tenancy, meter) besides their subject text.

Every service that writes the log goes through ``landlord.audit.audit_record``;
these tests check each kind of row gets its keys, that the unit page finds its
rows by key, and that the migration fills the keys of rows written before.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.utils import timezone

from landlord.audit import audit_record
from landlord.models import AuditEvent
from meters.meter_events import meter_event_record
from meters.models import Device, Meter
from payments import billing, emergency
from payments.models import LedgerTransaction, Payment
from payments.services import payment_create, payment_transition
from supply.overrides import supply_override_release, supply_override_set
from supply.relay import relay_command_issue

from ..factories import make_device

migration = importlib.import_module("landlord.migrations.0005_audit_event_keys")


def _keys(event: AuditEvent) -> tuple[int | None, int | None, int | None, int | None]:
    return event.unit_id, event.device_id, event.tenancy_id, event.meter_id


def _pay(tenancy, amount: int) -> Payment:
    payment = payment_create(
        tenancy=tenancy, amount_minor=amount, provider="dev", created_by_id=None
    )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        payment_transition(
            payment=payment, status=Payment.Status.SUCCEEDED, provider_ref=f"pi_{payment.uuid.hex}"
        )
    return payment


# --- every writer fills the keys ----------------------------------------------------


@pytest.mark.django_db
def test_a_manual_override_is_about_the_unit(personas):
    world = personas.a
    supply_override_set(unit=world.prepaid, state="off", reason="fault", actor_id=world.staff.pk)
    supply_override_release(unit=world.prepaid, actor_id=world.staff.pk)
    for action in ["supply.override.off", "supply.override.release"]:
        event = AuditEvent.objects.get(action=action)
        assert _keys(event) == (world.prepaid.pk, None, None, None)
        assert event.subject == f"unit {world.prepaid.pk} {world.prepaid.name}"


@pytest.mark.django_db
def test_a_relay_command_is_about_the_device_and_its_unit(personas):
    world = personas.a
    device = world.postpaid_device.device
    with transaction.atomic():
        locked = Device.objects.select_for_update().get(pk=device.pk)
        relay_command_issue(device=locked, state="off", reason="test", actor_id=world.staff.pk)
    event = AuditEvent.objects.get(action="relay.off", subject=f"device {device.ident}")
    assert _keys(event) == (world.postpaid.pk, device.pk, None, None)
    assert event.actor_id == world.staff.pk


@pytest.mark.django_db
def test_a_rotated_device_secret_is_about_the_device_and_its_unit(personas):
    device = personas.a.prepaid_device.device
    call_command("device_secret", device.ident, stdout=None, stderr=None)
    event = AuditEvent.objects.get(action="device.secret_rotated")
    assert _keys(event) == (personas.a.prepaid.pk, device.pk, None, None)
    assert event.subject == f"device {device.ident}"


@pytest.mark.django_db
def test_a_payment_credit_is_about_the_tenancy_and_its_unit(personas):
    tenancy = personas.a.prepaid_tenancy
    _pay(tenancy, 1000)
    event = AuditEvent.objects.get(action="payment.credited")
    assert _keys(event) == (tenancy.unit_id, None, tenancy.pk, None)
    assert event.subject == f"tenancy {tenancy.pk}"


@pytest.mark.django_db
def test_emergency_credit_is_about_the_tenancy_and_its_unit(personas):
    world = personas.a
    world.prepaid.emergency_credit_minor = 500
    world.prepaid.save()
    emergency.emergency_credit_take(tenancy=world.prepaid_tenancy, actor_id=None)
    event = AuditEvent.objects.get(action="emergency_credit.taken")
    assert _keys(event) == (world.prepaid.pk, None, world.prepaid_tenancy.pk, None)


@pytest.mark.django_db
def test_a_meter_event_is_about_the_meter_and_its_unit(personas):
    world = personas.a
    meter = Meter.objects.get(device=world.prepaid_device.device)
    meter_event_record(
        meter=meter,
        kind="reset",
        at=timezone.now(),
        old_last_wh=0,
        new_first_wh=0,
        actor_id=world.staff.pk,
        reason="register reset",
    )
    event = AuditEvent.objects.get(action="meter.reset")
    assert _keys(event) == (world.prepaid.pk, None, None, meter.pk)
    assert event.subject == f"meter {meter.serial}"


@pytest.mark.django_db
def test_a_ledger_reversal_keeps_its_transaction_subject_without_keys(personas):
    tenancy = personas.a.prepaid_tenancy
    _pay(tenancy, 1000)
    txn = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.PAYMENT)
    billing.ledger_reverse(txn=txn, actor_id=personas.a.staff.pk, reason="posted twice")
    event = AuditEvent.objects.get(action="ledger.reversed")
    assert event.subject == f"transaction {txn.pk}"
    assert _keys(event) == (None, None, None, None)


@pytest.mark.django_db
def test_audit_record_takes_one_object(personas):
    world = personas.a
    with pytest.raises(ValueError):
        audit_record(
            landlord_id=world.landlord.pk,
            action="x",
            device=world.prepaid_device.device,
            tenancy=world.prepaid_tenancy,
        )
    with pytest.raises(ValueError):
        audit_record(landlord_id=world.landlord.pk, action="x")


# --- the unit page reads its rows by key --------------------------------------------


@pytest.mark.django_db
def test_the_unit_page_shows_its_own_and_its_devices_rows_only(personas):
    world = personas.a
    device = world.prepaid_device.device
    supply_override_set(unit=world.prepaid, state="off", reason="fault", actor_id=world.staff.pk)
    audit_record(landlord_id=world.landlord.pk, action="mark.device", device=device)
    audit_record(
        landlord_id=world.landlord.pk, action="mark.tenancy", tenancy=world.prepaid_tenancy
    )
    audit_record(
        landlord_id=world.landlord.pk, action="mark.meter", meter=Meter.objects.get(device=device)
    )
    audit_record(landlord_id=world.landlord.pk, action="mark.other", unit=world.postpaid)
    client = Client()
    client.force_login(world.staff)
    # Audit rows are on the unit page's details tab.
    page = client.get(f"/landlord/units/{world.prepaid.pk}/?tab=details").content.decode()
    assert "supply.override.off" in page and "mark.device" in page
    # As before the keys: payments, meter events and other units are not listed here.
    assert "mark.tenancy" not in page and "mark.meter" not in page and "mark.other" not in page


# --- the migration fills the keys of older rows -------------------------------------


@pytest.mark.parametrize(
    ("subject", "parsed"),
    [
        ("unit 12 Flat 1", ("unit", 12)),
        ("unit 12", ("unit", 12)),
        ("device dev-a-pre", ("device", "dev-a-pre")),
        ("tenancy 7", ("tenancy", 7)),
        ("meter SER-1", ("meter", "SER-1")),
        ("meter M-dev a", ("meter", "M-dev a")),
        ("transaction 99", None),
        ("tenancy seven", None),
        ("unit 12x", None),
        ("units 12", None),
        ("device ", None),
        ("", None),
    ],
)
def test_the_migration_reads_each_subject_form(subject, parsed):
    assert migration.subject_parse(subject) == parsed


@pytest.mark.django_db
def test_the_migration_fills_keys_from_subjects(personas, monkeypatch):
    a, b = personas.a, personas.b
    device = a.prepaid_device.device
    meter = Meter.objects.get(device=device)
    twin = make_device(a.postpaid, "dev-twin")
    Meter.objects.filter(device=twin.device).update(serial="M-shared")
    make_device(a.postpaid, "dev-twin2")
    Meter.objects.filter(device__ident="dev-twin2").update(serial="M-shared")

    def row(subject, landlord=a):
        return AuditEvent.objects.create(landlord=landlord.landlord, action="old", subject=subject)

    rows = {
        "unit": row(f"unit {a.prepaid.pk} {a.prepaid.name}"),
        "device": row(f"device {device.ident}"),
        "tenancy": row(f"tenancy {a.postpaid_tenancy.pk}"),
        "meter": row(f"meter {meter.serial}"),
        "transaction": row("transaction 1"),
        "missing unit": row("unit 999999 Gone"),
        "other landlord's unit": row(f"unit {a.prepaid.pk} {a.prepaid.name}", landlord=b),
        "other landlord's device": row(f"device {device.ident}", landlord=b),
        "ambiguous meter": row("meter M-shared"),
    }
    already = audit_record(landlord_id=a.landlord.pk, action="new", unit=a.postpaid)
    # Small batches, so more than one is read.
    monkeypatch.setattr(migration, "BATCH", 2)
    migration.audit_keys_fill(apps, SimpleNamespace(connection=connection))
    keys = {name: _keys(AuditEvent.objects.get(pk=r.pk)) for name, r in rows.items()}
    assert keys == {
        "unit": (a.prepaid.pk, None, None, None),
        "device": (a.prepaid.pk, device.pk, None, None),
        "tenancy": (a.postpaid.pk, None, a.postpaid_tenancy.pk, None),
        "meter": (a.prepaid.pk, None, None, meter.pk),
        "transaction": (None, None, None, None),
        "missing unit": (None, None, None, None),
        "other landlord's unit": (None, None, None, None),
        "other landlord's device": (None, None, None, None),
        "ambiguous meter": (None, None, None, None),
    }
    assert _keys(AuditEvent.objects.get(pk=already.pk)) == (a.postpaid.pk, None, None, None)
    # The log is append-only again afterwards.
    with pytest.raises(IntegrityError), transaction.atomic():
        AuditEvent.objects.filter(pk=already.pk).update(reason="changed")
