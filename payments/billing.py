"""Billing services: tariffs into schedules, usage postings, standing charges,
postpaid invoices, emergency credit and its recovery.

Usage is rated per slot by ``meters.readings.readings_rate``; the exact
amounts (sub-units) accumulate on the meter and are posted in aggregated
debits by :func:`usage_settle` (see its docstring for when).
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from config.live import broadcast_on_commit, landlord_group, tenancy_group, unit_changed
from landlord.models import AuditEvent, Tenancy, Unit
from meters.derivation import Derivation, slots_apply
from meters.models import Interval, Meter
from supply.decision import supply_evaluate

from . import rating
from .automatic import autopay_invoice_task
from .errors import BillingError
from .ledger import LedgerError, Leg, landlord_account, ledger_post, tenant_account
from .models import (
    Account,
    BillingState,
    Invoice,
    InvoiceLine,
    LedgerTransaction,
    Posting,
)
from .tariffs import unit_schedule

# --- Usage postings --------------------------------------------------------------


def _active_tenancy(unit: Unit, on: date | None = None) -> Tenancy | None:
    return Tenancy.objects.active(on).filter(unit_id=unit.pk).order_by("pk").first()


def _usage_tenancy(unit: Unit, meter: Meter) -> Tenancy | None:
    """Who pays: the tenancy on the (local) day of the newest rated usage, so a
    back-fill after a move-out is charged to the tenant who used it; failing
    that, the current tenancy.

    The day is that of the slot the newest energy lies in, not of the reading
    that ends it: a slot [start, end) belongs to the day of its start, so a
    reading at local midnight closes the day before and that day's tenant pays.
    """
    if meter.rated_at is None:
        return _active_tenancy(unit)
    covered = rating.slot_start(meter.rated_at - timedelta(microseconds=1))
    day = covered.astimezone(zoneinfo.ZoneInfo(unit.property.timezone)).date()
    # No tenancy that day (readings from before the first move-in): the
    # current tenant, as before. See docs/billing.md for this limit.
    return _active_tenancy(unit, on=day) or _active_tenancy(unit)


def usage_settle(
    *, meter: Meter, unit: Unit, now: datetime, force: bool = False
) -> LedgerTransaction | None:
    """Post the meter's rated, unposted usage when its debit window is due.

    ``meter`` must be locked; the caller saves it. Whole minor units are
    posted and the fraction stays in ``meter.pending_sub``. A debit is due
    when any of these holds:

    - ``force`` (the periodic sweep, closing a billing period);
    - the window is over: the oldest unposted usage was rated at least
      DEBIT_WINDOW_SECONDS ago;
    - the readings are older than a window (back-filled data: nothing to wait for);
    - a prepaid balance minus the unposted usage is at or below its low-credit
      threshold, so alerts and cut-off never wait for a window;
    - the amount is negative (a correction after re-derivation).

    The payer is the tenancy on the local day of the newest rated slot;
    usage of a vacant unit is the landlord's own and is posted to their
    vacant-units account, never to the next tenant.
    """
    due = meter.pending_sub // rating.SCALE
    if due == 0:
        if meter.pending_sub == 0:
            meter.pending_since = None
        return None
    if meter.pending_since is None:
        meter.pending_since = now
    window = timedelta(seconds=settings.SUBMETER["DEBIT_WINDOW_SECONDS"])
    tenancy = _usage_tenancy(unit, meter)
    post = (
        force
        or due < 0
        or now - meter.pending_since >= window
        or (meter.rated_at is not None and now - meter.rated_at >= window)
    )
    if not post and tenancy is not None and unit.is_prepaid:
        balance = tenant_account(tenancy=tenancy).balance_minor
        post = balance - due <= unit.low_credit_threshold_minor
    if not post:
        return None
    currency = unit.property.currency
    revenue = landlord_account(landlord=unit.landlord, kind=Account.Kind.REVENUE, currency=currency)
    if tenancy is not None:
        payer = tenant_account(tenancy=tenancy)
    else:
        payer = landlord_account(
            landlord=unit.landlord, kind=Account.Kind.VACANT, currency=currency
        )
    meter.postings += 1
    if due > 0:
        leg = Leg(debit=payer, credit=revenue, amount_minor=due)
        kind, memo = LedgerTransaction.Kind.USAGE, "Energy used"
    else:
        leg = Leg(debit=revenue, credit=payer, amount_minor=-due)
        kind, memo = LedgerTransaction.Kind.CORRECTION, "Usage re-rated after a late reading"
    txn, _ = ledger_post(
        landlord_id=unit.landlord_id,
        kind=kind,
        idempotency_key=f"meter-usage:{meter.pk}:{meter.postings}",
        legs=[leg],
        memo=f"{memo} (meter {meter.serial})",
    )
    meter.pending_sub -= due * rating.SCALE
    meter.posted_minor += due
    meter.pending_since = now if meter.pending_sub >= rating.SCALE else None
    return txn


@transaction.atomic
def usage_settle_meter(*, meter_id: int, now: datetime | None = None, force: bool = False) -> bool:
    """Post a meter's due usage outside intake (periodic sweep, closing a period)."""
    now = now or timezone.now()
    meter = Meter.objects.select_for_update().get(pk=meter_id)
    unit = Unit.objects.select_related("property", "tariff", "landlord").get(pk=meter.unit_id)
    if meter.held_from is not None:
        meter.pending_sub += slots_apply(meter, unit, Derivation())
    posted = usage_settle(meter=meter, unit=unit, now=now, force=force)
    meter.save()
    if posted is not None:
        supply_evaluate(unit=unit, reason="usage")
        unit_changed(unit)
    return posted is not None


