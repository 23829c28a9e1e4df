"""A bill composed from plain data, table-driven with hand-computed amounts, and its
properties: the lines add up to the total, and the total is what the ledger posted."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments import invoicing, rating
from payments.invoicing import Bill, MeterTotals, Priced, Usage
from payments.models import InvoiceLine
from payments.rating import SCALE, Rate, Schedule, Version, Window

LONDON = zoneinfo.ZoneInfo("Europe/London")
D = Decimal
JAN, FEB, MAR = date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)


def schedule(*versions: Version) -> Schedule:
    return Schedule(versions=versions, tz=LONDON, currency="GBP", tariff_currency="GBP")


def flat(price: str, *, vid: int = 1, valid_from: date = date(2000, 1, 1), **kw) -> Version:
    return Version(id=vid, valid_from=valid_from, rates=(Rate("", 0, D(price)),), **kw)


def sub(minor: str) -> int:
    return int(D(minor) * SCALE)


def priced(version: Version, wh: int, *, band: str = "", tier: int = 0) -> Usage:
    """A slot whose energy was all priced at one of the version's rates."""
    [rate] = [r for r in version.rates if r.band == band and r.tier_from_wh == tier]
    line = rating.Line(version.id, band, tier, rate.price_per_kwh_minor, wh, wh * rate.sub_per_wh)
    return Usage(energy_wh=wh, lines=(line,))


def gross(usage: list[Usage], version: Version) -> Priced:
    """What the ledger priced for these slots, as a meter's running total."""
    net = sum(line.net_sub for u in usage for line in u.lines or ())
    wh = sum(line.energy_wh for u in usage for line in u.lines or ())
    return Priced(version.gross(net)[0], net, wh)


def one_meter(**kw) -> dict[int, MeterTotals]:
    return {7: MeterTotals(**kw)}


def compose(sched: Schedule, *, usage=(), meters=None, standing=0, start=JAN, end=FEB) -> Bill:
    return invoicing.bill_compose(
        schedule=sched,
        start=start,
        end=end,
        usage=list(usage),
        meters=meters if meters is not None else {},
        standing_posted_minor=standing,
    )


def lines(bill: Bill) -> list[tuple[str, str, int]]:
    return [(line.kind, line.description, line.amount_minor) for line in bill.lines]


# --- hand-computed bills -----------------------------------------------------------

NIGHT_SAVER = Version(
    id=1,
    valid_from=date(2020, 1, 1),
    rates=(Rate("", 0, D("20")), Rate("", 2000, D("30")), Rate("night", 0, D("10"))),
    windows=(Window("night", rating.ALL_DAYS, 0, 7),),
    standing_per_day_minor=D("50"),
    tax_percent=D("5"),
    tax_inclusive=False,
)


def test_bands_tiers_standing_charge_tax_and_rounding():
    # 1 kWh at night, then 2 kWh by day crossing the 2 kWh tier
    usage = [
        priced(NIGHT_SAVER, 1000, band="night"),
        priced(NIGHT_SAVER, 1000),
        priced(NIGHT_SAVER, 1000, tier=2000),
    ]
    bill = compose(
        schedule(NIGHT_SAVER),
        usage=usage,
        meters=one_meter(through=gross(usage, NIGHT_SAVER)),
        # 52.5p a day, its fraction carried since 1 Dec: the ledger posted 1628p for January
        standing=1628,
    )
    assert lines(bill) == [
        ("energy", "Energy", 20),  # 1 kWh at 20p
        ("energy", "Energy, above 2 kWh this month", 30),  # 1 kWh at 30p
        ("energy", "Night", 10),  # 1 kWh at 10p
        ("standing", "Standing charge", 1550),  # 31 days at 50p
        ("tax", "Tax 5%", 80),  # 5% of 1610p = 80.5p, rounded down
        ("rounding", invoicing.ROUNDING_LINE, 1),
    ]
    assert [(line.quantity, line.unit_price) for line in bill.lines[:4]] == [
        ("1.000 kWh", "20 per kWh"),
        ("1.000 kWh", "30 per kWh"),
        ("1.000 kWh", "10 per kWh"),
        ("31 days", "50 per day"),
    ]
    # usage 60p + 5% = 63p as posted, and the standing charges as posted
    assert (bill.total_minor, bill.tax_minor, bill.net_minor) == (63 + 1628, 80, 1611)
    assert (bill.energy_wh, bill.tax_inclusive, bill.held_wh) == (3000, False, 0)
    assert bill.billed_through == {"7": [sub("63"), sub("60"), 3000]}


