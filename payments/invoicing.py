"""Bills itemised: pure functions from a period's priced energy, what each meter
had been priced through, and the standing charges, to a bill's lines and totals.

Nothing here touches the database; ``payments.billing.invoice_issue`` posts
what is pending, fetches these facts, calls :func:`bill_compose` and stores
the result as an ``Invoice`` with its lines.

One rounding rule (docs/payments.md, "Bills and rounding"). A bill charges
what the ledger posted for it: per meter, the whole minor units (rounded
down) its exact priced total had reached by the period's end, less what the
previous bill charged through (on a first bill, less what it had reached by
the period's start), plus the standing charges posted for the period's days.
The fraction left is charged on the next bill, as the ledger carries it to
its next posting. Lines show exact amounts rounded down, and a rounding line
holds the difference, so the lines always add up to the total. Tax is
computed once from the exact amounts, rounded down; net is the total less
the tax.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from . import rating

# Line kinds, the values of ``payments.models.InvoiceLine.Kind``.
ENERGY = "energy"
STANDING = "standing"
ADJUSTMENT = "adjustment"
TAX = "tax"
ROUNDING = "rounding"
FEE = "fee"

ROUNDING_LINE = (
    "Rounding (fractions of a penny left out of the lines above, "
    "and carried from or to the neighbouring bills)"
)
UNPRICED_REASON = "cannot be priced"


@dataclass(frozen=True)
class Priced:
    """A meter's priced slots up to an instant: exact amounts (sub-units) and energy."""

    gross_sub: int = 0
    net_sub: int = 0
    wh: int = 0

    @property
    def minor(self) -> int:
        # The ledger's rule: whole minor units, rounded down, the fraction carried.
        return self.gross_sub // rating.SCALE

    def plus(self, other: Priced) -> Priced:
        return Priced(
            self.gross_sub + other.gross_sub, self.net_sub + other.net_sub, self.wh + other.wh
        )

    def minus(self, other: Priced) -> Priced:
        return Priced(
            self.gross_sub - other.gross_sub, self.net_sub - other.net_sub, self.wh - other.wh
        )

    def as_json(self) -> list[int]:
        return [self.gross_sub, self.net_sub, self.wh]

    @classmethod
    def from_json(cls, raw: Sequence[int]) -> Priced:
        gross_sub, net_sub, wh = raw
        return cls(gross_sub, net_sub, wh)


@dataclass(frozen=True)
class MeterTotals:
    """One meter's priced slots before the period's start (``before``) and before
    its end (``through``), and what the tenancy's previous bill charged through
    (``billed``; ``None`` when there is no previous bill)."""

    before: Priced = Priced()
    through: Priced = Priced()
    billed: Priced | None = None

    @property
    def base(self) -> Priced:
        """Where this bill starts charging from."""
        return self.billed if self.billed is not None else self.before

    @property
    def charged_minor(self) -> int:
        return self.through.minor - self.base.minor

    @property
    def late(self) -> Priced:
        """Energy of earlier periods priced since the previous bill (negative: a correction)."""
        return self.before.minus(self.base)


@dataclass(frozen=True)
class Usage:
    """One interval of the period: priced (its tariff lines) or, with ``lines``
    ``None``, energy that could not be priced and why."""

    energy_wh: int
    lines: tuple[rating.Line, ...] | None
    held_reason: str = ""

    STORED = ("energy_wh", "gross_sub", "lines", "held_reason", "note")

    @classmethod
    def stored(
        cls,
        *,
        energy_wh: int,
        gross_sub: int | None,
        lines: Iterable[Sequence[object]],
        held_reason: str,
        note: str,
    ) -> Usage:
        """An interval from its stored fields: priced when it has an amount (its
        lines as JSON); otherwise held, with its reason or else its note."""
        if gross_sub is None:
            return cls(energy_wh, None, held_reason or note)
        return cls(energy_wh, tuple(rating.Line.from_json(raw) for raw in lines))


@dataclass(frozen=True)
class BillLine:
    kind: str
    description: str
    amount_minor: int
    quantity: str = ""
    unit_price: str = ""


