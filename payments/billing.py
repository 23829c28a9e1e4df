"""Billing services: tariffs into schedules, usage postings, standing charges,
postpaid invoices, emergency credit and its recovery.

Usage is rated per slot by ``meters.services.readings_rate``; the exact
amounts (sub-units) accumulate on the meter and are posted in aggregated
debits by :func:`usage_settle` (see its docstring for when).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, Sum
from django.utils import timezone

from config.live import broadcast_on_commit, landlord_group, tenancy_group
from landlord.models import AuditEvent, Tenancy, Unit

from . import invoicing, rating
from .ledger import LedgerError, Leg, landlord_account, ledger_post, tenant_account
from .models import (
    Account,
    BillingState,
    Invoice,
    InvoiceLine,
    LedgerTransaction,
    Posting,
    Tariff,
    TariffVersion,
)

if TYPE_CHECKING:
    from meters.models import Meter


class BillingError(Exception):
    """A billing request that cannot be done; the message is for the person who asked."""


# --- Tariffs -------------------------------------------------------------------


def tariff_versions(*, tariff_id: int) -> tuple[rating.Version, ...]:
    versions = TariffVersion.objects.filter(tariff_id=tariff_id).prefetch_related(
        "rates", "windows"
    )
    return tuple(
        rating.Version(
            id=v.pk,
            valid_from=v.valid_from,
            rates=tuple(
                rating.Rate(
                    band=r.band,
                    tier_from_wh=r.tier_from_wh,
                    price_per_kwh_minor=r.price_per_kwh_minor,
                )
                for r in v.rates.all()
            ),
            windows=tuple(
                rating.Window(
                    band=w.band, days=w.days, start_hour=w.start_hour, end_hour=w.end_hour
                )
                for w in v.windows.all()
            ),
            standing_per_day_minor=v.standing_charge_per_day_minor,
            tax_percent=v.tax_percent,
            tax_inclusive=v.tax_inclusive,
        )
        for v in versions
    )


# tariff id -> (revision, versions). Versions change only through
# tariff_version_create or the admin, which bump the tariff's revision; the
# unit's row (read anyway) carries the revision, so a cache hit costs no query.
_VERSIONS: dict[int, tuple[int, tuple[rating.Version, ...]]] = {}


def _cached_versions(tariff: Tariff) -> tuple[rating.Version, ...]:
    hit = _VERSIONS.get(tariff.pk)
    if hit is not None and hit[0] == tariff.revision:
        return hit[1]
    versions = tariff_versions(tariff_id=tariff.pk)
    if len(_VERSIONS) > 10_000:
        _VERSIONS.clear()
    _VERSIONS[tariff.pk] = (tariff.revision, versions)
    return versions


def unit_schedule(*, unit: Unit) -> rating.Schedule:
    """The unit's tariff as the rating engine sees it; raises Unpriceable with the reason."""
    tariff: Tariff | None = unit.tariff
    if tariff is None:
        raise rating.Unpriceable("the unit has no tariff")
    return rating.Schedule(
        versions=_cached_versions(tariff),
        tz=zoneinfo.ZoneInfo(unit.property.timezone),
        currency=unit.property.currency,
        tariff_currency=tariff.currency,
        tariff_name=tariff.name,
    )


@transaction.atomic
def tariff_version_create(
    *,
    tariff: Tariff,
    valid_from: date,
    rates: list[tuple[str, int, Decimal]],
    windows: tuple[tuple[str, str, int, int], ...] = (),
    standing_charge_per_day_minor: Decimal = Decimal(0),
    tax_percent: Decimal = Decimal(0),
    tax_inclusive: bool = True,
) -> TariffVersion:
    """A new version from ``valid_from``; consumption before it keeps its old prices.

    A version may not start on or before a day whose consumption was already
    priced with this tariff: that would re-price only the slots touched
    again. Corrections of past prices are adjustments, not new versions.
    """
    from meters.models import Interval

    Tariff.objects.select_for_update().filter(pk=tariff.pk).first()
    # A slot belongs to the local day of its start, in its own property's zone.
    latest = (
        Interval.objects.filter(
            tariff_version_id__in=list(tariff.versions.values_list("pk", flat=True))
        )
        .values("meter__unit__property__timezone")
        .annotate(last=Max("start"))
    )
    last_day = max(
        (
            row["last"].astimezone(zoneinfo.ZoneInfo(row["meter__unit__property__timezone"])).date()
            for row in latest
        ),
        default=None,
    )
    if last_day is not None and valid_from <= last_day:
        raise BillingError(
            f"Consumption up to {last_day:%d %b %Y} was already priced with this tariff; "
            f"a new version must start on {last_day + timedelta(days=1):%d %b %Y} or later."
        )
    version = TariffVersion.objects.create(
        tariff=tariff,
        landlord_id=tariff.landlord_id,
        valid_from=valid_from,
        standing_charge_per_day_minor=standing_charge_per_day_minor,
        tax_percent=tax_percent,
        tax_inclusive=tax_inclusive,
    )
    for band, tier_from_wh, price in rates:
        version.rates.create(band=band, tier_from_wh=tier_from_wh, price_per_kwh_minor=price)
    for band, days, start_hour, end_hour in windows:
        version.windows.create(band=band, days=days, start_hour=start_hour, end_hour=end_hour)
    tariff.bump_revision()
    # Validate what was built; a version that cannot price any hour is refused.
    built = next(v for v in tariff_versions(tariff_id=tariff.pk) if v.id == version.pk)
    bands = {w.band for w in built.windows} | {rating.ANY_BAND}
    for band in bands:
        if band == rating.ANY_BAND and len(bands) > 1 and _windows_cover_week(built):
            continue
        built.rates_for(band)
    return version