def test_the_fraction_a_bill_leaves_is_charged_on_the_next():
    version = flat("20.5")
    january, february = [priced(version, 1000)], [priced(version, 1000)]
    jan_through = gross(january, version)
    jan = compose(schedule(version), usage=january, meters=one_meter(through=jan_through))
    feb = compose(
        schedule(version),
        usage=february,
        meters=one_meter(
            before=jan_through,
            through=jan_through.plus(gross(february, version)),
            billed=Priced.from_json(jan.billed_through["7"]),
        ),
        start=FEB,
        end=MAR,
    )
    # 20.5p a month: the ledger posts 20p, carries half a penny, then posts 21p
    assert lines(jan) == [("energy", "Energy", 20)]
    assert lines(feb) == [("energy", "Energy", 20), ("rounding", invoicing.ROUNDING_LINE, 1)]
    assert (jan.total_minor, feb.total_minor) == (20, 21)


@pytest.mark.parametrize(
    ("price", "tax_percent", "inclusive", "expected"),
    [
        # 24p including 20%: 20p net, 4p tax, no tax line
        ("24", "20", True, ([("energy", 24)], 24, 4, 20)),
        # 10.3p + 5% = 10.815p: 10p posted; tax 0.515p, shown as 0p
        ("10.3", "5", False, ([("energy", 10), ("tax", 0)], 10, 0, 10)),
        # 100p + 17.5% = 117.5p: 117p posted; tax 17.5p rounded down
        ("100", "17.5", False, ([("energy", 100), ("tax", 17)], 117, 17, 100)),
        # no tax
        ("30", "0", False, ([("energy", 30)], 30, 0, 30)),
    ],
    ids=["included", "added-under-a-penny", "added", "none"],
)
def test_tax_is_computed_once_from_the_exact_amounts(price, tax_percent, inclusive, expected):
    version = flat(price, tax_percent=D(tax_percent), tax_inclusive=inclusive)
    usage = [priced(version, 1000)]
    bill = compose(schedule(version), usage=usage, meters=one_meter(through=gross(usage, version)))
    shown, total, tax, net = expected
    assert [(line.kind, line.amount_minor) for line in bill.lines] == shown
    assert (bill.total_minor, bill.tax_minor, bill.net_minor) == (total, tax, net)
    assert bill.tax_inclusive == inclusive


def test_energy_priced_after_the_last_bill_is_an_adjustment():
    version = flat("30")
    late = gross([priced(version, 1000)], version)  # 30p of January, priced in February
    february = [priced(version, 500)]
    bill = compose(
        schedule(version),
        usage=february,
        meters=one_meter(before=late, through=late.plus(gross(february, version)), billed=Priced()),
        start=FEB,
        end=MAR,
    )
    assert [(line.kind, line.quantity, line.amount_minor) for line in bill.lines] == [
        ("energy", "0.500 kWh", 15),
        ("adjustment", "1.000 kWh", 30),
    ]
    assert bill.lines[1].description == "Energy of earlier periods priced since the last bill"
    assert bill.total_minor == 45


def test_energy_lowered_after_the_last_bill_is_a_correction():
    version = flat("30", tax_percent=D("10"), tax_inclusive=False)
    billed = Priced(sub("33"), sub("30"), 1000)  # the last bill charged 1 kWh: 30p + 10%
    now = Priced(sub("16.5"), sub("15"), 500)  # re-derived: only 500 Wh
    bill = compose(
        schedule(version), meters=one_meter(before=now, through=now, billed=billed), start=FEB
    )
    assert lines(bill) == [
        ("adjustment", "Correction of energy on earlier bills", -15),
        ("tax", "Tax 10%", -2),  # -1.5p rounded down
    ]
    assert bill.lines[0].quantity == "-0.500 kWh"
    # 16p less 33p: 16.5p rounds down to 16p, as the ledger's running total does
    assert (bill.total_minor, bill.tax_minor, bill.net_minor) == (-17, -2, -15)


def test_a_first_bill_charges_from_what_the_meter_had_reached_by_the_period_start():
    version = flat("20.5")
    december = gross([priced(version, 1000)], version)  # 20.5p before the tenancy's first bill
    january = [priced(version, 1000)]
    bill = compose(
        schedule(version),
        usage=january,
        meters=one_meter(before=december, through=december.plus(gross(january, version))),
    )
    # 41p reached, 20p of it before: 21p, and no adjustment for December
    assert lines(bill) == [("energy", "Energy", 20), ("rounding", invoicing.ROUNDING_LINE, 1)]


