"""A unit for the dispute browser test, added to the running server's database.

Flat 7 of a second demo property has a day/night tariff with a standing
charge and was postpaid for forty days; it switches to prepaid through the
landlord's service, which issues the closing bill and leaves what is unpaid
as prepaid debt. The property gives a day's notice before a cut-off, so the
cut-off stays *scheduled* while the test runs. Its relay is not simulated and
its tariff is then the flat prepaid one (no standing charge, no readings), so
nothing but the dispute moves the tenant's balance.

Run in the server's environment: ``manage.py shell -c "..."`` (see
``tests/browser/conftest.py``, ``server_manage``).
"""

from __future__ import annotations

import json
import secrets
from datetime import time, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from landlord.demo import DEMO_PASSWORD, LANDLORD_NAME
from landlord.models import Landlord, Property, Tenancy, Unit
from landlord.people import unit_billing_mode_switch
from meters.models import Device
from payments.ledger import ledger_verify, tenant_account
from payments.models import Invoice, Tariff

USERNAME = "tenant7"


def dispute_world() -> None:
    """Create Flat 7 and print what the test needs as JSON."""
    landlord = Landlord.objects.get(name=LANDLORD_NAME)
    with transaction.atomic():
        prop = Property.objects.create(
            landlord=landlord,
            name="Hillside Court",
            address="2 Hill Road, Leeds (a day's notice before any cut-off)",
            timezone="Europe/London",
            currency="GBP",
            cutoff_days="1234567",
            cutoff_start=time(0, 0),
            cutoff_end=time(0, 0),
            cutoff_notice_minutes=24 * 60,
        )
        unit = Unit.objects.create(
            landlord=landlord,
            property=prop,
            name="Flat 7",
            billing_mode=Unit.BillingMode.POSTPAID,
            tariff=Tariff.objects.get(landlord=landlord, name="Day and night"),
            low_credit_threshold_minor=200,
        )
        tenant = get_user_model().objects.create_user(
            USERNAME, email="tenant7@example.com", password=DEMO_PASSWORD, first_name="Tenant 7"
        )
        Tenancy.objects.create(
            landlord=landlord,
            unit=unit,
            tenant=tenant,
            start_date=timezone.localdate() - timedelta(days=40),
        )
        device = Device(landlord=landlord, unit=unit, ident="demo-7")
        device.set_secret(secrets.token_urlsafe(24))
        device.save()
    switch = unit_billing_mode_switch(
        unit=unit, mode=Unit.BillingMode.PREPAID, confirmed=True, actor_id=None
    )
    Unit.objects.filter(pk=unit.pk).update(
        tariff=Tariff.objects.get(landlord=landlord, name="Prepaid standard")
    )
    assert switch.invoice is not None and switch.tenancy is not None
    # The bill of the last full cycle (the closing bill covers only a few days).
    bill = Invoice.objects.filter(tenancy=switch.tenancy).order_by("-total_minor").first()
    assert bill is not None
    print(
        json.dumps(
            {
                "tenancy": switch.tenancy.pk,
                "invoice": bill.pk,
                "bill_minor": bill.total_minor,
                "balance_minor": switch.balance_minor,
                "bills": Invoice.objects.filter(tenancy=switch.tenancy).count(),
            }
        )
    )


def dispute_world_check(tenancy_id: int) -> None:
    """The tenant's balance and the ledger's checks, as JSON."""
    tenancy = Tenancy.objects.get(pk=tenancy_id)
    device = Device.objects.get(unit_id=tenancy.unit_id)
    print(
        json.dumps(
            {
                "balance_minor": tenant_account(tenancy=tenancy).balance_minor,
                "ledger_problems": ledger_verify(),
                "relay": device.desired_relay,
                "relay_reason": device.desired_reason,
            }
        )
    )