# --- Standing charges ----------------------------------------------------------


def _billing_state(tenancy: Tenancy) -> BillingState:
    state, _ = BillingState.objects.get_or_create(
        tenancy_id=tenancy.pk, defaults={"landlord_id": tenancy.landlord_id}
    )
    return BillingState.objects.select_for_update().get(pk=state.pk)


@transaction.atomic
def standing_charges_post(*, tenancy: Tenancy, through: date) -> int:
    """Post each local day's standing charge up to ``through`` once; returns minor units posted.

    Days whose charge cannot be priced (no tariff version in force) are
    skipped and charged later if a version covering them appears: the state
    only moves past days that were charged.
    """
    unit = Unit.objects.select_related("property", "tariff", "landlord").get(pk=tenancy.unit_id)
    last = min(through, tenancy.end_date or through)
    known = (
        BillingState.objects.filter(tenancy_id=tenancy.pk)
        .values_list("standing_through", flat=True)
        .first()
    )
    if known is not None and known >= last:
        return 0  # already charged: no lock, no write
    state = _billing_state(tenancy)
    day = (
        (state.standing_through + timedelta(days=1))
        if state.standing_through
        else tenancy.start_date
    )
    try:
        schedule = unit_schedule(unit=unit)
    except rating.Unpriceable:
        return 0
    posted = 0
    tenant = tenant_account(tenancy=tenancy)
    revenue = landlord_account(
        landlord=unit.landlord, kind=Account.Kind.REVENUE, currency=tenant.currency
    )
    while day <= last:
        try:
            _vid, gross, _tax = rating.standing_charge_sub(schedule=schedule, day=day)
        except rating.Unpriceable:
            break
        state.standing_pending_sub += gross
        due = state.standing_pending_sub // rating.SCALE
        if due > 0:
            ledger_post(
                landlord_id=tenancy.landlord_id,
                kind=LedgerTransaction.Kind.STANDING,
                idempotency_key=f"standing:{tenancy.pk}:{day.isoformat()}",
                legs=[Leg(debit=tenant, credit=revenue, amount_minor=due)],
                memo=f"Standing charge {day:%d %b %Y}",
            )
            state.standing_pending_sub -= due * rating.SCALE
            posted += due
        state.standing_through = day
        day += timedelta(days=1)
    state.save(update_fields=["standing_through", "standing_pending_sub"])
    return posted


# --- Periodic sweep --------------------------------------------------------------


def billing_sweep(*, now: datetime | None = None) -> int:
    """Post due usage windows and today's standing charges for every unit. Idempotent."""
    now = now or timezone.now()
    count = 0
    due = Meter.objects.installed().filter(
        Q(pending_sub__gte=rating.SCALE) | Q(held_from__isnull=False)
    )
    for meter_id in due.values_list("pk", flat=True):
        count += bool(usage_settle_meter(meter_id=meter_id, now=now))
    # Standing charges: only tenancies not yet charged through their local
    # today, found per property time zone, so a sweep of a settled fleet is a
    # few queries rather than two per tenancy every minute.
    active = Tenancy.objects.active()
    zones = active.values_list("unit__property__timezone", flat=True).distinct()
    for zone in sorted(set(zones)):
        today = timezone.localtime(now, zoneinfo.ZoneInfo(zone)).date()
        due_tenancies = active.filter(unit__property__timezone=zone).exclude(
            billing_state__standing_through__gte=today
        )
        for tenancy in due_tenancies:
            count += bool(standing_charges_post(tenancy=tenancy, through=today))
    return count


