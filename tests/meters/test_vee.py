"""Reading validation (VEE): every rule, as pure steps and through reading intake."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters import vee
from meters.meter_events import meter_event_record
from meters.models import Interval, Meter, MeterEvent, Reading
from meters.readings import ReadingInput, ReadingRejected, readings_record
from payments import billing, rating, tariffs
from payments.ledger import tenant_account
from payments.models import Tariff

BASE = datetime(2026, 1, 14, 10, 0, tzinfo=UTC)  # a Wednesday, in the past
LIMITS = vee.Limits(max_power_w=100_000, estimate_gap_s=900, long_gap_s=6 * 3600)


@pytest.mark.parametrize(
    ("minutes", "prev_wh", "wh", "limits", "rule", "energy"),
    [
        (1, 1000, 1020, LIMITS, vee.Rule.ACTUAL, 20),
        (1, 1000, 1000, LIMITS, vee.Rule.ACTUAL, 0),
        # 100 kW for one minute is 1667 Wh: just plausible; one more Wh is a spike
        (1, 0, 1666, LIMITS, vee.Rule.ACTUAL, 1666),
        (1, 0, 1668, LIMITS, vee.Rule.SPIKE, 1668),
        (1, 6000, 4000, LIMITS, vee.Rule.NEGATIVE, 0),
        # a 100 000 Wh register rolls over: 99 900 -> 100 is 200 Wh
        (1, 99_900, 100, vee.Limits(100_000, 900, 21600, 100_000), vee.Rule.ROLLOVER, 200),
        # without a register size the same step is negative
        (1, 99_900, 100, LIMITS, vee.Rule.NEGATIVE, 0),
        # a rollover that would mean an implausible power is not a rollover
        (1, 50_000, 100, vee.Limits(100_000, 900, 21600, 100_000), vee.Rule.NEGATIVE, 0),
        (16, 1000, 1500, LIMITS, vee.Rule.GAP_ESTIMATED, 500),
        (15, 1000, 1500, LIMITS, vee.Rule.ACTUAL, 500),
        (6 * 60 + 1, 1000, 9000, LIMITS, vee.Rule.LONG_GAP, 8000),
    ],
    ids=[
        "actual",
        "no-use",
        "max-power",
        "spike",
        "negative",
        "rollover",
        "no-register-size",
        "implausible-rollover",
        "short-gap",
        "not-a-gap",
        "long-gap",
    ],
)
def test_step_rules(minutes, prev_wh, wh, limits, rule, energy):
    result = vee.step(
        prev_at=BASE,
        prev_wh=prev_wh,
        at=BASE + timedelta(minutes=minutes),
        register_wh=wh,
        limits=limits,
    )
    assert (result.rule, result.energy_wh) == (rule, energy)
    assert result.billed == (rule in (vee.Rule.ACTUAL, vee.Rule.ROLLOVER, vee.Rule.GAP_ESTIMATED))


# --- through intake -------------------------------------------------------------


def _record(device, *items, base=BASE):
    return readings_record(
        device_id=device.pk,
        readings=[
            ReadingInput(seq=seq, taken_at=base + timedelta(minutes=m), register_wh=wh)
            for seq, m, wh in items
        ],
    )


def _charged(world) -> int:
    """Everything rated for the prepaid meter, posted, in minor units."""
    meter = Meter.objects.get(device=world.prepaid_device.device)
    return meter.posted_minor


def _credit(world, amount=100_000):
    from payments.ledger import Leg, landlord_account, ledger_post
    from payments.models import Account

    tenant = tenant_account(tenancy=world.prepaid_tenancy)
    clearing = landlord_account(landlord=world.landlord, kind=Account.Kind.CLEARING, currency="GBP")
    ledger_post(
        landlord_id=world.landlord.pk,
        kind="adjustment",
        idempotency_key="opening",
        legs=[Leg(debit=clearing, credit=tenant, amount_minor=amount)],
    )


def test_duplicates_and_replays_change_nothing(personas):
    dev = personas.a.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 1, 1000))
    before = (_charged(personas.a), Interval.objects.count(), Reading.objects.count())
    result = _record(dev, (1, 0, 0), (2, 1, 1000), (2, 1, 1000))
    assert result.duplicates == [2, 1, 2] or sorted(result.duplicates) == [1, 2, 2]
    assert result.accepted == []
    assert (_charged(personas.a), Interval.objects.count(), Reading.objects.count()) == before
    assert before[0] == 30  # 1 kWh at 30p


def test_first_reading_is_the_baseline(personas):
    dev = personas.a.prepaid_device.device
    _record(dev, (1, 0, 5000))
    reading = Reading.objects.get(seq=1)
    assert reading.rule == "baseline" and _charged(personas.a) == 0


def test_out_of_order_reading_is_re_derived(personas):
    # given a TOU tariff where 10:00-10:30 and 10:30-11:00 cost differently
    world = personas.a
    tariff = Tariff.objects.create(landlord=world.landlord, name="TOU", currency="GBP")
    tariffs.tariff_version_create(
        tariff=tariff,
        valid_from=date(2020, 1, 1),
        rates=[("", 0, Decimal("10")), ("peak", 0, Decimal("50"))],
        windows=(("peak", "all", 10, 11),),
    )
    world.prepaid.tariff = tariff
    world.prepaid.save()
    dev = world.prepaid_device.device
    # when 09:50 and 10:50 arrive first: 1200 Wh spread over 60 minutes (estimated)
    _record(dev, (1, -10, 0), (3, 50, 1200))
    spread_first = _charged(world)
    # then the 10:10 reading arrives late: all 1200 Wh were used before 10:10
    result = _record(dev, (2, 10, 1200))
    assert result.flagged == []
    late = Reading.objects.get(seq=2)
    assert late.rule == "out-of-order"
    # 09:50-10:00 (off-peak): 1200 * 10/20 = 600 Wh at 10p = 6p; 10:00-10:10: 600 Wh at 50p = 30p
    assert _charged(world) == 36
    assert spread_first != 36  # the spread estimate was corrected, not kept


def test_late_reading_older_than_the_baseline_becomes_the_baseline(personas):
    dev = personas.a.prepaid_device.device
    _record(dev, (5, 5, 5000))
    _record(dev, (1, 0, 4000))
    assert Reading.objects.get(seq=1).rule == "baseline"
    assert Reading.objects.get(seq=5).rule == "actual"
    assert _charged(personas.a) == 30  # the 1 kWh between them


def test_late_reading_that_does_not_fit_is_flagged_and_unused(personas):
    dev = personas.a.prepaid_device.device
    _record(dev, (1, 0, 1000), (3, 2, 2000))
    result = _record(dev, (2, 1, 9000))  # above the next reading: cannot be between them
    assert result.flagged == [2]
    late = Reading.objects.get(seq=2)
    assert late.rule == "out-of-order-unused" and late.quality == "flagged"
    assert _charged(personas.a) == 30


def test_rollover_is_counted(personas):
    dev = personas.a.prepaid_device.device
    Meter.objects.filter(device=dev).update(register_max_wh=100_000)
    _record(dev, (1, 0, 99_000), (2, 1, 500))
    assert Reading.objects.get(seq=2).rule == "rollover"
    assert _charged(personas.a) == 45  # 1500 Wh at 30p


def test_negative_delta_is_flagged_never_billed(personas):
    dev = personas.a.prepaid_device.device
    result = _record(dev, (1, 0, 6000), (2, 1, 4000), (3, 2, 5000))
    assert result.flagged == [2]
    assert Reading.objects.get(seq=2).rule == "negative-delta"
    assert _charged(personas.a) == 30  # only 4000 -> 5000


def test_spike_is_held_and_flagged(personas):
    dev = personas.a.prepaid_device.device
    result = _record(dev, (1, 0, 0), (2, 1, 5_000_000))
    assert result.flagged == [2]
    held = Interval.objects.get(kind=Interval.Kind.GAP)
    assert held.quality == "held" and held.rule == "spike" and held.energy_wh == 5_000_000
    assert "above 100 kW" in held.held_reason
    assert _charged(personas.a) == 0


def test_short_gap_is_spread_and_estimated(personas):
    dev = personas.a.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 90, 3000))  # 90 minutes: three slots, 1 kWh each
    slots = list(Interval.objects.filter(kind=Interval.Kind.SLOT).order_by("start"))
    assert [s.energy_wh for s in slots] == [1000, 1000, 1000]
    assert {s.quality for s in slots} == {"estimated"} and {s.rule for s in slots} == {
        "gap-estimated"
    }
    assert _charged(personas.a) == 90


def test_long_gap_is_held_not_invented(personas):
    dev = personas.a.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 7 * 60, 3000), (3, 7 * 60 + 1, 3010))
    assert not Interval.objects.filter(kind=Interval.Kind.SLOT, energy_wh__gt=10).exists()
    gap = Interval.objects.get(kind=Interval.Kind.GAP)
    assert gap.rule == "long-gap" and gap.energy_wh == 3000 and "7.0 h" in gap.held_reason
    assert _charged(personas.a) == 0  # 10 Wh at 30p is 0.3p, carried


def test_future_reading_is_rejected_and_nothing_is_stored(personas):
    dev = personas.a.prepaid_device.device
    with pytest.raises(ReadingRejected, match="future"):
        _record(dev, (1, 0, 0), (2, 0, 10), base=timezone.now() + timedelta(minutes=10))
    assert Reading.objects.count() == 0


def test_meter_reset_bills_the_old_register_then_restarts(personas):
    dev = personas.a.prepaid_device.device
    meter = Meter.objects.get(device=dev)
    _record(dev, (1, 0, 4000))
    meter_event_record(
        meter=meter,
        kind=MeterEvent.Kind.RESET,
        at=BASE + timedelta(minutes=5),
        old_last_wh=5000,
        new_first_wh=0,
    )
    _record(dev, (2, 6, 1000))
    assert Reading.objects.get(seq=2).rule == "actual"
    assert _charged(personas.a) == 60  # 1 kWh before the reset + 1 kWh after


def test_meter_replacement_starts_a_new_meter(personas):
    dev = personas.a.prepaid_device.device
    old = Meter.objects.get(device=dev)
    _record(dev, (1, 0, 70_000))
    event = meter_event_record(
        meter=old,
        kind=MeterEvent.Kind.REPLACEMENT,
        at=BASE + timedelta(minutes=5),
        old_last_wh=71_000,
        new_first_wh=10,
        new_serial="NEW-1",
    )
    _record(dev, (2, 6, 1010))
    new = Meter.objects.installed().get(device=dev)
    assert event.new_meter == new and new.serial == "NEW-1"
    assert Reading.objects.get(seq=2).meter == new
    old.refresh_from_db()
    assert old.removed_at is not None
    assert old.posted_minor + new.posted_minor == 60


def test_unpriceable_energy_is_held_with_a_reason_then_priced(personas):
    world = personas.a
    world.prepaid.tariff = None
    world.prepaid.save()
    dev = world.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 1, 1000))
    meter = Meter.objects.get(device=dev)
    slot = Interval.objects.get(kind=Interval.Kind.SLOT)
    assert slot.quality == "held" and slot.gross_sub is None
    assert slot.held_reason == "the unit has no tariff"
    assert "no tariff" in meter.hold_reason and meter.posted_minor == 0
    # when the landlord sets a tariff, the held energy is priced on the next intake
    world.prepaid.tariff = world.tariff
    world.prepaid.save()
    _record(dev, (3, 2, 1000))
    meter.refresh_from_db()
    assert meter.hold_reason == "" and meter.posted_minor == 30


# --- properties through intake ----------------------------------------------------

# (minutes since previous, Wh since previous): mostly ordinary steps, some
# long gaps (over 6 h) and spikes (5 kWh within a few minutes).
steps = st.lists(
    st.tuples(
        st.one_of(st.integers(1, 20), st.integers(1, 20), st.integers(300, 420)),
        st.one_of(st.integers(0, 400), st.integers(0, 400), st.just(5000)),
    ),
    min_size=2,
    max_size=25,
)


class _Rollback(Exception):
    pass


def _run(world, frames) -> tuple[int, int, list]:
    """Feed frames; return (exact rated sub-units, minor units posted, held gaps)."""
    from payments.billing import usage_settle_meter

    dev = world.prepaid_device.device
    try:
        with transaction.atomic():
            for frame in frames:
                readings_record(device_id=dev.pk, readings=frame)
            meter = Meter.objects.get(device=dev)
            usage_settle_meter(meter_id=meter.pk, force=True)
            meter.refresh_from_db()
            grosses = Interval.objects.filter(meter=meter).values_list("gross_sub", flat=True)
            exact = sum(g or 0 for g in grosses)
            held = sorted(
                Interval.objects.filter(meter=meter, quality="held").values_list(
                    "start", "end", "energy_wh"
                )
            )
            result = (exact, meter.posted_minor, held)
            raise _Rollback
    except _Rollback:
        return result


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps, cuts=st.lists(st.integers(0, 30), max_size=6), rnd=st.randoms())
def test_property_splitting_reordering_duplicating_never_changes_the_total(
    personas, steps, cuts, rnd
):
    world = personas.a
    tariff = Tariff.objects.filter(name="TOU tiers").first()
    if tariff is None:
        tariff = Tariff.objects.create(landlord=world.landlord, name="TOU tiers", currency="GBP")
        tariffs.tariff_version_create(
            tariff=tariff,
            valid_from=date(2020, 1, 1),
            rates=[
                ("", 0, Decimal("17.123")),
                ("", 2000, Decimal("31.5")),
                ("peak", 0, Decimal("44.4444")),
            ],
            windows=(("peak", "weekdays", 10, 12),),
            tax_percent=Decimal("20"),
            tax_inclusive=False,
        )
        world.prepaid.tariff = tariff
        world.prepaid.save()
    readings, at, wh = [], BASE, 0
    for i, (minutes, used) in enumerate(steps):
        at += timedelta(minutes=minutes)
        wh += used
        readings.append(ReadingInput(seq=i + 1, taken_at=at, register_wh=wh))
    in_order = _run(world, [readings])
    # the same readings, shuffled, cut into frames, some sent twice
    shuffled = list(readings)
    rnd.shuffle(shuffled)
    bounds = sorted({c % len(shuffled) for c in cuts} | {0, len(shuffled)})
    frames = [shuffled[a:b] for a, b in itertools.pairwise(bounds) if shuffled[a:b]]
    frames.insert(rnd.randrange(len(frames) + 1), frames[0])
    assert _run(world, frames) == in_order
    exact, posted, _held = in_order
    assert posted == exact // rating.SCALE  # rounded down once


def test_meter_event_command(personas):
    from django.core.management import CommandError, call_command

    dev = personas.a.prepaid_device.device
    _record(dev, (1, 0, 4000))
    serial = Meter.objects.get(device=dev).serial
    with pytest.raises(CommandError, match="older than"):
        call_command(
            "meter_event",
            serial,
            "reset",
            at="2026-01-14T09:00:00+00:00",
            old_last_wh=5000,
            new_first_wh=0,
        )
    call_command(
        "meter_event",
        serial,
        "reset",
        at="2026-01-14T10:05:00+00:00",
        old_last_wh=5000,
        new_first_wh=0,
    )
    assert MeterEvent.objects.get().kind == "reset"
    assert _charged(personas.a) == 30


def test_held_energy_is_priced_by_the_sweep_once_a_tariff_exists(personas):
    world = personas.a
    world.prepaid.tariff = None
    world.prepaid.save()
    dev = world.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 1, 1000))
    _record(dev, (3, 2, 2000))  # more energy while still without a tariff
    meter = Meter.objects.get(device=dev)
    assert meter.held_from == datetime(2026, 1, 14, 10, 0, tzinfo=UTC)
    world.prepaid.tariff = world.tariff
    world.prepaid.save()
    billing.billing_sweep()
    meter.refresh_from_db()
    assert meter.held_from is None and meter.hold_reason == "" and meter.posted_minor == 60


def test_landlord_can_bill_held_energy_after_review(personas):
    from django.test import Client
    from django.urls import reverse

    from landlord.models import AuditEvent

    world = personas.a
    dev = world.prepaid_device.device
    _record(dev, (1, 0, 0), (2, 7 * 60, 3000))  # long gap: 3 kWh held
    gap = Interval.objects.get(kind=Interval.Kind.GAP)
    url = reverse("landlord:held_release", args=[gap.pk])
    client = Client()
    # another landlord cannot see or release it
    client.force_login(personas.b.staff)
    assert client.post(url, {"reason": "x"}).status_code == 404
    client.force_login(world.staff)
    page = client.get(reverse("landlord:flagged")).content.decode()
    assert "Bill it" in page
    client.post(url, {"reason": ""})
    assert _charged(world) == 0  # a reason is required
    resp = client.post(url, {"reason": "meter was offline, usage is real"})
    assert resp.status_code == 302
    gap.refresh_from_db()
    assert gap.quality == "estimated" and "offline" in gap.note
    slots = Interval.objects.filter(kind=Interval.Kind.SLOT, energy_wh__gt=0)
    assert slots.count() == 14 and {s.quality for s in slots} == {"estimated"}
    assert _charged(world) == 90  # 3 kWh at 30p
    assert AuditEvent.objects.filter(action="usage.held_released").count() == 1
    # releasing twice changes nothing
    client.post(url, {"reason": "again"})
    assert _charged(world) == 90


def test_backlog_sent_after_a_live_reading_fills_the_long_gap(personas):
    """A device reconnects, sends its current reading, then its buffer."""
    world = personas.a
    buffered = [
        ReadingInput(seq=i, taken_at=BASE + timedelta(minutes=30 * i), register_wh=500 * i)
        for i in range(1, 16)
    ]
    live = ReadingInput(seq=16, taken_at=BASE + timedelta(minutes=480), register_wh=8000)
    first = ReadingInput(seq=0, taken_at=BASE, register_wh=0)
    in_order = _run(world, [[first, *buffered, live]])
    reconnect = _run(world, [[first], [live], buffered[:7], buffered[7:]])
    assert reconnect == in_order
    assert in_order[2] == []  # nothing held once the buffer arrived
    assert in_order[1] == 240  # 8 kWh at 30p
