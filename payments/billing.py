"""Billing services: tariffs into schedules, usage postings, standing charges,
postpaid invoices, emergency credit and its recovery.

Usage is rated per slot by ``meters.readings.readings_rate``; the exact
amounts (sub-units) accumulate on the meter and are posted in aggregated
debits by :func:`usage_settle` (see its docstring for when).
"""

from __future__ import annotations

import contextlib
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from config.live import unit_changed, unit_changed_notify
from landlord.audit import audit_record
from landlord.models import Tenancy, Unit
from meters.derivation import Derivation, slots_apply
from meters.models import Interval, Meter
from supply.decision import supply_evaluate

from . import invoicing, rating
from .allocation import bills_allocate, tenancy_funds
from .errors import BillingError
from .ledger import LedgerError, Leg, landlord_account, ledger_post, tenant_account
from .models import (
    Account,
    BillingState,
    Invoice,
    InvoiceLine,
    LedgerTransaction,
    Payment,
    Posting,
)
from .tariffs import unit_schedule

# --- Usage postings --------------------------------------------------------------


def _active_tenancy(unit: Unit, on: date | None = None) -> Tenancy | None:
    """The unit's tenancy on the local day ``on`` (default: today where the unit is)."""
    day = on or timezone.localdate(timezone=zoneinfo.ZoneInfo(unit.property.timezone))
    return Tenancy.objects.active(day).filter(unit_id=unit.pk).order_by("pk").first()


def _tenancy_on(unit: Unit, day: date | None) -> Tenancy | None:
    """Who pays for usage of a local day: its tenancy; failing that (readings from
    before the first move-in), the current one. See docs/billing.md for this limit."""
    if day is None:
        return _active_tenancy(unit)
    return _active_tenancy(unit, on=day) or _active_tenancy(unit)


def _newest_day(unit: Unit, rated_at: datetime | None) -> date | None:
    """The local day of the slot the energy before ``rated_at`` lies in.

    A slot [start, end) belongs to the day of its start, so a reading at local
    midnight closes the day before and that day's tenant pays.
    """
    if rated_at is None:
        return None
    covered = rating.slot_start(rated_at - timedelta(microseconds=1))
    return covered.astimezone(zoneinfo.ZoneInfo(unit.property.timezone)).date()


def _usage_tenancy(unit: Unit, meter: Meter) -> Tenancy | None:
    """Who pays the pending amount: the tenancy on the (local) day of the newest
    rated usage. :func:`usage_accrue` keeps usage of other days out of it."""
    return _tenancy_on(unit, _newest_day(unit, meter.rated_at))


