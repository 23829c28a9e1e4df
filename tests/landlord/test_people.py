"""Registering devices, invitations, move-in and move-out, and the prepaid/postpaid
switch, through their services: refusals change nothing, and the ledger verifies
after every change of money."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.utils import timezone

from landlord import people
from landlord.models import AuditEvent, Invitation, Tenancy, Unit
from meters.devices import (
    DeviceRegistrationError,
    device_authenticate,
    device_register,
    device_secret_rotate,
)
from meters.models import Device, Meter, Protocol
from meters.readings import ReadingInput, readings_record
from payments.ledger import Leg, landlord_account, ledger_post, ledger_verify, tenant_account
from payments.models import Account, Invoice

User = get_user_model()


def _vacant_unit(world, name="Vacant flat") -> Unit:
    return Unit.objects.create(
        landlord=world.landlord, property=world.prop, name=name, tariff=world.tariff
    )


def _credit(tenancy: Tenancy, amount: int) -> None:
    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency="GBP"
    )
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="adjustment",
        idempotency_key=f"test-credit-{tenancy.pk}-{amount}",
        legs=[Leg(debit=clearing, credit=tenant_account(tenancy=tenancy), amount_minor=amount)],
    )


def _use(device: Device, wh: int) -> None:
    """Two readings in the last half hour, ``wh`` apart."""
    now = timezone.now()
    readings_record(
        device_id=device.pk,
        readings=[
            ReadingInput(seq=1, taken_at=now - timedelta(minutes=20), register_wh=1000),
            ReadingInput(seq=2, taken_at=now - timedelta(minutes=5), register_wh=1000 + wh),
        ],
    )


# --- devices ----------------------------------------------------------------------------


def test_register_creates_device_and_meter_and_shows_a_working_secret(personas):
    unit = _vacant_unit(personas.a)
    device, secret = device_register(
        unit=unit,
        ident="shellyplus1pm-a8032ab12345",
        protocol=Protocol.SHELLY,
        serial="",
        actor_id=personas.a.staff.pk,
    )
    assert device.unit == unit and device.landlord == personas.a.landlord
    assert device.protocol == Protocol.SHELLY
    assert Meter.objects.installed().get(unit=unit).device == device
    assert secret not in device.secret_hash
    assert device_authenticate(ident=device.ident, secret=secret) == device
    event = AuditEvent.objects.get(action="device.registered")
    assert event.actor == personas.a.staff and event.subject == f"device {device.ident}"


def test_a_unit_with_a_meter_is_refused(personas):
    with pytest.raises(DeviceRegistrationError, match="already has meter"):
        device_register(unit=personas.a.prepaid, ident="fresh-1", protocol="native", actor_id=None)
    assert not Device.objects.filter(ident="fresh-1").exists()


def test_an_ident_in_use_is_refused_even_another_landlords(personas):
    unit = _vacant_unit(personas.a)
    taken = personas.b.prepaid_device.device.ident
    with pytest.raises(DeviceRegistrationError, match="already registered"):
        device_register(unit=unit, ident=taken, protocol="native", actor_id=None)
    assert not Meter.objects.filter(unit=unit).exists()


@pytest.mark.parametrize("ident", ["", "a:b", "a/b", "x" * 65, " spaced id"])
def test_an_ident_a_device_cannot_send_is_refused(personas, ident):
    with pytest.raises(DeviceRegistrationError):
        device_register(
            unit=_vacant_unit(personas.a), ident=ident, protocol="native", actor_id=None
        )
    assert not Device.objects.filter(unit__name="Vacant flat").exists()


def test_rotating_a_secret_refuses_the_old_one(personas):
    creds = personas.a.prepaid_device
    new = device_secret_rotate(device=creds.device, actor_id=personas.a.staff.pk)
    assert device_authenticate(ident=creds.device.ident, secret=creds.secret) is None
    assert device_authenticate(ident=creds.device.ident, secret=new) == creds.device
    assert AuditEvent.objects.get(action="device.secret_rotated").actor == personas.a.staff


# --- invitations ----------------------------------------------------------------------


def _invite(personas, django_capture_on_commit_callbacks, **kw) -> Invitation:
    with django_capture_on_commit_callbacks(execute=True):
        return people.invitation_create(
            unit=kw.get("unit") or _vacant_unit(personas.a),
            email=kw.get("email", "New.Tenant@example.com"),
            move_in=kw.get("move_in", timezone.localdate()),
            site_url="https://submeter.example.com/",
            actor_id=personas.a.staff.pk,
        )


def _token_from_mail() -> str:
    body = mail.outbox[-1].body
    link = next(line for line in body.splitlines() if "/invite/" in line)
    return link.rstrip("/").rsplit("/", 1)[1]


def test_invitation_is_emailed_then_accepted_once(personas, django_capture_on_commit_callbacks):
    invitation = _invite(personas, django_capture_on_commit_callbacks)
    assert mail.outbox[-1].to == ["new.tenant@example.com"]
    token = _token_from_mail()
    assert "https://submeter.example.com/invite/" in mail.outbox[-1].body

    tenancy = people.invitation_accept(token=token, password="a-long-pass-phrase-9")

    assert tenancy.unit == invitation.unit and tenancy.start_date == invitation.move_in
    assert tenancy.tenant.check_password("a-long-pass-phrase-9")
    assert tenancy.tenant.email == "new.tenant@example.com"
    invitation.refresh_from_db()
    assert invitation.used_at is not None and invitation.tenancy == tenancy
    with pytest.raises(people.InvitationInvalid, match="already used"):
        people.invitation_accept(token=token, password="another-long-pass-7")
    assert Tenancy.objects.filter(unit=invitation.unit).count() == 1


def test_an_expired_invitation_creates_nothing(
    personas, django_capture_on_commit_callbacks, monkeypatch
):
    invitation = _invite(personas, django_capture_on_commit_callbacks)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 8 * 86400)
    token = people.invitation_token(invitation)
    monkeypatch.setattr(time, "time", real)
    users = User.objects.count()
    with pytest.raises(people.InvitationInvalid, match="expired"):
        people.invitation_accept(token=token, password="a-long-pass-phrase-9")
    assert User.objects.count() == users
    assert not Tenancy.objects.filter(unit=invitation.unit).exists()


def test_a_tampered_invitation_creates_nothing(personas, django_capture_on_commit_callbacks):
    invitation = _invite(personas, django_capture_on_commit_callbacks)
    token = people.invitation_token(invitation)
    forged = signing.dumps({"invitation": invitation.pk}, salt="another.salt")
    for bad in (token[:-3] + "abc", forged, "nonsense"):
        with pytest.raises(people.InvitationInvalid, match="not a valid invitation"):
            people.invitation_accept(token=bad, password="a-long-pass-phrase-9")
    assert not Tenancy.objects.filter(unit=invitation.unit).exists()


def test_a_weak_password_is_refused_with_the_validators_words(
    personas, django_capture_on_commit_callbacks
):
    invitation = _invite(personas, django_capture_on_commit_callbacks)
    with pytest.raises(people.PeopleError, match="too short"):
        people.invitation_accept(token=people.invitation_token(invitation), password="abc")
    assert not User.objects.filter(email=invitation.email).exists()


def test_inviting_to_a_let_unit_is_refused(personas, django_capture_on_commit_callbacks):
    with pytest.raises(people.PeopleError, match="Record their move-out first"):
        _invite(personas, django_capture_on_commit_callbacks, unit=personas.a.prepaid)
    assert not Invitation.objects.exists()
    assert mail.outbox == []


# --- move-in and move-out ----------------------------------------------------------


def test_move_in_reading_becomes_the_baseline_of_a_meter_without_readings(personas):
    tenancy = personas.a.prepaid_tenancy
    done = people.tenancy_move_in(tenancy=tenancy, opening_wh=52_000, actor_id=None)
    assert done.baseline
    meter = Meter.objects.get(device=personas.a.prepaid_device.device)
    assert meter.rated_register_wh == 52_000 and meter.last_register_wh == 52_000
    tenancy.refresh_from_db()
    assert tenancy.opening_wh == 52_000


def test_move_in_reading_leaves_a_read_meter_alone(personas):
    _use(personas.a.prepaid_device.device, 100)
    done = people.tenancy_move_in(tenancy=personas.a.prepaid_tenancy, opening_wh=5, actor_id=None)
    assert not done.baseline
    assert done.latest_wh == 1100
    assert Meter.objects.get(device=personas.a.prepaid_device.device).last_register_wh == 1100


def test_move_out_before_move_in_is_refused(personas):
    tenancy = personas.a.prepaid_tenancy
    with pytest.raises(people.PeopleError, match="before the move-in date"):
        people.tenancy_move_out(
            tenancy=tenancy,
            end_date=tenancy.start_date - timedelta(days=1),
            closing_wh=10,
            actor_id=None,
        )
    tenancy.refresh_from_db()
    assert tenancy.end_date is None


def test_closing_reading_below_opening_is_refused(personas):
    tenancy = personas.a.prepaid_tenancy
    people.tenancy_move_in(tenancy=tenancy, opening_wh=5000, actor_id=None)
    with pytest.raises(people.PeopleError, match="below the opening reading"):
        people.tenancy_move_out(
            tenancy=tenancy, end_date=timezone.localdate(), closing_wh=4999, actor_id=None
        )
    tenancy.refresh_from_db()
    assert tenancy.end_date is None and tenancy.closing_wh is None


def test_prepaid_move_out_leaves_the_credit_owed_to_the_tenant(personas):
    tenancy = personas.a.prepaid_tenancy
    _credit(tenancy, 1000)
    _use(personas.a.prepaid_device.device, 1000)  # 1 kWh at 30p
    people.tenancy_move_out(
        tenancy=tenancy, end_date=timezone.localdate(), closing_wh=2000, actor_id=None
    )
    statement = people.final_statement(tenancy=Tenancy.objects.get(pk=tenancy.pk))
    assert statement.balance_minor == 970
    assert statement.owed_to_tenant_minor == 970 and statement.owed_by_tenant_minor == 0
    assert statement.invoices == []
    assert Tenancy.objects.get(pk=tenancy.pk).end_date == timezone.localdate()
    assert AuditEvent.objects.get(action="tenancy.moved_out").data["balance_minor"] == 970
    assert ledger_verify() == []


def test_postpaid_move_out_issues_the_closing_bill(personas):
    tenancy = personas.a.postpaid_tenancy
    _use(personas.a.postpaid_device.device, 2000)  # 2 kWh at 30p
    people.tenancy_move_out(
        tenancy=tenancy, end_date=timezone.localdate(), closing_wh=3000, actor_id=None
    )
    invoice = Invoice.objects.get(tenancy=tenancy)
    assert invoice.period_end == timezone.localdate() + timedelta(days=1)
    assert invoice.total_minor == 60
    assert tenant_account(tenancy=tenancy).balance_minor == -60
    assert people.final_statement(tenancy=tenancy).owed_by_tenant_minor == 60
    assert ledger_verify() == []


def test_an_ended_tenancy_cannot_move_out_again(everyone):
    with pytest.raises(people.PeopleError, match="ended on"):
        people.tenancy_move_out(
            tenancy=everyone.former_tenancy,
            end_date=timezone.localdate(),
            closing_wh=1,
            actor_id=None,
        )


# --- prepaid and postpaid -----------------------------------------------------------


def test_prepaid_to_postpaid_carries_the_credit(personas):
    tenancy = personas.a.prepaid_tenancy
    _credit(tenancy, 1500)
    _use(personas.a.prepaid_device.device, 1000)
    switch = people.unit_billing_mode_switch(
        unit=personas.a.prepaid, mode="postpaid", confirmed=False, actor_id=personas.a.staff.pk
    )
    assert switch.balance_minor == 1470 and switch.invoice is None
    assert Unit.objects.get(pk=personas.a.prepaid.pk).billing_mode == "postpaid"
    assert tenant_account(tenancy=tenancy).balance_minor == 1470
    event = AuditEvent.objects.get(action="unit.billing_mode_switched")
    assert event.actor == personas.a.staff and event.data["to"] == "postpaid"
    assert ledger_verify() == []


def test_postpaid_to_prepaid_needs_confirmation(personas):
    with pytest.raises(people.PeopleError, match="Confirm"):
        people.unit_billing_mode_switch(
            unit=personas.a.postpaid, mode="prepaid", confirmed=False, actor_id=None
        )
    assert Unit.objects.get(pk=personas.a.postpaid.pk).billing_mode == "postpaid"
    assert not Invoice.objects.exists()


def test_postpaid_to_prepaid_bills_the_open_period_and_keeps_the_debt(personas):
    tenancy = personas.a.postpaid_tenancy
    _use(personas.a.postpaid_device.device, 2000)
    switch = people.unit_billing_mode_switch(
        unit=personas.a.postpaid, mode="prepaid", confirmed=True, actor_id=None
    )
    assert switch.invoice == Invoice.objects.get(tenancy=tenancy)
    assert switch.invoice.total_minor == 60
    assert switch.balance_minor == -60
    unit = Unit.objects.get(pk=personas.a.postpaid.pk)
    assert unit.billing_mode == "prepaid"
    # No credit on a prepaid unit: the supply rules act at once (this property: no notice).
    device = Device.objects.get(pk=personas.a.postpaid_device.device.pk)
    assert device.desired_relay == "off"
    assert ledger_verify() == []


def test_switching_to_the_same_mode_is_refused(personas):
    with pytest.raises(people.PeopleError, match="already"):
        people.unit_billing_mode_switch(
            unit=personas.a.prepaid, mode="prepaid", confirmed=True, actor_id=None
        )
