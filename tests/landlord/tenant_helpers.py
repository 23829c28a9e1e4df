"""Small helpers for tests of the tenant's pages."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

from django.utils import timezone

from meters.models import Meter, Reading
from payments.ledger import Leg, landlord_account, ledger_post, tenant_account
from payments.models import Account

_keys = count(1)


def credit(tenancy, amount_minor: int, kind: str = "adjustment", memo: str = "") -> None:
    """Move ``amount_minor`` into (or, negative, out of) the tenant's balance."""
    clearing = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.CLEARING, currency="GBP"
    )
    tenant = tenant_account(tenancy=tenancy)
    debit, credit_to = (clearing, tenant) if amount_minor > 0 else (tenant, clearing)
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=kind,
        idempotency_key=f"tenant-test-{tenancy.pk}-{next(_keys)}",
        legs=[Leg(debit=debit, credit=credit_to, amount_minor=abs(amount_minor))],
        memo=memo,
    )


def reading(device, seq: int, minutes_ago: float, register_wh: int) -> None:
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


def charge_usage(tenancy, amount_minor: int) -> None:
    """Energy used, as the billing posts it: the tenant's balance to revenue."""
    revenue = landlord_account(landlord=tenancy.landlord, kind=Account.Kind.REVENUE, currency="GBP")
    ledger_post(
        landlord_id=tenancy.landlord_id,
        kind="usage",
        idempotency_key=f"tenant-test-usage-{tenancy.pk}-{next(_keys)}",
        legs=[
            Leg(
                debit=tenant_account(tenancy=tenancy),
                credit=revenue,
                amount_minor=amount_minor,
                energy_wh=amount_minor * 4,
            )
        ],
    )