def usage_accrue(
    *,
    meter: Meter,
    unit: Unit,
    changes: Iterable[tuple[datetime, int]],
    rated_before: datetime | None,
) -> None:
    """Add re-priced slots' amounts (slot start, sub-units) to the meter's pending
    usage, each charged to the tenancy of its slot's own local day.

    The pending amount is owed by the tenancy of the newest rated slot
    (:func:`_usage_tenancy`, from ``meter.rated_at``); ``rated_before`` is
    where the meter was rated to when the pending amount was added. When the
    newest slot moved to another payer's day (a move-out inside one debit
    window) what is pending is posted to its payer first, and the amount of a
    slot on another payer's day (a back-fill, a re-rated earlier slot) is
    posted to that payer at once. ``meter`` must be locked; the caller saves it.
    """
    changes = list(changes)
    current = _newest_day(unit, meter.rated_at)
    before = _newest_day(unit, rated_before)
    by_day: dict[date, int] = {}
    for start, sub in changes:
        day = start.astimezone(zoneinfo.ZoneInfo(unit.property.timezone)).date()
        by_day[day] = by_day.get(day, 0) + sub
    if set(by_day) <= {current} and (before == current or meter.pending_sub // rating.SCALE == 0):
        # One day: one payer, no tenancies to look up (most frames).
        meter.pending_sub += sum(by_day.values())
        return
    payers = {day: _tenancy_on(unit, day) for day in {current, before, *by_day}}
    payer = payers[current]
    if payers[before] != payer:
        _usage_post(
            meter=meter, unit=unit, tenancy=payers[before], due=meter.pending_sub // rating.SCALE
        )
        meter.pending_since = None
    for day in sorted(by_day):
        if payers[day] == payer:
            meter.pending_sub += by_day[day]
            continue
        # The fraction already pending is carried, so the meter's postings
        # still add up to its priced total rounded down once.
        due = (meter.pending_sub % rating.SCALE + by_day[day]) // rating.SCALE
        meter.pending_sub += by_day[day]
        _usage_post(meter=meter, unit=unit, tenancy=payers[day], due=due)


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

    The payer is the tenancy on the local day of the newest rated slot (usage
    of other days was posted to its own payer by :func:`usage_accrue`);
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
    txn = _usage_post(meter=meter, unit=unit, tenancy=tenancy, due=due)
    meter.pending_since = now if meter.pending_sub >= rating.SCALE else None
    return txn


def _usage_post(
    *, meter: Meter, unit: Unit, tenancy: Tenancy | None, due: int
) -> LedgerTransaction | None:
    """Post ``due`` whole minor units of the meter's pending usage to ``tenancy``
    (None: the landlord's vacant-units account); negative is a correction."""
    if due == 0:
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
    return txn


@transaction.atomic
def usage_settle_meter(*, meter_id: int, now: datetime | None = None, force: bool = False) -> bool:
    """Post a meter's due usage outside intake (periodic sweep, closing a period)."""
    now = now or timezone.now()
    meter = Meter.objects.select_for_update().get(pk=meter_id)
    unit = Unit.objects.select_related("property", "tariff", "landlord").get(pk=meter.unit_id)
    if meter.held_from is not None:
        priced = slots_apply(meter, unit, Derivation())
        usage_accrue(meter=meter, unit=unit, changes=priced.changes, rated_before=meter.rated_at)
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


def cycle_bounds(day: date, cycle_day: int = 1) -> tuple[date, date]:
    """The billing cycle holding ``day``: from the latest ``cycle_day`` of a month on
    or before it to the same day of the next month (exclusive). ``cycle_day`` is
    1 to 28, so every month has it; 1 is the calendar month."""
    start = day.replace(day=cycle_day)
    if start > day:
        start = (start.replace(day=1) - timedelta(days=1)).replace(day=cycle_day)
    end = (start.replace(day=1) + timedelta(days=32)).replace(day=cycle_day)
    return start, end


def month_bounds(day: date) -> tuple[date, date]:
    return cycle_bounds(day, 1)


def _priced_before(*, meter_ids: list[int], at: datetime) -> dict[int, invoicing.Priced]:
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
    return {row["meter_id"]: invoicing.Priced(row["g"], row["n"], row["w"]) for row in rows}


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


ROUNDING_LINE = invoicing.ROUNDING_LINE


@dataclass(frozen=True)
class _BillPeriod:
    """The local days [start, end) a bill covers, and the instants they start and end.

    The first bill after a switch to postpaid starts at the switch
    (``from_switch``): energy priced from that instant on, standing charges from
    the next day (the switch charged its own day from the prepaid credit).
    """

    start: date
    end: date
    start_at: datetime
    end_at: datetime
    from_switch: bool = False


# The latest a slot can start: what was priced "by now", whatever its slots' times.
_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)


@transaction.atomic
def postpaid_start(*, tenancy: Tenancy, now: datetime) -> BillingState:
    """Record a tenancy's switch from prepaid to postpaid at ``now``.

    Call after its pending usage and today's standing charge are posted. Its
    bills charge only what is posted from here on, and the allocation of
    payments to those bills starts from the balance left now: credit carried
    to them, or a debt that later payments pay first (``payments.allocation``).
    """
    meter_ids = list(
        Meter.objects.filter(unit_id=tenancy.unit_id).order_by("pk").values_list("pk", flat=True)
    )
    state = _billing_state(tenancy)
    state.postpaid_from = now
    state.postpaid_after_transaction = (
        LedgerTransaction.objects.filter(landlord_id=tenancy.landlord_id).aggregate(m=Max("pk"))[
            "m"
        ]
        or 0
    )
    state.postpaid_after_invoice = (
        Invoice.objects.filter(tenancy_id=tenancy.pk).aggregate(m=Max("pk"))["m"] or 0
    )
    state.postpaid_opening_minor = tenant_account(tenancy=tenancy).balance_minor
    state.postpaid_opening_funds_minor = sum(
        fund.amount_minor for fund in tenancy_funds(tenancy_id=tenancy.pk)
    )
    state.postpaid_priced = {
        str(meter_id): priced.as_json()
        for meter_id, priced in _priced_before(meter_ids=meter_ids, at=_END_OF_TIME).items()
    }
    state.save()
    return state