def _windows_cover_week(version: rating.Version) -> bool:
    monday = datetime(2024, 1, 1)
    return all(
        any(w.covers(monday + timedelta(days=d, hours=h)) for w in version.windows)
        for d in range(7)
        for h in range(24)
    )


def current_price_per_kwh(*, unit: Unit, now: datetime | None = None) -> Decimal | None:
    """The energy price in force now (lowest tier of the current band), for estimates."""
    try:
        schedule = unit_schedule(unit=unit)
        version = schedule.version_at(now or timezone.now())
        band = version.band_at(schedule.local(now or timezone.now()))
        return version.rates_for(band)[0].price_per_kwh_minor
    except rating.Unpriceable:
        return None


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
    from meters.models import Meter
    from meters.services import usage_settle_meter

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


def _priced_before(*, meter_ids: list[int], at: datetime) -> dict[int, invoicing.Priced]:
    from meters.models import Interval

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
    """The local days [start, end) a bill covers, and the instants they start and end."""

    start: date
    end: date
    start_at: datetime
    end_at: datetime


def _bill_period(
    *, tenancy: Tenancy, period_start: date, tz: zoneinfo.ZoneInfo, now: datetime
) -> _BillPeriod:
    """A closed local calendar month, or the tenancy's part of it."""
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
    return _BillPeriod(start, end, start_at, end_at)


