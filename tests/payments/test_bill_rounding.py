"""A bill equals what the ledger posted for it; energy it could not price is on it,
and energy priced after it was issued reaches the next bill."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.meter_events import held_interval_release
from meters.models import Interval, Meter
from payments import billing
from payments import tariffs as tariff_services
from payments.billing import usage_settle_meter
from payments.ledger import tenant_account
from payments.models import LedgerTransaction, Posting, Tariff

from .test_billing import JAN, _record


def _postpaid_on(world, tariff: Tariff, *, since: date = date(2025, 12, 1)) -> None:
    world.postpaid.tariff = tariff
    world.postpaid.save()
    world.postpaid_tenancy.start_date = since
    world.postpaid_tenancy.save()


def _flat(world, price: str, *, valid_from: date = date(2020, 1, 1), **kw) -> Tariff:
    tariff = Tariff.objects.create(landlord=world.landlord, name="T", currency="GBP")
    tariff_services.tariff_version_create(
        tariff=tariff, valid_from=valid_from, rates=[("", 0, Decimal(price))], **kw
    )
    return tariff


def _usage_posted(tenancy) -> int:
    """Usage charged to the tenancy, less usage corrections given back."""
    account = tenant_account(tenancy=tenancy)
    charged = Posting.objects.filter(debit=account, transaction__kind="usage")
    returned = Posting.objects.filter(credit=account, transaction__kind="correction")
    return sum(p.amount_minor for p in charged) - sum(p.amount_minor for p in returned)


def _lines(invoice) -> list[tuple[str, str, int]]:
    return [(line.kind, line.quantity, line.amount_minor) for line in invoice.lines.all()]


# --- one rounding rule ------------------------------------------------------------------


def test_a_bill_charges_what_the_ledger_posted_and_carries_the_fraction(personas):
    world = personas.a
    _postpaid_on(world, _flat(world, "20.5"))
    tenancy = world.postpaid_tenancy
    dev = world.postpaid_device.device
    _record(dev, (1, 0, 0), (2, 1, 1000), base=JAN)  # 1 kWh in January: 20.5p
    _record(dev, (3, 0, 1000), (4, 1, 2000), base=JAN + timedelta(days=31))  # and in February
    january = billing.invoice_issue(tenancy=tenancy, period_start=date(2026, 1, 1))
    february = billing.invoice_issue(tenancy=tenancy, period_start=date(2026, 2, 1))
    # The ledger posts 20p for January's 20.5p and carries the half penny: 41p in all.
    assert _usage_posted(tenancy) == 41
    assert (january.total_minor, february.total_minor) == (20, 21)
    assert _lines(january) == [("energy", "1.000 kWh", 20)]
    assert _lines(february) == [("energy", "1.000 kWh", 20), ("rounding", "", 1)]


def test_a_bill_with_tax_added_shows_net_plus_tax_equal_to_what_was_posted(personas):
    world = personas.a
    _postpaid_on(world, _flat(world, "10.3", tax_percent=Decimal("5"), tax_inclusive=False))
    _record(world.postpaid_device.device, (1, 0, 0), (2, 1, 1000), base=JAN)
    invoice = billing.invoice_issue(tenancy=world.postpaid_tenancy, period_start=date(2026, 1, 1))
    # 10.3p + 5% = 10.815p: 10p posted; half-up would have said 11p
    assert _usage_posted(world.postpaid_tenancy) == 10
    assert (invoice.total_minor, invoice.tax_minor, invoice.net_minor) == (10, 0, 10)


money = st.integers(0, 500_000).map(lambda n: Decimal(n) / 10_000)


@st.composite
def tariffs(draw):
    tiers = draw(st.lists(st.integers(1, 5000), max_size=2, unique=True))
    rates = [("", 0, draw(money))] + [("", t, draw(money)) for t in sorted(tiers)]
    windows: tuple[tuple[str, str, int, int], ...] = ()
    if draw(st.booleans()):
        start = draw(st.integers(0, 22))
        end = draw(st.integers(start + 1, 24))
        windows = (("peak", draw(st.sampled_from(["all", "weekdays", "weekends"])), start, end),)
        rates.append(("peak", 0, draw(money)))
    return {
        "rates": rates,
        "windows": windows,
        "standing_charge_per_day_minor": draw(money),
        "tax_percent": Decimal(draw(st.integers(0, 2500))) / 100,
        "tax_inclusive": draw(st.booleans()),
    }


steps = st.lists(st.tuples(st.integers(1, 14), st.integers(0, 4000)), min_size=1, max_size=12)


class _Rollback(Exception):
    pass


def _use(dev, steps_, *, base: datetime, seq: int = 0, register: int = 0) -> int:
    """Readings ``gap`` minutes and ``wh`` apart, sent in one frame."""
    items, minute = [], 0
    for gap, wh in steps_:
        seq, minute, register = seq + 1, minute + gap, register + wh
        items.append((seq, minute, register))
    _record(dev, *items, base=base)
    return register


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tariff=tariffs(), december=steps, january=steps)
def test_property_a_bill_equals_the_postings_it_covers(personas, tariff, december, january):
    world = personas.a
    tenancy = world.postpaid_tenancy
    dev = world.postpaid_device.device
    try:
        with transaction.atomic():
            t = Tariff.objects.create(landlord=world.landlord, name="P", currency="GBP")
            tariff_services.tariff_version_create(tariff=t, valid_from=date(2020, 1, 1), **tariff)
            _postpaid_on(world, t, since=date(2025, 12, 30))
            register = _use(dev, december, base=datetime(2025, 12, 30, 20, tzinfo=UTC))
            # December is posted before January is used, as the debit window would
            usage_settle_meter(meter_id=Meter.objects.get(device=dev).pk, force=True)
            before_january = _usage_posted(tenancy)
            _use(dev, january, base=JAN, seq=len(december), register=register)
            invoice = billing.invoice_issue(tenancy=tenancy, period_start=date(2026, 1, 1))
            standing = Posting.objects.filter(
                transaction__kind=LedgerTransaction.Kind.STANDING,
                transaction__idempotency_key__startswith=f"standing:{tenancy.pk}:2026-01-",
            )
            posted = _usage_posted(tenancy) - before_january
            posted += sum(p.amount_minor for p in standing)
            assert invoice.total_minor == posted
            assert invoice.net_minor + invoice.tax_minor == invoice.total_minor
            assert sum(line.amount_minor for line in invoice.lines.all()) == invoice.total_minor
            raise _Rollback
    except _Rollback:
        pass


# --- energy that could not be priced, and energy priced later -----------------------------


def test_a_bill_says_how_much_energy_it_could_not_price_and_why(personas):
    world = personas.a
    # no prices before 20 January
    _postpaid_on(world, _flat(world, "30", valid_from=date(2026, 1, 20)))
    dev = world.postpaid_device.device
    # an hour between readings: spread over two slots as estimated, but unpriceable
    _record(dev, (1, 0, 0), (2, 60, 1000), base=JAN)
    _record(dev, (3, 0, 1000), (4, 1, 2000), base=JAN + timedelta(days=7))  # 21 Jan: priced
    invoice = billing.invoice_issue(tenancy=world.postpaid_tenancy, period_start=date(2026, 1, 1))
    assert (invoice.held_wh, invoice.total_minor) == (1000, 30)
    assert "no tariff version in force on 14 Jan 2026" in invoice.held_reason
    client = Client()
    client.force_login(world.postpaid_tenant)
    page = client.get(reverse("payments:invoice", args=[invoice.pk])).content.decode()
    assert "1.000 kWh" in page and "could not be priced" in page
    assert "no tariff version in force on 14 Jan 2026" in page
    # the landlord sees it among the held energy, not as ordinary estimated energy
    held = Interval.objects.filter(meter__device=dev, start__date=date(2026, 1, 14))
    assert {i.quality for i in held} == {"held"}
    client.force_login(world.staff)
    flagged = client.get(reverse("landlord:flagged")).content.decode()
    assert flagged.count('<tr data-rule="gap-estimated">') == 2


def test_estimated_energy_once_priced_is_estimated_again(personas):
    world = personas.a
    tariff = _flat(world, "30", valid_from=date(2026, 1, 20))
    _postpaid_on(world, tariff)
    dev = world.postpaid_device.device
    _record(dev, (1, 0, 0), (2, 60, 1000), base=JAN)  # estimated, and no prices yet
    tariff_services.tariff_version_create(
        tariff=tariff, valid_from=date(2026, 1, 1), rates=[("", 0, Decimal("30"))]
    )
    usage_settle_meter(meter_id=Meter.objects.get(device=dev).pk)
    slots = Interval.objects.filter(meter__device=dev)
    assert [(i.quality, i.gross_sub) for i in slots.order_by("start")] == [
        ("estimated", 15 * 10**11),
        ("estimated", 15 * 10**11),
    ]


def _held_gap_in_january(world):
    """1 kWh across a 7-hour silence on 14 Jan: held, not billed."""
    _postpaid_on(world, _flat(world, "30"))
    dev = world.postpaid_device.device
    _record(dev, (1, 0, 0), (2, 420, 1000), base=JAN)
    return dev


def _release(world, dev) -> None:
    gap = Interval.objects.get(kind=Interval.Kind.GAP, meter__device=dev)
    held_interval_release(interval_id=gap.pk, actor_id=world.staff.pk, reason="tenant was home")


def _fill_with_a_late_reading(world, dev) -> None:
    # the meter's buffer arrives: a reading every ten minutes through the silence
    _record(dev, *[(10 + i, 10 * i, 1000 * i // 42) for i in range(1, 42)], base=JAN)


def _energy_priced_after_the_january_bill(world, price_it) -> None:
    tenancy = world.postpaid_tenancy
    dev = _held_gap_in_january(world)
    january = billing.invoice_issue(tenancy=tenancy, period_start=date(2026, 1, 1))
    assert (january.held_wh, january.total_minor) == (1000, 0)
    price_it(world, dev)
    assert _usage_posted(tenancy) == 30  # the ledger has it ...
    _record(dev, (100, 0, 1000), (101, 1, 1500), base=JAN + timedelta(days=31))  # Feb: 15p
    february = billing.invoice_issue(tenancy=tenancy, period_start=date(2026, 2, 1))
    # ... and so does the next bill
    assert _lines(february) == [
        ("energy", "0.500 kWh", 15),
        ("adjustment", "1.000 kWh", 30),
    ]
    assert february.total_minor == 45 == _usage_posted(tenancy)


def test_held_energy_released_after_a_bill_is_on_the_next_bill(personas):
    _energy_priced_after_the_january_bill(personas.a, _release)


def test_a_gap_filled_after_a_bill_is_on_the_next_bill(personas):
    _energy_priced_after_the_january_bill(personas.a, _fill_with_a_late_reading)