def _bill_period(
    *,
    tenancy: Tenancy,
    period_start: date,
    tz: zoneinfo.ZoneInfo,
    now: datetime,
    cycle_day: int,
    final: bool,
    switched_at: datetime | None = None,
) -> _BillPeriod:
    """A closed local billing cycle, or the tenancy's part of it (its first and last
    bills cover only the days it ran, so standing charges, posted per day, are
    pro-rated by days); ``final``: the cycle so far, through today (a closing bill
    at a move-out or a switch to prepaid); ``switched_at``: when the unit last
    turned postpaid during the tenancy (nothing before it is billed)."""
    start, end = cycle_bounds(period_start, cycle_day)
    if period_start != start:
        raise BillingError(f"A billing period starts on day {cycle_day} of a month.")
    today = timezone.localtime(now, tz).date()
    if final:
        end = min(end, today + timedelta(days=1))
        if end <= start or tenancy.start_date >= end:
            raise BillingError("A closing bill covers days of this billing cycle up to today.")
    elif today < end:
        raise BillingError("This period is still open.")
    start = max(start, tenancy.start_date)
    if tenancy.end_date is not None:
        end = min(end, tenancy.end_date + timedelta(days=1))
    start_at = datetime.combine(start, time(0), tz).astimezone(UTC)
    end_at = datetime.combine(end, time(0), tz).astimezone(UTC)
    if switched_at is not None and switched_at >= end_at:
        raise BillingError("The unit was prepaid for all of this billing period.")
    if switched_at is not None and switched_at > start_at:
        day_after = timezone.localtime(switched_at, tz).date() + timedelta(days=1)
        return _BillPeriod(min(day_after, end), end, switched_at, end_at, from_switch=True)
    return _BillPeriod(start, end, start_at, end_at)


def _meter_totals(
    *, tenancy: Tenancy, meter_ids: list[int], period: _BillPeriod, switch_priced: dict
) -> dict[int, invoicing.MeterTotals]:
    """Per meter: priced before the period, before its end, and through the
    previous bill (or, on the first bill after a switch to postpaid, by the switch:
    energy priced later for slots before it is shown as an adjustment)."""
    before = _priced_before(meter_ids=meter_ids, at=period.start_at)
    through = _priced_before(meter_ids=meter_ids, at=period.end_at)
    if period.from_switch:
        billed_through = switch_priced
    else:
        previous = Invoice.objects.filter(tenancy=tenancy, period_end=period.start).first()
        billed_through = previous.billed_through if previous else {}
    billed = {
        int(meter_id): invoicing.Priced.from_json(values)
        for meter_id, values in billed_through.items()
    }
    if period.from_switch:
        # A meter with nothing priced by the switch starts from zero.
        billed = {m: billed.get(m, invoicing.Priced()) for m in meter_ids}
    return {
        meter_id: invoicing.MeterTotals(
            before=before.get(meter_id, invoicing.Priced()),
            through=through.get(meter_id, invoicing.Priced()),
            billed=billed.get(meter_id),
        )
        for meter_id in meter_ids
    }


def _bill(
    *,
    tenancy: Tenancy,
    schedule: rating.Schedule,
    meter_ids: list[int],
    period: _BillPeriod,
    usage: list[invoicing.Usage],
    fees: list[tuple[str, int]],
    switch_priced: dict,
) -> invoicing.Bill:
    """Fetch what the ledger posted for the period and compose the bill."""
    return invoicing.bill_compose(
        fees=fees,
        schedule=schedule,
        start=period.start,
        end=period.end,
        usage=usage,
        meters=_meter_totals(
            tenancy=tenancy, meter_ids=meter_ids, period=period, switch_priced=switch_priced
        ),
        standing_posted_minor=_standing_posted(tenancy=tenancy, start=period.start, end=period.end),
    )


