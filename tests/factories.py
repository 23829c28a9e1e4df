"""Personas and the objects around them, built through the models directly."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from landlord.models import Landlord, Membership, Property, Tenancy, Unit
from meters.models import Alert, Device, Meter
from payments.models import Tariff

User = get_user_model()


@dataclass
class DeviceCreds:
    device: Device
    secret: str

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        token = base64.b64encode(f"{self.device.ident}:{self.secret}".encode())
        return [(b"authorization", b"Basic " + token)]


@dataclass
class LandlordWorld:
    landlord: Landlord
    staff: AbstractBaseUser
    prop: Property
    tariff: Tariff
    prepaid: Unit
    postpaid: Unit
    prepaid_tenant: AbstractBaseUser
    postpaid_tenant: AbstractBaseUser
    prepaid_tenancy: Tenancy
    postpaid_tenancy: Tenancy
    prepaid_device: DeviceCreds
    postpaid_device: DeviceCreds
    extra: dict[str, object] = field(default_factory=dict)


def make_device(unit: Unit, ident: str) -> DeviceCreds:
    secret = secrets.token_urlsafe(16)
    device = Device(landlord=unit.landlord, unit=unit, ident=ident)
    device.set_secret(secret)
    device.save()
    Meter.objects.create(landlord=unit.landlord, unit=unit, device=device, serial=f"M-{ident}")
    return DeviceCreds(device=device, secret=secret)


def make_landlord_world(tag: str, *, price: str = "30") -> LandlordWorld:
    landlord = Landlord.objects.create(name=f"Landlord {tag}")
    staff = User.objects.create_user(f"landlord_{tag}", password="pw")
    Membership.objects.create(landlord=landlord, user=staff, role=Membership.Role.OWNER)
    # Relay-mechanics tests want an immediate cut-off: this property allows
    # disconnection at any time without notice. Protection tests set their own.
    prop = Property.objects.create(
        landlord=landlord,
        name=f"House {tag}",
        currency="GBP",
        cutoff_days="1234567",
        cutoff_start=time(0, 0),
        cutoff_end=time(0, 0),
        cutoff_notice_minutes=0,
    )
    tariff = Tariff.objects.create_flat(
        landlord=landlord, name="Flat", currency="GBP", price_per_kwh_minor=Decimal(price)
    )
    prepaid = Unit.objects.create(
        landlord=landlord,
        property=prop,
        name="Prepaid flat",
        billing_mode=Unit.BillingMode.PREPAID,
        tariff=tariff,
        low_credit_threshold_minor=200,
    )
    postpaid = Unit.objects.create(
        landlord=landlord,
        property=prop,
        name="Postpaid flat",
        billing_mode=Unit.BillingMode.POSTPAID,
        tariff=tariff,
    )
    t1 = User.objects.create_user(f"tenant_{tag}1", password="pw")
    t2 = User.objects.create_user(f"tenant_{tag}2", password="pw")
    ten1 = Tenancy.objects.create(landlord=landlord, unit=prepaid, tenant=t1)
    ten2 = Tenancy.objects.create(landlord=landlord, unit=postpaid, tenant=t2)
    return LandlordWorld(
        landlord=landlord,
        staff=staff,
        prop=prop,
        tariff=tariff,
        prepaid=prepaid,
        postpaid=postpaid,
        prepaid_tenant=t1,
        postpaid_tenant=t2,
        prepaid_tenancy=ten1,
        postpaid_tenancy=ten2,
        prepaid_device=make_device(prepaid, f"dev-{tag}-pre"),
        postpaid_device=make_device(postpaid, f"dev-{tag}-post"),
    )


def make_staff_member(world: LandlordWorld) -> AbstractBaseUser:
    """A member of the world's landlord with the staff role (the world's own user is an owner)."""
    user = User.objects.create_user(f"{world.staff.get_username()}_staff", password="pw")
    Membership.objects.create(landlord=world.landlord, user=user, role=Membership.Role.STAFF)
    return user


def make_former_tenancy(world: LandlordWorld, *, unit: Unit | None = None) -> Tenancy:
    """A tenancy of the world's prepaid unit (or ``unit``) that ended yesterday, with its own tenant."""
    unit = unit or world.prepaid
    today = timezone.localdate()
    tenant = User.objects.create_user(
        f"former_{unit.pk}_{world.staff.get_username()}", password="pw"
    )
    return Tenancy.objects.create(
        landlord=world.landlord,
        unit=unit,
        tenant=tenant,
        start_date=today - timedelta(days=90),
        end_date=today - timedelta(days=1),
    )


def tenant_alert(world: Any, kind: str) -> Alert:
    """An alert to the prepaid tenant of a persona world; an event (cut-off warning,
    supply restored) is born cleared, as ``supply.alerts`` raises it."""
    now = timezone.now()
    return Alert.objects.create(
        landlord=world.landlord,
        unit=world.prepaid,
        tenancy=world.prepaid_tenancy,
        kind=kind,
        audience=Alert.Audience.TENANT,
        subject_key=f"tenancy:{world.prepaid_tenancy.pk}",
        message=f"{kind} text",
        created_at=now,
        cleared_at=now if kind in (Alert.Kind.CUTOFF_WARNING, Alert.Kind.SUPPLY_RESTORED) else None,
    )