@dataclass(frozen=True)
class Bill:
    lines: tuple[BillLine, ...]
    energy_wh: int
    net_minor: int
    tax_minor: int
    total_minor: int
    tax_inclusive: bool
    held_wh: int
    held_reason: str
    # Per meter (id as a string), what this bill charged through: the next one
    # starts from here.
    billed_through: dict[str, list[int]]


@dataclass(frozen=True)
class Part:
    """Lines of one kind with the exact amounts behind them."""

    lines: tuple[BillLine, ...] = ()
    gross_sub: int = 0
    tax_sub: int = 0


def bill_compose(
    *,
    schedule: rating.Schedule,
    start: date,
    end: date,
    usage: Sequence[Usage],
    meters: Mapping[int, MeterTotals],
    standing_posted_minor: int,
    fees: Sequence[tuple[str, int]] = (),
) -> Bill:
    """The bill for the local days [start, end).

    ``usage`` is the period's intervals in time order, ``meters`` every meter
    of the unit (in the order stored on the bill) and ``standing_posted_minor``
    the standing charges the ledger posted for the period's days. ``fees``
    (description, minor units) are late fees the ledger posted since the last
    bill: each is a line of its own, outside tax, and part of the total.
    """
    versions = {v.id: v for v in schedule.versions}
    parts = (
        energy_part(usage=usage, versions=versions),
        adjustment_part(meters=meters),
        standing_part(schedule=schedule, start=start, end=end),
    )
    gross_sub = sum(part.gross_sub for part in parts)
    tax_sub = sum(part.tax_sub for part in parts)
    inclusive = all(v.tax_inclusive for v in versions.values())
    tax_minor, tax_lines = tax_part(
        versions=versions, inclusive=inclusive, gross_sub=gross_sub, tax_sub=tax_sub
    )
    lines = [line for part in parts for line in part.lines] + tax_lines
    lines += [BillLine(kind=FEE, description=text, amount_minor=amount) for text, amount in fees]
    total_minor = (
        energy_charged_minor(meters=meters)
        + standing_posted_minor
        + sum(amount for _, amount in fees)
    )
    lines += rounding_lines(lines=lines, total_minor=total_minor)
    held_wh, held_reason = held(usage=usage)
    return Bill(
        lines=tuple(lines),
        energy_wh=sum(line.energy_wh for u in usage for line in u.lines or ()),
        net_minor=total_minor - tax_minor,
        tax_minor=tax_minor,
        total_minor=total_minor,
        tax_inclusive=inclusive,
        held_wh=held_wh,
        held_reason=held_reason,
        billed_through={str(mid): m.through.as_json() for mid, m in meters.items()},
    )


def energy_charged_minor(*, meters: Mapping[int, MeterTotals]) -> int:
    """What the ledger posted for the energy: whole minor units per meter."""
    return sum(m.charged_minor for m in meters.values())


def energy_part(*, usage: Sequence[Usage], versions: Mapping[int, rating.Version]) -> Part:
    """One line per tariff version, band, tier and price, in that order."""
    acc: dict[tuple[int, str, int, str], list[int]] = {}  # -> [Wh, net sub-units]
    for u in usage:
        for priced in u.lines or ():
            key = (
                priced.version_id,
                priced.band,
                priced.tier_from_wh,
                str(priced.price_per_kwh_minor),
            )
            energy_net = acc.setdefault(key, [0, 0])
            energy_net[0] += priced.energy_wh
            energy_net[1] += priced.net_sub
    lines: list[BillLine] = []
    gross_sub = tax_sub = 0
    for (vid, band, tier, price), (wh, net) in sorted(acc.items()):
        version = versions[vid]
        gross, tax = version.gross(net)
        gross_sub += gross
        tax_sub += tax
        lines.append(
            BillLine(
                kind=ENERGY,
                description=_energy_label(version, band, tier, several=len(versions) > 1),
                quantity=kwh(wh),
                unit_price=f"{Decimal(price).normalize():f} per kWh",
                amount_minor=net // rating.SCALE,
            )
        )
    return Part(tuple(lines), gross_sub, tax_sub)


def _energy_label(version: rating.Version, band: str, tier: int, *, several: bool) -> str:
    label = band.capitalize() if band else "Energy"
    if tier:
        label += f", above {tier / 1000:g} kWh this month"
    if several:
        label += f" (prices {version.label})"
    return label