def _invoice_create(
    *,
    tenancy: Tenancy,
    period_start: date,
    period_end: date,
    currency: str,
    now: datetime,
    bill: invoicing.Bill,
    due_date: date,
) -> Invoice:
    invoice = Invoice.objects.create(
        due_date=due_date,
        landlord_id=tenancy.landlord_id,
        tenancy=tenancy,
        period_start=period_start,
        period_end=period_end,
        currency=currency,
        issued_at=now,
        energy_wh=bill.energy_wh,
        net_minor=bill.net_minor,
        tax_minor=bill.tax_minor,
        total_minor=bill.total_minor,
        tax_inclusive=bill.tax_inclusive,
        held_wh=bill.held_wh,
        held_reason=bill.held_reason[:300],
        billed_through=bill.billed_through,
    )
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=i,
            kind=InvoiceLine.Kind(line.kind),
            description=line.description,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount_minor=line.amount_minor,
        )
        for i, line in enumerate(bill.lines)
    )
    return invoice


@transaction.atomic
def invoice_issue(
    *, tenancy: Tenancy, period_start: date, now: datetime | None = None, final: bool = False
) -> Invoice:
    """The bill for a closed local billing cycle (the property's cycle day; 1 is the
    calendar month), due ``bill_due_days`` after its issue day: energy lines per tariff version,
    time-of-use band and tier, energy of earlier periods priced since the last
    bill, standing charges, tax, and the energy that could not be priced.
    Issued once per period. ``final`` issues it for the cycle so far, through
    today: the closing bill when a tenancy ends or its unit turns prepaid.

    The total is what the ledger posts for the period, by the ledger's own rule
    (``payments.invoicing`` itemises the bill and states the rule), the fraction
    of a minor unit carried to the next bill, so a tenancy's bills add up to its
    postings. Lines show
    exact amounts rounded down; a rounding line holds what that leaves out.
    """
    now = now or timezone.now()
    existing = Invoice.objects.filter(tenancy=tenancy, period_start=period_start).first()
    if existing is not None:
        return existing
    unit = Unit.objects.select_related("property", "tariff", "landlord").get(pk=tenancy.unit_id)
    tz = zoneinfo.ZoneInfo(unit.property.timezone)
    switch = BillingState.objects.filter(tenancy_id=tenancy.pk).first()
    period = _bill_period(
        tenancy=tenancy,
        period_start=period_start,
        tz=tz,
        now=now,
        cycle_day=unit.property.bill_cycle_day,
        final=final,
        switched_at=switch.postpaid_from if switch else None,
    )
    # Everything in the period reaches the ledger before it is itemised (held
    # energy that can be priced by now is priced on the way).
    meter_ids = list(unit.meters.order_by("pk").values_list("pk", flat=True))
    for meter_id in meter_ids:
        usage_settle_meter(meter_id=meter_id, now=now, force=True)
    standing_charges_post(tenancy=tenancy, through=period.end - timedelta(days=1))

    schedule = unit_schedule(unit=unit)
    # The bill shows unpriced slots (whatever their quality) and gaps still
    # held; a released gap is billed through the slots it was spread over.
    intervals = Interval.objects.filter(
        Q(gross_sub__isnull=False) | Q(kind=Interval.Kind.SLOT) | Q(quality=Interval.Quality.HELD),
        meter_id__in=meter_ids,
        start__gte=period.start_at,
        start__lt=period.end_at,
    ).order_by("start")
    usage = [invoicing.Usage.stored(**row) for row in intervals.values(*invoicing.Usage.STORED)]
    # Late fees charged since the last bill are shown (and totalled) on this one.
    late = list(
        Invoice.objects.filter(
            tenancy=tenancy, late_fee_minor__gt=0, late_fee_billed_on__isnull=True
        ).order_by("period_start")
    )
    fees = [
        (f"Late fee: bill {i.number} unpaid after its due date", i.late_fee_minor) for i in late
    ]
    bill = _bill(
        tenancy=tenancy,
        schedule=schedule,
        meter_ids=meter_ids,
        period=period,
        usage=usage,
        fees=fees,
        switch_priced=switch.postpaid_priced if switch else {},
    )
    invoice = _invoice_create(
        tenancy=tenancy,
        period_start=period_start,
        period_end=period.end,
        currency=unit.property.currency,
        now=now,
        bill=bill,
        due_date=timezone.localtime(now, tz).date() + timedelta(days=unit.property.bill_due_days),
    )
    Invoice.objects.filter(pk__in=[i.pk for i in late]).update(late_fee_billed_on=invoice)
    # Credit carried from earlier payments is applied to the new bill.
    bills_allocate(tenancy=tenancy)
    _notify(tenancy)
    # Postpaid autopay charges the saved card on the due date, not now
    # (payments.automatic.autopays_run_due).
    return invoice


