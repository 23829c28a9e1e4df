"""Slots priced (payments.pricing), with no database: hand-computed runs of slots
and properties of how a run's pricing adds up."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments import pricing, rating
from payments.pricing import ACTUAL, ESTIMATED, HELD, Slot, slots_price
from payments.rating import SCALE, Rate, Schedule, Version

LONDON = zoneinfo.ZoneInfo("Europe/London")
D = Decimal
HALF_HOUR = timedelta(seconds=rating.SLOT_SECONDS)


def schedule(*versions: Version, currency: str = "GBP") -> Schedule:
    return Schedule(versions=versions, tz=LONDON, currency=currency, tariff_currency="GBP")


FLAT = schedule(Version(id=1, valid_from=date(2000, 1, 1), rates=(Rate("", 0, D("30")),)))
# 20p/kWh for the first kWh of the month, then 50p
TIERED = schedule(
    Version(
        id=2, valid_from=date(2000, 1, 1), rates=(Rate("", 0, D("20")), Rate("", 1000, D("50")))
    )
)
T0 = datetime(2026, 1, 14, 10, tzinfo=UTC)


def at(i: int) -> datetime:
    return T0 + i * HALF_HOUR


def pence(sub: int) -> Decimal:
    return D(sub) / SCALE


def test_new_slots_are_priced_and_written():
    priced = slots_price(slots=[Slot(at(0), 1000, stored=False)], schedule=FLAT)
    [slot] = priced.slots
    assert (slot.quality, slot.version_id, slot.rewrite) == (ACTUAL, 1, True)
    assert pence(slot.gross_sub or 0) == 30 and pence(priced.delta_sub) == 30
    assert priced.changes == ((at(0), 30 * SCALE),)
    assert priced.held_from is None


def test_an_unchanged_stored_slot_is_not_rewritten():
    stored = Slot(at(0), 1000, gross_sub=30 * SCALE)
    [slot] = slots_price(slots=[stored], schedule=FLAT).slots
    assert (slot.rewrite, slot.delta_sub) == (False, 0)
    # ...unless the batch touched it, even with the same price
    [slot] = slots_price(
        slots=[Slot(at(0), 1000, gross_sub=30 * SCALE, touched=True)], schedule=FLAT
    ).slots
    assert (slot.rewrite, slot.delta_sub) == (True, 0)


@pytest.mark.parametrize(
    ("before", "energies", "expected_pence"),
    [
        # the whole first kWh at 20p, then 50p: 600 + 600 Wh = 12p + (8p + 10p)
        (0, [600, 600], [D(12), D(18)]),
        # the month's first kWh already used before the run
        (1000, [600, 600], [D(30), D(30)]),
        # a tier boundary inside the first slot: 100 Wh at 20p, 200 Wh at 50p
        (900, [300], [D(12)]),
    ],
)
def test_tiers_carry_across_the_run_from_the_period_before(before, energies, expected_pence):
    slots = [Slot(at(i), wh, stored=False) for i, wh in enumerate(energies)]
    priced = slots_price(slots=slots, schedule=TIERED, period_wh_before=before)
    assert [pence(s.gross_sub or 0) for s in priced.slots] == expected_pence


def test_a_re_rated_run_says_what_changed():
    # 500 Wh more in the first slot moves the second one up a tier
    slots = [
        Slot(at(0), 1100, gross_sub=10 * SCALE, touched=True),  # was 500 Wh at 20p
        Slot(at(1), 500, gross_sub=10 * SCALE),  # was 500 Wh at 20p
    ]
    priced = slots_price(slots=slots, schedule=TIERED)
    # now 1000 Wh at 20p + 100 Wh at 50p = 25p, and 500 Wh at 50p = 25p
    assert [pence(s.gross_sub or 0) for s in priced.slots] == [25, 25]
    assert [pence(d) for _, d in priced.changes] == [15, 15]
    assert [s.rewrite for s in priced.slots] == [True, True]


def test_without_a_schedule_every_slot_is_held_with_the_reason():
    slots = [Slot(at(0), 100, gross_sub=3 * SCALE), Slot(at(1), 100, stored=False)]
    priced = slots_price(slots=slots, schedule=None, hold="the unit has no tariff")
    assert [(s.quality, s.gross_sub, s.held_reason) for s in priced.slots] == [
        (HELD, None, "the unit has no tariff")
    ] * 2
    assert priced.held_from == at(0)
    assert pence(priced.delta_sub) == -3  # what it was priced at is taken back
    assert priced.first_reason == "the unit has no tariff"


def test_unpriceable_slots_are_held_and_priced_again_say_how_their_energy_is_known():
    other = schedule(FLAT.versions[0], currency="EUR")
    [held] = slots_price(slots=[Slot(at(0), 100, stored=False)], schedule=other).slots
    assert held.quality == HELD and "is in GBP" in held.held_reason
    slots = [
        Slot(at(0), 100, quality=HELD, held_reason="x"),
        Slot(at(1), 100, quality=HELD, estimated=True, held_reason="x"),
    ]
    priced = slots_price(slots=slots, schedule=FLAT)
    assert [(s.quality, s.held_reason) for s in priced.slots] == [(ACTUAL, ""), (ESTIMATED, "")]
    assert priced.held_from is None and priced.first_reason == pricing.UNPRICED_REASON


def test_a_long_reason_is_stored_cut_and_rewritten_each_time():
    reason = "r" * 300
    [slot] = slots_price(
        slots=[Slot(at(0), 1, quality=HELD, held_reason=reason[:200])], schedule=None, hold=reason
    ).slots
    assert slot.held_reason == reason[:200] and slot.rewrite


# --- properties ----------------------------------------------------------------

energies = st.lists(st.integers(0, 3000), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(energies=energies, cut=st.integers(0, 12), before=st.integers(0, 3000))
def test_property_pricing_a_run_in_two_batches_equals_one_batch(energies, cut, before):
    slots = [Slot(at(i), wh, stored=False) for i, wh in enumerate(energies)]
    whole = slots_price(slots=slots, schedule=TIERED, period_wh_before=before)
    cut = min(cut, len(slots))
    first = slots_price(slots=slots[:cut], schedule=TIERED, period_wh_before=before)
    second = slots_price(
        slots=slots[cut:], schedule=TIERED, period_wh_before=before + sum(energies[:cut])
    )
    assert first.slots + second.slots == whole.slots
    assert first.delta_sub + second.delta_sub == whole.delta_sub


@settings(max_examples=200, deadline=None)
@given(energies=energies, before=st.integers(0, 3000))
def test_property_the_slots_add_up_to_the_total_priced_through_the_same_tiers(energies, before):
    # Within one local month the tiers count energy, not slots: the run costs
    # what its whole energy costs in one slot from the same tier position.
    slots = [Slot(at(i), wh, stored=False) for i, wh in enumerate(energies)]
    priced = slots_price(slots=slots, schedule=TIERED, period_wh_before=before)
    total = rating.price_slot(
        schedule=TIERED, start=at(0), energy_wh=sum(energies), period_wh_before=before
    )
    assert priced.delta_sub == total.gross_sub
    assert sum(s.gross_sub or 0 for s in priced.slots) == total.gross_sub


@settings(max_examples=100, deadline=None)
@given(energies=energies, more=st.integers(0, 3000), where=st.integers(0, 11))
def test_property_re_pricing_stored_slots_changes_by_the_difference(energies, more, where):
    # Pricing a run, storing it, then adding energy to one slot changes the
    # total by exactly what the bigger run costs more.
    slots = [Slot(at(i), wh, stored=False) for i, wh in enumerate(energies)]
    old = slots_price(slots=slots, schedule=TIERED)
    where = min(where, len(slots) - 1)
    stored = [
        Slot(s.start, s.energy_wh + (more if i == where else 0), gross_sub=p.gross_sub)
        for i, (s, p) in enumerate(zip(slots, old.slots, strict=True))
    ]
    new = slots_price(slots=stored, schedule=TIERED)
    bigger = slots_price(
        slots=[Slot(s.start, s.energy_wh, stored=False) for s in stored], schedule=TIERED
    )
    assert old.delta_sub + new.delta_sub == bigger.delta_sub
    assert all(p.rewrite == (p.delta_sub != 0) for p in new.slots)