def adjustment_part(*, meters: Mapping[int, MeterTotals]) -> Part:
    """Energy of earlier periods priced (or corrected) since the previous bill."""
    late = Priced()
    for m in meters.values():
        late = late.plus(m.late)
    if not (late.wh or late.gross_sub):
        return Part()
    line = BillLine(
        kind=ADJUSTMENT,
        description=(
            "Energy of earlier periods priced since the last bill"
            if late.wh >= 0 and late.gross_sub >= 0
            else "Correction of energy on earlier bills"
        ),
        quantity=kwh(late.wh),
        amount_minor=late.net_sub // rating.SCALE,
    )
    return Part((line,), late.gross_sub, late.gross_sub - late.net_sub)


def standing_part(*, schedule: rating.Schedule, start: date, end: date) -> Part:
    """One line per tariff version with a standing charge; unpriceable days are left out."""
    versions = {v.id: v for v in schedule.versions}
    lines: list[BillLine] = []
    gross_sub = tax_sub = 0
    for vid, (days, gross, tax) in _standing_by_version(schedule, start, end):
        version = versions[vid]
        if not version.standing_per_day_minor:
            continue
        gross_sub += gross
        tax_sub += tax
        lines.append(
            BillLine(
                kind=STANDING,
                description="Standing charge"
                + (f" (prices {version.label})" if len(versions) > 1 else ""),
                quantity=f"{days} days",
                unit_price=f"{version.standing_per_day_minor.normalize():f} per day",
                amount_minor=(gross - tax) // rating.SCALE,
            )
        )
    return Part(tuple(lines), gross_sub, tax_sub)


@functools.lru_cache(maxsize=256)
def _standing_by_version(
    schedule: rating.Schedule, start: date, end: date
) -> tuple[tuple[int, tuple[int, int, int]], ...]:
    """(version id, (days, gross, tax)) of the standing charges of the local days
    [start, end), by version id. Remembered: a billing run asks it once per
    tariff and period, not once per bill."""
    per_version: dict[int, list[int]] = {}
    for offset in range((end - start).days):
        day = start + timedelta(days=offset)
        try:
            vid, gross, tax = rating.standing_charge_sub(schedule=schedule, day=day)
        except rating.Unpriceable:
            continue
        days_gross_tax = per_version.setdefault(vid, [0, 0, 0])
        days_gross_tax[0] += 1
        days_gross_tax[1] += gross
        days_gross_tax[2] += tax
    return tuple(
        (vid, (days, gross, tax)) for vid, (days, gross, tax) in sorted(per_version.items())
    )


def tax_part(
    *, versions: Mapping[int, rating.Version], inclusive: bool, gross_sub: int, tax_sub: int
) -> tuple[int, list[BillLine]]:
    """(tax in minor units, its line): added tax is a line, tax in the prices is not."""
    rates = sorted({v.tax_percent for v in versions.values() if v.tax_percent})
    if inclusive and rates:
        # Prices include tax: show the tax they contain.
        bp = rating.tax_bp(rates[-1])
        tax_sub = gross_sub * bp // (10000 + bp)
    tax_minor = tax_sub // rating.SCALE
    if inclusive or not tax_sub:
        return tax_minor, []
    line = BillLine(
        kind=TAX,
        description="Tax " + ", ".join(f"{r.normalize():f}%" for r in rates),
        amount_minor=tax_minor,
    )
    return tax_minor, [line]


def rounding_lines(*, lines: Sequence[BillLine], total_minor: int) -> list[BillLine]:
    """What the lines, each rounded down, leave out of the total (none if nothing)."""
    shown = sum(line.amount_minor for line in lines)
    if shown == total_minor:
        return []
    return [BillLine(kind=ROUNDING, description=ROUNDING_LINE, amount_minor=total_minor - shown)]


def held(*, usage: Sequence[Usage]) -> tuple[int, str]:
    """(Wh, reasons) of the energy that could not be priced; each reason once."""
    wh = 0
    reasons: list[str] = []
    for u in usage:
        if u.lines is not None:
            continue
        wh += u.energy_wh
        reason = u.held_reason or UNPRICED_REASON
        if u.energy_wh and reason not in reasons:
            reasons.append(reason)
    return wh, "; ".join(reasons)


def kwh(wh: int) -> str:
    return f"{wh / 1000:,.3f} kWh"
