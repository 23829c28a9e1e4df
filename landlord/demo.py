"""Demo data for the single-process default: one landlord, six units, a tenant each."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from meters.devices import simulated_device_prepare
from meters.models import Device, Meter, Protocol
from meters.simulator import SimDevice
from payments.models import Payment, PaymentEvent, Tariff
from payments.providers import DevelopmentProvider
from payments.services import payment_event_process
from payments.tariffs import tariff_version_create

from .models import Landlord, Membership, Property, Tenancy, Unit

DEMO_PASSWORD = "demo-pass-2026"
LANDLORD_NAME = "Demo Lettings"
# A second landlord with nothing set up, to try the onboarding from the start.
NEW_LANDLORD_NAME = "New Lettings"
NEW_LANDLORD_USER = "newlandlord"

# (unit, mode, opening credit in pence, simulated power in W)
UNITS = [
    ("Flat 1", Unit.BillingMode.PREPAID, 30, 3000),
    ("Flat 2", Unit.BillingMode.PREPAID, 400, 1500),
    ("Flat 3", Unit.BillingMode.POSTPAID, 0, 1200),
    ("Flat 4", Unit.BillingMode.PREPAID, 1500, 800),
    ("Flat 5", Unit.BillingMode.POSTPAID, 0, 2200),
    ("Flat 6", Unit.BillingMode.PREPAID, 250, 1000),
]
# One real second simulates twenty, so balances move visibly; 3 kW x 20 stays
# under the plausible-power limit, so no demo reading is flagged as a spike.
SPEED = 20.0


# Flat 3 is on a day/night tariff, Flat 5 on a block tariff; the rest prepaid flat.
TARIFF_OF = {"Flat 3": "day-night", "Flat 5": "block"}


def _demo_tariffs(landlord: Landlord) -> dict[str, Tariff]:
    """Sensible UK-style tariffs, VAT (5%) included in the prices."""
    vat: dict[str, Any] = {"tax_percent": Decimal("5"), "tax_inclusive": True}
    since = date(2025, 1, 1)
    prepaid = Tariff.objects.create(landlord=landlord, name="Prepaid standard", currency="GBP")
    tariff_version_create(tariff=prepaid, valid_from=since, rates=[("", 0, Decimal("28.5"))], **vat)
    # A price change already announced: from the first of next month.
    first_next = (timezone.localdate().replace(day=1) + timedelta(days=32)).replace(day=1)
    tariff_version_create(
        tariff=prepaid, valid_from=first_next, rates=[("", 0, Decimal("27.9"))], **vat
    )
    day_night = Tariff.objects.create(landlord=landlord, name="Day and night", currency="GBP")
    tariff_version_create(
        tariff=day_night,
        valid_from=since,
        rates=[("", 0, Decimal("32.4")), ("night", 0, Decimal("14.2"))],
        windows=(("night", "all", 0, 7),),
        standing_charge_per_day_minor=Decimal("48.5"),
        **vat,
    )
    block = Tariff.objects.create(landlord=landlord, name="Block", currency="GBP")
    tariff_version_create(
        tariff=block,
        valid_from=since,
        rates=[("", 0, Decimal("22")), ("", 100_000, Decimal("30.5"))],
        standing_charge_per_day_minor=Decimal("40"),
        **vat,
    )
    return {"prepaid": prepaid, "day-night": day_night, "block": block}


@dataclass
class DemoLogin:
    username: str
    role: str


def demo_seed() -> list[DemoLogin]:
    """Create the demo data once; later calls change nothing."""
    User = get_user_model()
    logins = [DemoLogin("landlord", "landlord"), DemoLogin("admin", "admin")]
    logins += [DemoLogin(f"tenant{i}", f"tenant of {u[0]}") for i, u in enumerate(UNITS, 1)]
    logins.append(DemoLogin(NEW_LANDLORD_USER, "a landlord with nothing set up yet"))
    _empty_landlord()
    if Landlord.objects.filter(name=LANDLORD_NAME).exists():
        return logins
    with transaction.atomic():
        landlord = Landlord.objects.create(name=LANDLORD_NAME)
        owner = User.objects.create_user(
            "landlord",
            email="landlord@example.com",
            password=DEMO_PASSWORD,
            first_name="Lena",
            last_name="Landlord",
        )
        Membership.objects.create(landlord=landlord, user=owner, role=Membership.Role.OWNER)
        User.objects.create_superuser("admin", password=DEMO_PASSWORD, email="admin@example.com")
        # Demo only: disconnection allowed at any hour of any day after one
        # minute's notice, so a visitor sees Flat 1 cut and restored within a
        # couple of minutes. Real properties default to working days 09:00-15:00
        # and a day's notice (landlord.models.Property).
        prop = Property.objects.create(
            landlord=landlord,
            name="Riverside House",
            address="1 River Lane, Leeds (demo: cut-offs allowed any time, 1 minute's notice)",
            timezone="Europe/London",
            currency="GBP",
            cutoff_days="1234567",
            cutoff_start=time(0, 0),
            cutoff_end=time(0, 0),
            cutoff_notice_minutes=1,
        )
        tariffs = _demo_tariffs(landlord)
        start = timezone.localdate() - timedelta(days=30)
        for i, (name, mode, _credit, _power) in enumerate(UNITS, 1):
            unit = Unit.objects.create(
                landlord=landlord,
                property=prop,
                name=name,
                billing_mode=mode,
                tariff=tariffs[TARIFF_OF.get(name, "prepaid")],
                low_credit_threshold_minor=200,
                emergency_credit_minor=300 if mode == Unit.BillingMode.PREPAID else 0,
            )
            # An address each, so the tenants' alert emails show in the console.
            tenant = User.objects.create_user(
                f"tenant{i}",
                email=f"tenant{i}@example.com",
                password=DEMO_PASSWORD,
                first_name=f"Tenant {i}",
            )
            Tenancy.objects.create(landlord=landlord, unit=unit, tenant=tenant, start_date=start)
            # Flat 6 has an off-the-shelf Shelly relay; the others speak the native protocol.
            device = Device(
                landlord=landlord,
                unit=unit,
                ident=f"demo-{i}",
                protocol=Protocol.SHELLY if i == 6 else Protocol.NATIVE,
            )
            device.set_secret(secrets.token_urlsafe(24))
            device.save()
            Meter.objects.create(landlord=landlord, unit=unit, device=device, serial=f"SIM-{i:04d}")
    # Opening credit goes through the same payment path as any top-up.
    provider = DevelopmentProvider()
    for i, (_name, _mode, credit, _power) in enumerate(UNITS, 1):
        if credit <= 0:
            continue
        tenancy = Tenancy.objects.get(landlord__name=LANDLORD_NAME, tenant__username=f"tenant{i}")
        with transaction.atomic():
            payment = Payment.objects.create(
                landlord_id=tenancy.landlord_id,
                tenancy=tenancy,
                amount_minor=credit,
                currency=tenancy.unit.property.currency,
                provider=provider.name,
            )
            provider.complete(payment=payment, outcome="succeeded")
    for event in PaymentEvent.objects.filter(processed_at__isnull=True).order_by("pk"):
        payment_event_process(event_id=event.pk)
    return logins


@transaction.atomic
def _empty_landlord() -> None:
    """An owner of a landlord with no property, unit or tariff (created once)."""
    User = get_user_model()
    if User.objects.filter(username=NEW_LANDLORD_USER).exists():
        return
    landlord = Landlord.objects.create(name=NEW_LANDLORD_NAME)
    owner = User.objects.create_user(
        NEW_LANDLORD_USER, password=DEMO_PASSWORD, first_name="Nadia", last_name="Newcomer"
    )
    Membership.objects.create(landlord=landlord, user=owner, role=Membership.Role.OWNER)


def demo_sim_devices() -> list[SimDevice]:
    """Simulators for the demo devices, each at its unit's demo power draw."""
    powers = {f"demo-{i}": power for i, (_n, _m, _c, power) in enumerate(UNITS, 1)}
    return [
        simulated_device_prepare(device=device, power_w=powers.get(device.ident, 1000), speed=SPEED)
        for device in Device.objects.filter(landlord__name=LANDLORD_NAME).order_by("pk")
    ]