# --- Invoices -------------------------------------------------------------------


def month_bounds(day: date) -> tuple[date, date]:
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


@dataclass
class _LineAcc:
    energy_wh: int = 0
    net_sub: int = 0


@dataclass
class _Priced:
    """A meter's priced slots before an instant: exact amounts (sub-units) and energy."""

    gross_sub: int = 0
    net_sub: int = 0
    wh: int = 0

    @property
    def minor(self) -> int:
        # The ledger's rule: whole minor units, rounded down, the fraction carried.
        return self.gross_sub // rating.SCALE

    def minus(self, other: _Priced) -> _Priced:
        return _Priced(
            self.gross_sub - other.gross_sub, self.net_sub - other.net_sub, self.wh - other.wh
        )


def _priced_before(*, meter_ids: list[int], at: datetime) -> dict[int, _Priced]:
    rows = (
        Interval.objects.filter(
            meter_id__in=meter_ids,
            kind=Interval.Kind.SLOT,
            gross_sub__isnull=False,
            start__lt=at,
        )
        .values("meter_id")
        .annotate(g=Sum("gross_sub"), n=Sum("net_sub"), w=Sum("energy_wh"))
    )
    return {row["meter_id"]: _Priced(row["g"], row["n"], row["w"]) for row in rows}


def _standing_posted(*, tenancy: Tenancy, start: date, end: date) -> int:
    """Standing charges posted for the local days [start, end) (one key per day)."""
    keys = []
    day = start
    while day < end:
        keys.append(f"standing:{tenancy.pk}:{day.isoformat()}")
        day += timedelta(days=1)
    return (
        Posting.objects.filter(
            landlord_id=tenancy.landlord_id,
            transaction__kind=LedgerTransaction.Kind.STANDING,
            transaction__idempotency_key__in=keys,
        ).aggregate(s=Sum("amount_minor"))["s"]
        or 0
    )


def _kwh(wh: int) -> str:
    return f"{wh / 1000:,.3f} kWh"


ROUNDING_LINE = (
    "Rounding (fractions of a penny left out of the lines above, "
    "and carried from or to the neighbouring bills)"
)