def _meter_totals(
    *, tenancy: Tenancy, meter_ids: list[int], period: _BillPeriod
) -> dict[int, invoicing.MeterTotals]:
    """Per meter: priced before the period, before its end, and through the previous bill."""
    before = _priced_before(meter_ids=meter_ids, at=period.start_at)
    through = _priced_before(meter_ids=meter_ids, at=period.end_at)
    previous = Invoice.objects.filter(tenancy=tenancy, period_end=period.start).first()
    billed = {
        int(meter_id): invoicing.Priced.from_json(values)
        for meter_id, values in (previous.billed_through if previous else {}).items()
    }
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
) -> invoicing.Bill:
    """Fetch what the ledger posted for the period and compose the bill."""
    return invoicing.bill_compose(
        schedule=schedule,
        start=period.start,
        end=period.end,
        usage=usage,
        meters=_meter_totals(tenancy=tenancy, meter_ids=meter_ids, period=period),
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
) -> Invoice:
    invoice = Invoice.objects.create(
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
def invoice_issue(*, tenancy: Tenancy, period_start: date, now: datetime | None = None) -> Invoice:
    """The bill for a closed local calendar month: energy lines per tariff version,
    time-of-use band and tier, energy of earlier periods priced since the last
    bill, standing charges, tax, and the energy that could not be priced.
    Issued once per period.

    The total is what the ledger posts for the period, by the ledger's own rule
    (``payments.invoicing`` itemises the bill and states the rule), the fraction
    of a minor unit carried to the next bill, so a tenancy's bills add up to its
    postings. Lines show
    exact amounts rounded down; a rounding line holds what that leaves out.
    """
    from meters.models import Interval
    from meters.services import usage_settle_meter

    now = now or timezone.now()
    existing = Invoice.objects.filter(tenancy=tenancy, period_start=period_start).first()
    if existing is not None:
        return existing
    unit = Unit.objects.select_related("property", "tariff", "landlord").get(pk=tenancy.unit_id)
    tz = zoneinfo.ZoneInfo(unit.property.timezone)
    period = _bill_period(tenancy=tenancy, period_start=period_start, tz=tz, now=now)
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
    bill = _bill(
        tenancy=tenancy, schedule=schedule, meter_ids=meter_ids, period=period, usage=usage
    )
    invoice = _invoice_create(
        tenancy=tenancy,
        period_start=period_start,
        period_end=period.end,
        currency=unit.property.currency,
        now=now,
        bill=bill,
    )
    _notify(tenancy)
    # Postpaid autopay charges the saved card once the bill is committed.
    from .tasks import autopay_invoice_task

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
    from meters.models import Interval

    now = now or timezone.now()
    tz = zoneinfo.ZoneInfo(unit.property.timezone)
    start, _ = month_bounds(timezone.localtime(now, tz).date())
    start_at = datetime.combine(start, time(0), tz).astimezone(UTC)
    agg = Interval.objects.filter(meter__unit=unit, start__gte=start_at).aggregate(
        g=Sum("gross_sub", filter=Q(gross_sub__isnull=False)), e=Sum("energy_wh")
    )
    return (agg["g"] or 0) // rating.SCALE, agg["e"] or 0


# --- Emergency credit and debt recovery ----------------------------------------


def emergency_debt(*, tenancy: Tenancy) -> int:
    """Emergency credit advanced to the tenancy and not yet repaid, in minor units."""
    account = Account.objects.filter(tenancy_id=tenancy.pk).first()
    if account is None:
        return 0
    advance = Account.objects.filter(
        landlord_id=tenancy.landlord_id, kind=Account.Kind.ADVANCE, currency=account.currency
    ).first()
    if advance is None:
        return 0
    lent = Posting.objects.filter(debit=advance, credit=account).aggregate(s=Sum("amount_minor"))
    repaid = Posting.objects.filter(debit=account, credit=advance).aggregate(s=Sum("amount_minor"))
    return (lent["s"] or 0) - (repaid["s"] or 0)


def emergency_credit_available(*, tenancy: Tenancy, balance_minor: int | None = None) -> bool:
    unit = tenancy.unit
    if not unit.is_prepaid or unit.emergency_credit_minor <= 0:
        return False
    if emergency_debt(tenancy=tenancy) > 0:
        return False
    if balance_minor is None:
        balance_minor = tenant_account(tenancy=tenancy).balance_minor
    return balance_minor < unit.low_credit_threshold_minor


@transaction.atomic
def emergency_credit_take(*, tenancy: Tenancy, actor_id: int | None) -> LedgerTransaction:
    """Advance the unit's emergency credit once; it is repaid from later top-ups.

    The tenant may then use energy until the advance is spent, i.e. go
    negative by the allowance in terms of their own money. Allowed only on a
    prepaid unit that offers it, below the low-credit threshold, and when no
    earlier advance is still owed.
    """
    from meters.services import _notify_unit, supply_evaluate

    tenancy = Tenancy.objects.select_related("unit__property", "landlord").get(pk=tenancy.pk)
    if not tenancy.is_current():
        raise BillingError("This tenancy has ended.")
    unit = tenancy.unit
    tenant = tenant_account(tenancy=tenancy)
    # The tenant account's row lock serialises two presses of the button.
    Account.objects.select_for_update().filter(pk=tenant.pk).first()
    if not unit.is_prepaid or unit.emergency_credit_minor <= 0:
        raise BillingError("Emergency credit is not offered for this unit.")
    if emergency_debt(tenancy=tenancy) > 0:
        raise BillingError(
            "Emergency credit was already taken; it is repaid from your next top-ups."
        )
    balance = Account.objects.get(pk=tenant.pk).balance_minor
    if balance >= unit.low_credit_threshold_minor:
        raise BillingError("Emergency credit is available once your credit is low.")
    advance = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.ADVANCE, currency=tenant.currency
    )
    taken = LedgerTransaction.objects.filter(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.EMERGENCY,
        postings__credit=tenant,
    ).count()
    txn, _ = ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.EMERGENCY,
        idempotency_key=f"emergency:{tenancy.pk}:{taken + 1}",
        legs=[Leg(debit=advance, credit=tenant, amount_minor=unit.emergency_credit_minor)],
        memo="Emergency credit",
        created_by_id=actor_id,
    )
    AuditEvent.objects.create(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="emergency_credit.taken",
        subject=f"tenancy {tenancy.pk}",
        data={"amount_minor": unit.emergency_credit_minor},
    )
    supply_evaluate(unit=unit, reason="emergency credit")
    _notify_unit(unit)
    return txn


def debt_recover(*, tenancy: Tenancy, topup_minor: int, idempotency_key: str) -> int:
    """Repay emergency credit from a top-up: at most DEBT_RECOVERY_PERCENT of it."""
    debt = emergency_debt(tenancy=tenancy)
    if debt <= 0:
        return 0
    share = int(settings.SUBMETER["DEBT_RECOVERY_PERCENT"])
    amount = min(debt, topup_minor * share // 100)
    if amount <= 0:
        return 0
    tenant = tenant_account(tenancy=tenancy)
    advance = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.ADVANCE, currency=tenant.currency
    )
    _, created = ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.RECOVERY,
        idempotency_key=idempotency_key,
        legs=[Leg(debit=tenant, credit=advance, amount_minor=amount)],
        memo=f"Emergency credit repaid ({share}% of the top-up)",
    )
    return amount if created else 0


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
