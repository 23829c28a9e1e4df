"""Raw readings thinned after READING_RETENTION_DAYS (meters.retention): one a day is
kept, nothing billed changes, and a meter whose readings may still matter is left
alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum

from disputes.models import Dispute
from meters.models import Interval, Reading
from meters.readings import ReadingInput, ReadingRejected, readings_record, readings_validate
from meters.retention import readings_prune
from payments.ledger import Leg, landlord_account, ledger_post, ledger_verify, tenant_account
from payments.models import Account, Posting

JAN = datetime(2026, 1, 1, tzinfo=UTC)
# Readings from 1 to 3 January every 20 minutes, then one on 25 January.
LATER = JAN + timedelta(days=24)
NOW = JAN + timedelta(days=30)  # with 10 days kept, the horizon is 21 January


def _keep_ten_days(settings) -> None:
    """Readings are recorded first: intake refuses what the retention would thin."""
    settings.SUBMETER = {**settings.SUBMETER, "READING_RETENTION_DAYS": 10}


def _credit(world) -> None:
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    ledger_post(
        landlord_id=world.landlord.pk,
        kind="adjustment",
        idempotency_key=f"credit-{world.prepaid_tenancy.pk}",
        legs=[
            Leg(
                debit=clearing,
                credit=tenant_account(tenancy=world.prepaid_tenancy),
                amount_minor=100_000,
            )
        ],
    )


def _three_days_then_one_more(world) -> None:
    device = world.prepaid_device.device
    readings = [
        ReadingInput(seq=i + 1, taken_at=JAN + timedelta(minutes=20 * i), register_wh=50 * i)
        for i in range(3 * 72)
    ]
    for first in range(0, len(readings), 100):
        readings_record(device_id=device.pk, readings=readings[first : first + 100])
    last = readings[-1]
    readings_record(
        device_id=device.pk,
        readings=[ReadingInput(seq=last.seq + 1, taken_at=LATER, register_wh=last.register_wh)],
    )


def _usage_posted() -> int:
    return Posting.objects.filter(transaction__kind="usage").aggregate(s=Sum("amount_minor"))["s"]


def test_old_readings_are_thinned_to_the_last_of_each_day(personas, settings):
    world = personas.a
    _credit(world)
    _three_days_then_one_more(world)
    _keep_ten_days(settings)
    meter = world.prepaid_device.device.meters.get()
    posted = _usage_posted()
    slots = list(Interval.objects.filter(meter=meter).values_list("start", "gross_sub"))
    assert Reading.objects.filter(meter=meter).count() == 3 * 72 + 1

    result = readings_prune(now=NOW)

    assert (result.meters, result.skipped_meters) == (1, 0)
    left = list(Reading.objects.filter(meter=meter).order_by("taken_at"))
    # the last reading of 1, 2 and 3 January, and the one after the horizon
    assert [r.taken_at for r in left] == [
        JAN + timedelta(minutes=20 * 71),
        JAN + timedelta(minutes=20 * 143),
        JAN + timedelta(minutes=20 * 215),
        LATER,
    ]
    assert result.deleted == 3 * 72 - 3
    # nothing billed changed
    assert _usage_posted() == posted
    assert list(Interval.objects.filter(meter=meter).values_list("start", "gross_sub")) == slots
    assert ledger_verify() == []
    # a second run has nothing more to do
    assert readings_prune(now=NOW).deleted == 0


def test_flagged_readings_are_kept(personas, settings):
    world = personas.a
    _credit(world)
    _three_days_then_one_more(world)
    _keep_ten_days(settings)
    meter = world.prepaid_device.device.meters.get()
    flagged = Reading.objects.filter(meter=meter, seq=10)
    flagged.update(quality=Reading.Quality.FLAGGED)
    readings_prune(now=NOW)
    assert flagged.exists()


def test_a_meter_with_an_open_dispute_is_left_alone(personas, settings):
    world = personas.a
    _credit(world)
    _three_days_then_one_more(world)
    _keep_ten_days(settings)
    dispute = Dispute.objects.create(
        landlord=world.landlord,
        tenancy=world.prepaid_tenancy,
        unit=world.prepaid,
        raised_by=world.prepaid_tenant,
        subject=Dispute.Subject.PERIOD,
        period_start=JAN.date(),
        period_end=JAN.date(),
        category=Dispute.Category.WRONG_READING,
        currency="GBP",
    )
    result = readings_prune(now=NOW)
    assert (result.meters, result.deleted, result.skipped_meters) == (0, 0, 1)
    dispute.status = Dispute.Status.RESOLVED
    dispute.save()
    assert readings_prune(now=NOW).deleted == 3 * 72 - 3


def test_a_meter_with_unpriced_energy_before_the_horizon_is_left_alone(personas, settings):
    world = personas.a
    _credit(world)
    _three_days_then_one_more(world)
    _keep_ten_days(settings)
    meter = world.prepaid_device.device.meters.get()
    Interval.objects.create(
        landlord=world.landlord,
        meter=meter,
        kind=Interval.Kind.GAP,
        quality=Interval.Quality.HELD,
        start=JAN + timedelta(days=5),
        end=JAN + timedelta(days=6),
        energy_wh=100,
        held_reason="long gap",
    )
    assert readings_prune(now=NOW).deleted == 0


def test_a_meter_not_rated_past_the_horizon_is_left_alone(personas, settings):
    world = personas.a
    _credit(world)
    _three_days_then_one_more(world)
    _keep_ten_days(settings)
    # the horizon after the meter's latest reading
    assert readings_prune(now=LATER + timedelta(days=11)).deleted == 0


def test_retention_is_off_by_default(personas):
    world = personas.a
    _credit(world)
    _three_days_then_one_more(world)
    result = readings_prune(now=NOW + timedelta(days=3650))
    assert (result.meters, result.deleted) == (0, 0)
    assert Reading.objects.count() == 3 * 72 + 1


def test_intake_refuses_readings_from_before_the_horizon(settings):
    _keep_ten_days(settings)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old = ReadingInput(seq=1, taken_at=now - timedelta(days=11), register_wh=0)
    with pytest.raises(ReadingRejected, match="too far in the past"):
        readings_validate(readings=[old], now=now)
    readings_validate(readings=[old], now=now - timedelta(days=2))