@transaction.atomic
def invoice_issue(*, tenancy: Tenancy, period_start: date, now: datetime | None = None) -> Invoice:
    """The bill for a closed local calendar month: energy lines per tariff version,
    time-of-use band and tier, energy of earlier periods priced since the last
    bill, standing charges, tax, and the energy that could not be priced.
    Issued once per period.

    The total is what the ledger posts for the period, by the ledger's own rule:
    per meter, the whole minor units its exact priced total (in slot order)
    reached by the period's end, less what earlier bills of the tenancy took
    (or, on its first bill, less what it had reached by the period's start);
    standing charges as posted for the period's days. The fraction of a minor
    unit is carried to the next bill exactly as the ledger carries it to the
    next posting, so a tenancy's bills add up to its postings. Lines show
    exact amounts rounded down; a rounding line holds what that leaves out.
    """
    now = now or timezone.now()
    existing = Invoice.objects.filter(tenancy=tenancy, period_start=period_start).first()
    if existing is not None:
        return existing
    unit = Unit.objects.select_related("property", "tariff", "landlord").get(pk=tenancy.unit_id)
    tz = zoneinfo.ZoneInfo(unit.property.timezone)
    start, end = month_bounds(period_start)
    if period_start != start:
        raise BillingError("A billing period starts on the first of a month.")
    if timezone.localtime(now, tz).date() < end:
        raise BillingError("This period is still open.")
    start = max(start, tenancy.start_date)
    if tenancy.end_date is not None:
        end = min(end, tenancy.end_date + timedelta(days=1))
    start_at = datetime.combine(start, time(0), tz).astimezone(UTC)
    end_at = datetime.combine(end, time(0), tz).astimezone(UTC)
    # Everything in the period reaches the ledger before it is itemised (held
    # energy that can be priced by now is priced on the way).
    meter_ids = list(unit.meters.order_by("pk").values_list("pk", flat=True))
    for meter_id in meter_ids:
        usage_settle_meter(meter_id=meter_id, now=now, force=True)
    standing_charges_post(tenancy=tenancy, through=end - timedelta(days=1))

    schedule = unit_schedule(unit=unit)
    versions = {v.id: v for v in schedule.versions}
    acc: dict[tuple[int, str, int, str], _LineAcc] = defaultdict(_LineAcc)
    held_wh = 0
    held_reasons: list[str] = []
    intervals = Interval.objects.filter(
        meter_id__in=meter_ids, start__gte=start_at, start__lt=end_at
    ).order_by("start")
    for interval in intervals:
        if interval.gross_sub is None:
            # Unpriced: a slot (whatever its quality) or a gap still held. A
            # released gap's energy is billed through the slots it was spread over.
            if interval.kind == Interval.Kind.SLOT or interval.quality == Interval.Quality.HELD:
                held_wh += interval.energy_wh
                reason = interval.held_reason or interval.note or "cannot be priced"
                if interval.energy_wh and reason not in held_reasons:
                    held_reasons.append(reason)
            continue
        for raw in interval.lines:
            priced = rating.Line.from_json(raw)
            key = (
                priced.version_id,
                priced.band,
                priced.tier_from_wh,
                str(priced.price_per_kwh_minor),
            )
            acc[key].energy_wh += priced.energy_wh
            acc[key].net_sub += priced.net_sub

    # What the ledger posts for the energy: per meter, up to the period's end,
    # less what was billed before (or stood before the period on a first bill).
    before = _priced_before(meter_ids=meter_ids, at=start_at)
    through = _priced_before(meter_ids=meter_ids, at=end_at)
    previous = Invoice.objects.filter(tenancy=tenancy, period_end=start).first()
    billed = {
        int(meter_id): _Priced(*values)
        for meter_id, values in (previous.billed_through if previous else {}).items()
    }
    energy_minor = 0
    adjustment = _Priced()
    for meter_id in meter_ids:
        upto = through.get(meter_id, _Priced())
        base = billed.get(meter_id) or before.get(meter_id, _Priced())
        energy_minor += upto.minor - base.minor
        late = before.get(meter_id, _Priced()).minus(base)
        adjustment = _Priced(
            adjustment.gross_sub + late.gross_sub,
            adjustment.net_sub + late.net_sub,
            adjustment.wh + late.wh,
        )
    billed_through = {
        str(meter_id): [p.gross_sub, p.net_sub, p.wh]
        for meter_id in meter_ids
        for p in [through.get(meter_id, _Priced())]
    }

    currency = unit.property.currency
    lines: list[InvoiceLine] = []
    tax_sub = gross_sub = 0
    energy_total = 0
    for (vid, band, tier, price), a in sorted(acc.items()):
        version = versions[vid]
        gross, tax = version.gross(a.net_sub)
        tax_sub += tax
        gross_sub += gross
        energy_total += a.energy_wh
        label = band.capitalize() if band else "Energy"
        if tier:
            label += f", above {tier / 1000:g} kWh this month"
        if len(versions) > 1:
            label += f" (prices {version.label})"
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.ENERGY,
                description=label,
                quantity=_kwh(a.energy_wh),
                unit_price=f"{Decimal(price).normalize():f} per kWh",
                amount_minor=a.net_sub // rating.SCALE,
            )
        )
    if adjustment.wh or adjustment.gross_sub:
        tax_sub += adjustment.gross_sub - adjustment.net_sub
        gross_sub += adjustment.gross_sub
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.ADJUSTMENT,
                description=(
                    "Energy of earlier periods priced since the last bill"
                    if adjustment.wh >= 0 and adjustment.gross_sub >= 0
                    else "Correction of energy on earlier bills"
                ),
                quantity=_kwh(adjustment.wh),
                amount_minor=adjustment.net_sub // rating.SCALE,
            )
        )
    standing: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # days, gross, tax
    day = start
    while day < end:
        try:
            vid, gross, tax = rating.standing_charge_sub(schedule=schedule, day=day)
        except rating.Unpriceable:
            day += timedelta(days=1)
            continue
        standing[vid][0] += 1
        standing[vid][1] += gross
        standing[vid][2] += tax
        day += timedelta(days=1)
    for vid, (days, gross, tax) in sorted(standing.items()):
        version = versions[vid]
        if not version.standing_per_day_minor:
            continue
        tax_sub += tax
        gross_sub += gross
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.STANDING,
                description="Standing charge"
                + (f" (prices {version.label})" if len(versions) > 1 else ""),
                quantity=f"{days} days",
                unit_price=f"{version.standing_per_day_minor.normalize():f} per day",
                amount_minor=(gross - tax) // rating.SCALE,
            )
        )
    inclusive = all(v.tax_inclusive for v in versions.values())
    rates = sorted({v.tax_percent for v in versions.values() if v.tax_percent})
    if inclusive and rates:
        # Prices include tax: show the tax they contain.
        bp = rating.tax_bp(rates[-1])
        tax_sub = gross_sub * bp // (10000 + bp)
    tax_minor = tax_sub // rating.SCALE
    if not inclusive and tax_sub:
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.TAX,
                description="Tax " + ", ".join(f"{r.normalize():f}%" for r in rates),
                amount_minor=tax_minor,
            )
        )
    total_minor = energy_minor + _standing_posted(tenancy=tenancy, start=start, end=end)
    shown = sum(line.amount_minor for line in lines)
    if shown != total_minor:
        lines.append(
            InvoiceLine(
                kind=InvoiceLine.Kind.ROUNDING,
                description=ROUNDING_LINE,
                amount_minor=total_minor - shown,
            )
        )
    invoice = Invoice.objects.create(
        landlord_id=tenancy.landlord_id,
        tenancy=tenancy,
        period_start=period_start,
        period_end=end,
        currency=currency,
        issued_at=now,
        energy_wh=energy_total,
        net_minor=total_minor - tax_minor,
        tax_minor=tax_minor,
        total_minor=total_minor,
        tax_inclusive=inclusive,
        held_wh=held_wh,
        held_reason="; ".join(held_reasons)[:300],
        billed_through=billed_through,
    )
    for i, item in enumerate(lines):
        item.invoice = invoice
        item.position = i
    InvoiceLine.objects.bulk_create(lines)
    _notify(tenancy)
    # Postpaid autopay charges the saved card once the bill is committed.
    transaction.on_commit(lambda: autopay_invoice_task.enqueue(invoice.pk), robust=True)
    return invoice