def test_several_versions_are_named_and_have_their_own_standing_charge():
    old = flat("20", vid=1, standing_per_day_minor=D("40"), name="Standard")
    new = flat("25", vid=2, valid_from=date(2026, 1, 21), standing_per_day_minor=D("45.5"))
    usage = [priced(old, 1000), priced(new, 2000)]
    bill = compose(schedule(old, new), usage=usage)
    assert [(line.description, line.quantity, line.amount_minor) for line in bill.lines] == [
        ("Energy (prices Standard from 01 Jan 2000)", "1.000 kWh", 20),
        ("Energy (prices from 21 Jan 2026)", "2.000 kWh", 50),
        ("Standing charge (prices Standard from 01 Jan 2000)", "20 days", 800),
        ("Standing charge (prices from 21 Jan 2026)", "11 days", 500),  # 500.5p
        # nothing was posted here (no meters, no standing charges): the lines cancel out
        (invoicing.ROUNDING_LINE, "", -1370),
    ]


def test_days_without_a_standing_charge_or_a_version_have_no_line():
    free = flat("20", vid=1, valid_from=date(2026, 1, 11))  # nothing before 11 Jan
    charged = flat("20", vid=2, valid_from=date(2026, 1, 21), standing_per_day_minor=D("10"))
    bill = compose(schedule(free, charged), standing=110)
    assert [(line.kind, line.quantity, line.amount_minor) for line in bill.lines] == [
        ("standing", "11 days", 110)
    ]


def test_taxes_of_several_versions_are_listed_and_the_highest_is_shown_as_contained():
    added = [
        flat("10", vid=1, tax_percent=D("5"), tax_inclusive=False),
        flat("10", vid=2, valid_from=date(2026, 1, 16), tax_percent=D("20"), tax_inclusive=False),
    ]
    usage = [priced(added[0], 1000), priced(added[1], 1000)]
    bill = compose(schedule(*added), usage=usage)
    # 0.5p + 2p of tax
    assert bill.lines[-2] == invoicing.BillLine(invoicing.TAX, "Tax 5%, 20%", 2)
    included = [
        flat("12", vid=1, tax_percent=D("5")),
        flat("12", vid=2, valid_from=date(2026, 1, 16), tax_percent=D("20")),
    ]
    usage = [priced(included[0], 1000), priced(included[1], 1000)]
    meters = one_meter(through=Priced(sub("24"), sub("24"), 2000))
    bill = compose(schedule(*included), usage=usage, meters=meters)
    # 24p containing 20%: 4p
    assert (bill.total_minor, bill.tax_minor, bill.net_minor, bill.tax_inclusive) == (
        24,
        4,
        20,
        True,
    )
    assert {line.kind for line in bill.lines} == {invoicing.ENERGY}


def test_energy_that_could_not_be_priced_is_counted_with_each_reason_once():
    version = flat("30")
    usage = [
        Usage(energy_wh=500, lines=None, held_reason="no tariff version in force on 14 Jan 2026"),
        priced(version, 1000),
        Usage(energy_wh=300, lines=None, held_reason="no tariff version in force on 14 Jan 2026"),
        Usage(energy_wh=0, lines=None, held_reason="nothing to say about no energy"),
        Usage(energy_wh=200, lines=None),
        Usage(energy_wh=4000, lines=None, held_reason="long gap: 7 h without readings"),
    ]
    bill = compose(schedule(version), usage=usage)
    assert (bill.held_wh, bill.energy_wh) == (5000, 1000)
    assert bill.held_reason == (
        "no tariff version in force on 14 Jan 2026; cannot be priced; "
        "long gap: 7 h without readings"
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"gross_sub": 15 * SCALE, "lines": [[3, "peak", 0, "30", 500, 15 * SCALE]]},
            Usage(500, (rating.Line(3, "peak", 0, D("30"), 500, 15 * SCALE),)),
        ),
        ({"gross_sub": None, "held_reason": "spike", "note": "n"}, Usage(500, None, "spike")),
        ({"gross_sub": None, "note": "released"}, Usage(500, None, "released")),
    ],
    ids=["priced", "held", "held-with-a-note"],
)
def test_an_interval_from_its_stored_fields(fields, expected):
    stored = {"energy_wh": 500, "lines": [], "held_reason": "", "note": ""} | fields
    assert set(stored) == set(Usage.STORED)
    assert Usage.stored(**stored) == expected


def test_line_kinds_are_invoice_line_kinds():
    kinds = {invoicing.ENERGY, invoicing.STANDING, invoicing.ADJUSTMENT, invoicing.TAX}
    assert kinds | {invoicing.ROUNDING, invoicing.FEE} == set(InvoiceLine.Kind.values)


# --- properties -----------------------------------------------------------------

money = st.integers(0, 500_000).map(lambda n: Decimal(n) / 10_000)