def invoice_postpaid_from(*, invoice: Invoice) -> datetime | None:
    """When the unit turned postpaid (local time), if that was during this bill's
    period: the bill charges only what came after it."""
    switched = (
        BillingState.objects.filter(tenancy_id=invoice.tenancy_id)
        .values_list("postpaid_from", flat=True)
        .first()
    )
    if switched is None:
        return None
    local = timezone.localtime(switched, zoneinfo.ZoneInfo(invoice.tenancy.unit.property.timezone))
    return local if invoice.period_start <= local.date() < invoice.period_end else None


def invoices_issue_due(
    *, now: datetime | None = None, on_progress: Callable[[int], bool] | None = None
) -> list[Invoice]:
    """Issue every closed billing cycle (in each property's time zone and cycle)
    that a postpaid tenancy has no bill for yet, oldest first: the cycles after
    its latest bill, or from its start (or its switch to postpaid), so cycles
    missed while the task was not running are billed when it runs again.

    ``on_progress`` is told how many tenancies are done before each next one;
    when it answers False the run stops there (a later run carries on)."""
    now = now or timezone.now()
    issued = []
    latest = dict(
        Invoice.objects.filter(tenancy__unit__billing_mode=Unit.BillingMode.POSTPAID)
        .values_list("tenancy_id")
        .annotate(m=Max("period_start"))
        .order_by()
    )
    # Tenancies that ended more than a year ago had their closing bill.
    horizon = now.date() - timedelta(days=400)
    tenancies = (
        Tenancy.objects.filter(unit__billing_mode=Unit.BillingMode.POSTPAID)
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=horizon))
        .select_related("unit__property", "billing_state")
        .order_by("pk")
    )
    for done, tenancy in enumerate(tenancies):
        if on_progress is not None and done and not on_progress(done):
            break
        prop = tenancy.unit.property
        tz = zoneinfo.ZoneInfo(prop.timezone)
        today = timezone.localtime(now, tz).date()
        current_start, _ = cycle_bounds(today, prop.bill_cycle_day)
        last = latest.get(tenancy.pk)
        if last is not None:
            start = cycle_bounds(last, prop.bill_cycle_day)[1]
        else:
            first_day = tenancy.start_date
            state = getattr(tenancy, "billing_state", None)
            if state is not None and state.postpaid_from is not None:
                first_day = max(first_day, timezone.localtime(state.postpaid_from, tz).date())
            start = cycle_bounds(first_day, prop.bill_cycle_day)[0]
        while start < current_start:
            if tenancy.end_date is not None and tenancy.end_date < start:
                break
            # Nothing to bill in it (prepaid then), or not priceable yet: the next.
            with contextlib.suppress(BillingError, rating.Unpriceable):
                issued.append(invoice_issue(tenancy=tenancy, period_start=start, now=now))
            start = cycle_bounds(start, prop.bill_cycle_day)[1]
    return issued


def open_period_accrued(*, unit: Unit, now: datetime | None = None) -> tuple[int, int]:
    """(minor units, Wh) rated so far in the open billing cycle, for the tenant's page."""
    now = now or timezone.now()
    tz = zoneinfo.ZoneInfo(unit.property.timezone)
    start, _ = cycle_bounds(timezone.localtime(now, tz).date(), unit.property.bill_cycle_day)
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
    paid = Payment.objects.filter(ledger_transaction=txn).select_related("tenancy").first()
    if paid is not None:
        bills_allocate(tenancy=paid.tenancy)  # the reversed payment no longer pays a bill
    audit_record(
        landlord_id=txn.landlord_id,
        actor_id=actor_id,
        action="ledger.reversed",
        subject=f"transaction {txn.pk}",
        reason=reason[:300],
    )
    return reversal


def _notify(tenancy: Tenancy) -> None:
    unit_changed_notify(
        landlord_id=tenancy.landlord_id, unit_id=tenancy.unit_id, tenancy_ids=[tenancy.pk]
    )