def invoices_issue_due(*, now: datetime | None = None) -> list[Invoice]:
    """Issue last month's invoice for every postpaid tenancy that has none yet."""
    now = now or timezone.now()
    issued = []
    for tenancy in Tenancy.objects.filter(
        unit__billing_mode=Unit.BillingMode.POSTPAID
    ).select_related("unit__property"):
        today = timezone.localtime(now, zoneinfo.ZoneInfo(tenancy.unit.property.timezone)).date()
        last_start, _ = month_bounds(month_bounds(today)[0] - timedelta(days=1))
        if tenancy.start_date >= month_bounds(today)[0]:
            continue
        if tenancy.end_date is not None and tenancy.end_date < last_start:
            continue
        try:
            issued.append(invoice_issue(tenancy=tenancy, period_start=last_start, now=now))
        except (BillingError, rating.Unpriceable):
            continue
    return issued


def open_period_accrued(*, unit: Unit, now: datetime | None = None) -> tuple[int, int]:
    """(minor units, Wh) rated so far in the open month, for the tenant's page."""
    now = now or timezone.now()
    tz = zoneinfo.ZoneInfo(unit.property.timezone)
    start, _ = month_bounds(timezone.localtime(now, tz).date())
    start_at = datetime.combine(start, time(0), tz).astimezone(UTC)
    agg = Interval.objects.filter(meter__unit=unit, start__gte=start_at).aggregate(
        g=Sum("gross_sub", filter=Q(gross_sub__isnull=False)), e=Sum("energy_wh")
    )
    return (agg["g"] or 0) // rating.SCALE, agg["e"] or 0


# --- Reversals --------------------------------------------------------------------


@transaction.atomic
def ledger_reverse(
    *, txn: LedgerTransaction, actor_id: int | None, reason: str
) -> LedgerTransaction:
    """Correct a posting by posting its mirror image; the original stays."""
    if txn.kind == LedgerTransaction.Kind.REVERSAL:
        raise LedgerError("A reversal is corrected by a new posting, not by reversing it.")
    legs = [
        Leg(debit=p.credit, credit=p.debit, amount_minor=p.amount_minor, energy_wh=p.energy_wh)
        for p in txn.postings.select_related("debit", "credit").order_by("pk")
    ]
    reversal, _ = ledger_post(
        landlord_id=txn.landlord_id,
        kind=LedgerTransaction.Kind.REVERSAL,
        idempotency_key=f"reversal:{txn.pk}",
        legs=legs,
        memo=f"Reverses #{txn.pk}: {reason}"[:300],
        created_by_id=actor_id,
        reverses=txn,
    )
    AuditEvent.objects.create(
        landlord_id=txn.landlord_id,
        actor_id=actor_id,
        action="ledger.reversed",
        subject=f"transaction {txn.pk}",
        reason=reason[:300],
    )
    return reversal


def _notify(tenancy: Tenancy) -> None:
    msg = {"type": "unit.changed", "unit_id": tenancy.unit_id}
    broadcast_on_commit(tenancy_group(tenancy.pk), msg)
    broadcast_on_commit(landlord_group(tenancy.landlord_id), msg)