@st.composite
def versions(draw) -> tuple[Version, ...]:
    count = draw(st.integers(1, 3))
    days = sorted(draw(st.lists(st.integers(-5, 27), min_size=count, max_size=count, unique=True)))
    tiers = sorted(draw(st.lists(st.integers(1, 5000), max_size=2, unique=True)))
    found = []
    for i, day in enumerate(days, start=1):
        rates = [Rate("", 0, draw(money))] + [Rate("", t, draw(money)) for t in tiers]
        windows: tuple[Window, ...] = ()
        if draw(st.booleans()):
            start = draw(st.integers(0, 22))
            windows = (Window("peak", rating.ALL_DAYS, start, draw(st.integers(start + 1, 24))),)
            rates.append(Rate("peak", 0, draw(money)))
        found.append(
            Version(
                id=i * 10,
                valid_from=JAN + timedelta(days=day),
                rates=tuple(rates),
                windows=windows,
                standing_per_day_minor=draw(money),
                tax_percent=Decimal(draw(st.integers(0, 2500))) / 100,
                tax_inclusive=draw(st.booleans()),
            )
        )
    return tuple(found)


slot_energy = st.lists(st.tuples(st.integers(0, 31 * 48 - 1), st.integers(0, 4000)), max_size=40)
totals = st.builds(
    Priced,
    st.integers(-(10**15), 10**15),
    st.integers(-(10**15), 10**15),
    st.integers(-(10**6), 10**6),
)


def _rated(sched: Schedule, pieces: list[tuple[int, int]]) -> list[Usage]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rated = rating.rate_energy(
        schedule=sched,
        pieces=[(start + timedelta(seconds=rating.SLOT_SECONDS * n), wh) for n, wh in pieces],
    )
    return [Usage(r.energy_wh, r.price.lines if r.price else None, r.held_reason) for r in rated]


@settings(max_examples=200, deadline=None)
@given(
    sched_versions=versions(),
    pieces=slot_energy,
    meters=st.dictionaries(
        st.integers(1, 5), st.builds(MeterTotals, totals, totals, st.none() | totals)
    ),
    standing=st.integers(-10_000, 10_000),
    days=st.integers(0, 31),
)
def test_property_lines_add_up_to_what_was_posted(sched_versions, pieces, meters, standing, days):
    sched = schedule(*sched_versions)
    usage = _rated(sched, pieces)
    bill = compose(sched, usage=usage, meters=meters, standing=standing, end=JAN + timedelta(days))
    # the total is what the ledger posted: whole units per meter, and the standing charges
    posted = sum(
        m.through.minor - (m.before if m.billed is None else m.billed).minor
        for m in meters.values()
    )
    assert bill.total_minor == posted + standing
    assert sum(line.amount_minor for line in bill.lines) == bill.total_minor
    assert bill.net_minor + bill.tax_minor == bill.total_minor
    # every slot's energy is either billed or held
    assert bill.energy_wh + bill.held_wh == sum(wh for _n, wh in pieces)
    # the rounding line, if any, is last and only holds what the other lines leave out
    assert [line.kind for line in bill.lines].count(invoicing.ROUNDING) <= 1
    assert all(line.kind != invoicing.ROUNDING for line in bill.lines[:-1])
    assert bill.billed_through == {str(k): m.through.as_json() for k, m in meters.items()}


@settings(max_examples=200, deadline=None)
@given(
    months=st.lists(
        st.tuples(
            st.lists(st.integers(0, 10**13), max_size=5),  # priced in time for the bill
            st.lists(st.integers(-(10**12), 10**13), max_size=3),  # earlier months', priced late
        ),
        min_size=1,
        max_size=6,
    )
)
def test_property_each_bill_is_what_the_ledger_posted_with_its_carry(months):
    """Bills in a row charge exactly what a carried posting charges at each bill."""
    carry = rating.Carry()
    before = through = Priced()
    billed: Priced | None = None
    charged = []
    for on_time, late in months:
        before = through.plus(Priced(sum(late), sum(late), 0))
        through = before.plus(Priced(sum(on_time), sum(on_time), 0))
        for amount in late:
            carry.add(amount)
        if billed is None:
            first_before = before
            carry.take_minor()  # posted before the first bill's period
        for amount in on_time:
            carry.add(amount)
        bill = compose(
            schedule(flat("1")), meters=one_meter(before=before, through=through, billed=billed)
        )
        assert bill.total_minor == carry.take_minor()
        assert sum(line.amount_minor for line in bill.lines) == bill.total_minor
        billed = Priced.from_json(bill.billed_through["7"])
        charged.append(bill.total_minor)
    # all bills together: the exact total since the first period rounded down once
    assert sum(charged) == through.minor - first_before.minor
