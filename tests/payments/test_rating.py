"""The rating engine, table-driven with hand-computed amounts, and its properties."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments import rating
from payments.rating import SCALE, Rate, Schedule, Unpriceable, Version, Window

LONDON = zoneinfo.ZoneInfo("Europe/London")
D = Decimal


def flat(price: str, *, vid: int = 1, valid_from: date = date(2000, 1, 1), **kw) -> Version:
    return Version(id=vid, valid_from=valid_from, rates=(Rate("", 0, D(price)),), **kw)


def schedule(*versions: Version, tz=LONDON, currency="GBP", tariff_currency="GBP") -> Schedule:
    return Schedule(versions=versions, tz=tz, currency=currency, tariff_currency=tariff_currency)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def minor(sub: int) -> Decimal:
    return D(sub) / SCALE


TIERED = Version(
    id=1,
    valid_from=date(2000, 1, 1),
    rates=(Rate("", 0, D("20")), Rate("", 100_000, D("30")), Rate("", 300_000, D("40"))),
)

TOU = Version(
    id=1,
    valid_from=date(2000, 1, 1),
    rates=(Rate("", 0, D("25")), Rate("peak", 0, D("40")), Rate("off-peak", 0, D("10"))),
    windows=(
        Window("peak", rating.WEEKDAYS, 16, 19),
        Window("off-peak", rating.ALL_DAYS, 0, 7),
    ),
)


@pytest.mark.parametrize(
    ("version", "start", "wh", "before", "expected_minor", "lines"),
    [
        # flat: 1 kWh at 30p
        (flat("30"), utc(2026, 1, 5, 10), 1000, 0, D("30"), 1),
        # 333 Wh at 28.5p/kWh = 9.4905p exactly
        (flat("28.5"), utc(2026, 1, 5, 10), 333, 0, D("9.4905"), 1),
        # 4 decimals of a penny per kWh
        (flat("12.3456"), utc(2026, 1, 5, 10), 1, 0, D("0.0123456"), 1),
        # tier: 99.5 kWh used already; 500 Wh at 20p + 500 Wh at 30p = 10p + 15p
        (TIERED, utc(2026, 1, 5, 10), 1000, 99_500, D("25"), 2),
        # tier: all three: 1 kWh at 20p + 200 kWh at 30p + 1 kWh at 40p
        (TIERED, utc(2026, 1, 5, 10), 202_000, 99_000, D("6060"), 3),
        # tier: exactly on the boundary, all at the second price
        (TIERED, utc(2026, 1, 5, 10), 1000, 100_000, D("30"), 1),
        # TOU, winter (GMT): Wednesday 16:30 is peak
        (TOU, utc(2026, 1, 14, 16, 30), 1000, 0, D("40"), 1),
        # TOU, winter: 19:00 is after the peak window
        (TOU, utc(2026, 1, 14, 19), 1000, 0, D("25"), 1),
        # TOU, summer (BST): 15:30 UTC is 16:30 local, peak
        (TOU, utc(2026, 7, 15, 15, 30), 1000, 0, D("40"), 1),
        # TOU, summer: 18:00 UTC is 19:00 local, no longer peak
        (TOU, utc(2026, 7, 15, 18), 1000, 0, D("25"), 1),
        # TOU, summer: 23:00 UTC is 00:00 local, off-peak
        (TOU, utc(2026, 7, 15, 23), 1000, 0, D("10"), 1),
        # TOU: Saturday 16:30 is not peak (weekdays only)
        (TOU, utc(2026, 1, 17, 16, 30), 1000, 0, D("25"), 1),
        # tax exclusive 20%: 30p + 6p
        (
            flat("30", tax_percent=D("20"), tax_inclusive=False),
            utc(2026, 1, 5),
            1000,
            0,
            D("36"),
            1,
        ),
        # tax inclusive 5%: the price already includes it
        (flat("30", tax_percent=D("5"), tax_inclusive=True), utc(2026, 1, 5), 1000, 0, D("30"), 1),
    ],
    ids=[
        "flat",
        "fraction",
        "four-decimals",
        "tier-boundary-inside",
        "three-tiers",
        "tier-boundary-exact",
        "tou-winter-peak",
        "tou-winter-after-peak",
        "tou-summer-peak-local",
        "tou-summer-after-peak",
        "tou-summer-midnight-offpeak",
        "tou-weekend",
        "tax-exclusive",
        "tax-inclusive",
    ],
)
def test_price_slot_table(version, start, wh, before, expected_minor, lines):
    price = rating.price_slot(
        schedule=schedule(version), start=start, energy_wh=wh, period_wh_before=before
    )
    assert minor(price.gross_sub) == expected_minor
    assert len(price.lines) == lines
    assert sum(line.energy_wh for line in price.lines) == wh


def _day_slots(day: date) -> list[datetime]:
    start = datetime.combine(day, datetime.min.time(), LONDON).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), LONDON).astimezone(UTC)
    slots = []
    cursor = start
    while cursor < end:
        slots.append(cursor)
        cursor += timedelta(seconds=rating.SLOT_SECONDS)
    return slots


DST_TOU = Version(
    id=1,
    valid_from=date(2000, 1, 1),
    rates=(Rate("", 0, D("20")), Rate("night", 0, D("10"))),
    windows=(Window("night", rating.ALL_DAYS, 0, 7),),
    standing_per_day_minor=D("50"),
)


@pytest.mark.parametrize(
    ("day", "slots", "night_slots", "expected"),
    [
        # 23-hour day: local 01:00-02:00 does not exist; night hours 0,2,3,4,5,6 = 12 slots.
        # 12 x 100 Wh at 10p + 34 x 100 Wh at 20p = 12p + 68p
        (date(2026, 3, 29), 46, 12, D("80")),
        # 25-hour day: local 01:00-02:00 happens twice; night = 16 slots.
        # 16 x 100 Wh at 10p + 34 x 100 Wh at 20p = 16p + 68p
        (date(2026, 10, 25), 50, 16, D("84")),
        # an ordinary day: 14 night slots + 34 day slots = 14p + 68p
        (date(2026, 6, 1), 48, 14, D("82")),
    ],
    ids=["spring-forward-23h", "fall-back-25h", "ordinary-24h"],
)
def test_dst_days(day, slots, night_slots, expected):
    sched = schedule(DST_TOU)
    day_slots = _day_slots(day)
    assert len(day_slots) == slots
    rated = rating.rate_energy(schedule=sched, pieces=[(s, 100) for s in day_slots])
    assert sum(1 for r in rated if r.price and r.price.lines[0].band == "night") == night_slots
    assert minor(sum(r.price.gross_sub for r in rated if r.price)) == expected
    # the standing charge is per day, whatever the day's length
    _vid, gross, _tax = rating.standing_charge_sub(schedule=sched, day=day)
    assert minor(gross) == D("50")


@pytest.mark.parametrize(
    ("start", "end", "expected", "versions_used"),
    [
        # winter: the new price starts at 00:00 GMT on 1 Feb. 2 slots of 500 Wh at 20p, 2 at 30p.
        (utc(2026, 1, 31, 23), utc(2026, 2, 1, 1), D("50"), [1, 1, 2, 2]),
        # summer: local midnight of 1 Jul is 23:00 UTC on 30 Jun
        (utc(2026, 6, 30, 22), utc(2026, 7, 1, 0), D("50"), [1, 1, 2, 2]),
    ],
    ids=["winter-midnight", "summer-midnight-is-23utc"],
)
def test_tariff_change_boundary(start, end, expected, versions_used):
    old = flat("20", vid=1, valid_from=date(2026, 1, 1))
    new_feb = flat("30", vid=2, valid_from=date(2026, 2, 1))
    new_jul = flat("30", vid=2, valid_from=date(2026, 7, 1))
    sched = schedule(old, new_feb if start.month < 3 else new_jul)
    pieces = rating.spread(start=start, end=end, start_wh=0, end_wh=2000)
    assert [wh for _s, wh in pieces] == [500, 500, 500, 500]
    rated = rating.rate_energy(schedule=sched, pieces=pieces)
    assert [r.price.version_id for r in rated if r.price] == versions_used
    assert minor(sum(r.price.gross_sub for r in rated if r.price)) == expected


def test_tiers_reset_each_local_month():
    # 150 kWh on 31 Jan and 150 kWh on 1 Feb: each month starts at the first tier again.
    sched = schedule(TIERED)
    rated = rating.rate_energy(
        schedule=sched, pieces=[(utc(2026, 1, 31, 12), 150_000), (utc(2026, 2, 1, 12), 150_000)]
    )
    # each: 100 kWh at 20p + 50 kWh at 30p = 2000p + 1500p
    assert [minor(r.price.gross_sub) for r in rated if r.price] == [D("3500"), D("3500")]


@pytest.mark.parametrize(
    ("sched", "start", "reason"),
    [
        (
            schedule(flat("20", valid_from=date(2026, 2, 1))),
            utc(2026, 1, 31, 12),
            "no tariff version in force",
        ),
        (schedule(flat("20"), currency="EUR"), utc(2026, 1, 31, 12), "the property bills in EUR"),
        (
            schedule(
                Version(
                    id=1,
                    valid_from=date(2000, 1, 1),
                    rates=(Rate("peak", 0, D("40")),),
                    windows=(Window("peak", rating.ALL_DAYS, 16, 19),),
                )
            ),
            utc(2026, 1, 31, 12),
            "no price for any time",
        ),
        (
            schedule(Version(id=1, valid_from=date(2000, 1, 1), rates=(Rate("", 100, D("5")),))),
            utc(2026, 1, 31),
            "from 0 kWh",
        ),
    ],
    ids=["no-version", "currency", "band-without-price", "tier-gap"],
)
def test_unpriceable_energy_is_held_with_a_reason(sched, start, reason):
    with pytest.raises(Unpriceable, match=reason):
        rating.price_slot(schedule=sched, start=start, energy_wh=10, period_wh_before=0)
    [rated] = rating.rate_energy(schedule=sched, pieces=[(start, 10)])
    assert rated.price is None and reason in rated.held_reason


def test_carry_posts_whole_units_and_keeps_the_fraction():
    carry = rating.Carry()
    price = rating.price_sub_per_wh(D("28.5"))
    posted = []
    for wh in (333, 333, 334):
        carry.add(wh * price)
        posted.append(carry.take_minor())
    # 1000 Wh at 28.5p = 28.5p: 28p posted, half a penny carried
    assert posted == [9, 9, 10] and sum(posted) == 28
    assert carry.pending_sub == SCALE // 2


# --- properties -----------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(start=moments, minutes=st.integers(0, 60 * 24 * 3), energy=st.integers(0, 10**7))
def test_property_spread_adds_up_and_stays_in_slots(start, minutes, energy):
    end = start + timedelta(minutes=minutes, seconds=7)
    pieces = rating.spread(start=start, end=end, start_wh=5, end_wh=5 + energy)
    assert sum(wh for _s, wh in pieces) == energy
    assert all(wh >= 0 for _s, wh in pieces)
    assert all(s.timestamp() % rating.SLOT_SECONDS == 0 for s, _wh in pieces)
    assert pieces[0][0] <= start and pieces[-1][0] < end


@settings(max_examples=200, deadline=None)
@given(
    price=st.decimals(min_value=D("0"), max_value=D("999.9999"), places=4),
    parts=st.lists(st.integers(0, 50_000), min_size=1, max_size=30),
)
def test_property_splitting_energy_never_changes_the_total(price, parts):
    per_wh = rating.price_sub_per_wh(price)
    carry, charged = rating.Carry(), 0
    for wh in parts:
        carry.add(wh * per_wh)
        charged += carry.take_minor()
    exact = sum(parts) * price / 1000  # minor units, exact
    assert charged == int(exact)  # rounded down once, never per part
    assert D(charged) + D(carry.pending_sub) / SCALE == exact


@settings(max_examples=100, deadline=None)
@given(
    slots=st.lists(st.integers(0, 40_000), min_size=1, max_size=60),
    start=moments,
    order=st.randoms(use_true_random=False),
)
def test_property_tiered_tou_total_depends_only_on_slot_energy(slots, start, order):
    sched = schedule(
        Version(
            id=1,
            valid_from=date(2000, 1, 1),
            rates=(
                Rate("", 0, D("20")),
                Rate("", 100_000, D("30.5")),
                Rate("peak", 0, D("40")),
                Rate("peak", 50_000, D("45.25")),
            ),
            windows=(Window("peak", rating.WEEKDAYS, 16, 19),),
            tax_percent=D("17.5"),
            tax_inclusive=False,
        )
    )
    base = rating.slot_start(start)
    pieces = [(base + timedelta(seconds=rating.SLOT_SECONDS * i), wh) for i, wh in enumerate(slots)]
    shuffled = list(pieces)
    order.shuffle(shuffled)
    # pieces given in any order, or a slot given in two halves, rate the same
    halves = [(s, wh // 2) for s, wh in shuffled] + [(s, wh - wh // 2) for s, wh in shuffled]
    totals = {
        sum(r.price.gross_sub for r in rating.rate_energy(schedule=sched, pieces=p) if r.price)
        for p in (pieces, shuffled, halves)
    }
    assert len(totals) == 1
