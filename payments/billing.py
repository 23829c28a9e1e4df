"""Billing services: tariffs into schedules, usage postings, standing charges,
postpaid invoices, emergency credit and its recovery.

Usage is rated per slot by ``meters.readings.readings_rate``; the exact
amounts (sub-units) accumulate on the meter and are posted in aggregated
debits by :func:`usage_settle` (see its docstring for when).
"""

from __future__ import annotations

import json
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, JSONField, Lookup, Max, Q, Sum
from django.utils import timezone

from config.live import tenancies_changed_notify, unit_changed
from config.sql import IdIn, pg_array
from landlord.audit import audit_record
from landlord.models import Property, Tenancy, Unit
from meters.derivation import Derivation, slots_apply
from meters.models import Interval, Meter
from supply.decision import supply_evaluate

from . import invoicing, rating
from .allocation import bills_allocate, bills_allocate_many, tenancy_funds
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
    Tariff,
)
from .tariffs import unit_schedule

# --- Usage postings --------------------------------------------------------------


def _newest_day(unit: Unit, rated_at: datetime | None) -> date | None:
    """The local day of the slot the energy before ``rated_at`` lies in.

    A slot [start, end) belongs to the day of its start, so a reading at local
    midnight closes the day before and that day's tenant pays.
    """
    if rated_at is None:
        return None
    covered = rating.slot_start(rated_at - timedelta(microseconds=1))
    return covered.astimezone(zoneinfo.ZoneInfo(unit.property.timezone)).date()


class UsagePayers:
    """Who pays for usage of a unit's local days, from its tenancies read once.

    One query however many days a batch of readings touches, and none when
    it touches only the day already pending. Made per rating (or per call),
    so a tenancy changed since is seen by the next one.
    """

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self._tenancies: list[Tenancy] | None = None

    def _active(self, day: date) -> Tenancy | None:
        if self._tenancies is None:
            self._tenancies = list(Tenancy.objects.filter(unit_id=self.unit.pk).order_by("pk"))
        return next(
            (
                t
                for t in self._tenancies
                if t.start_date <= day and (t.end_date is None or t.end_date >= day)
            ),
            None,
        )

    def on(self, day: date | None) -> Tenancy | None:
        """The tenancy of the local day ``day`` (the lowest id if two); failing that
        (readings from before the first move-in), today's where the unit is. See
        docs/billing.md for this limit."""
        today = timezone.localdate(timezone=zoneinfo.ZoneInfo(self.unit.property.timezone))
        if day is None:
            return self._active(today)
        return self._active(day) or self._active(today)


def _usage_tenancy(unit: Unit, meter: Meter, payers: UsagePayers | None = None) -> Tenancy | None:
    """Who pays the pending amount: the tenancy on the (local) day of the newest
    rated usage. :func:`usage_accrue` keeps usage of other days out of it."""
    return (payers or UsagePayers(unit)).on(_newest_day(unit, meter.rated_at))


def usage_accrue(
    *,
    meter: Meter,
    unit: Unit,
    changes: Iterable[tuple[datetime, int]],
    rated_before: datetime | None,
    payers: UsagePayers | None = None,
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
    ``payers`` (made here when not given) may be shared with :func:`usage_settle`.
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
    payers = payers or UsagePayers(unit)
    by_payer = {day: payers.on(day) for day in {current, before, *by_day}}
    payer = by_payer[current]
    if by_payer[before] != payer:
        _usage_post(
            meter=meter, unit=unit, tenancy=by_payer[before], due=meter.pending_sub // rating.SCALE
        )
        meter.pending_since = None
    for day in sorted(by_day):
        if by_payer[day] == payer:
            meter.pending_sub += by_day[day]
            continue
        # The fraction already pending is carried, so the meter's postings
        # still add up to its priced total rounded down once.
        due = (meter.pending_sub % rating.SCALE + by_day[day]) // rating.SCALE
        meter.pending_sub += by_day[day]
        _usage_post(meter=meter, unit=unit, tenancy=by_payer[day], due=due)


def usage_settle(
    *,
    meter: Meter,
    unit: Unit,
    now: datetime,
    force: bool = False,
    payers: UsagePayers | None = None,
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
    tenancy = _usage_tenancy(unit, meter, payers)
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
    revenue, payer = _usage_accounts(unit, tenancy)
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


def _usage_accounts(unit: Unit, tenancy: Tenancy | None) -> tuple[Account, Account]:
    """The landlord's revenue account and the payer's (the tenancy's, or the landlord's
    vacant-units account), read in one query; made when missing."""
    currency = unit.property.currency
    payer_kind = Account.Kind.TENANT if tenancy is not None else Account.Kind.VACANT
    wanted = Q(landlord_id=unit.landlord_id, kind=Account.Kind.REVENUE, currency=currency)
    if tenancy is not None:
        wanted |= Q(tenancy_id=tenancy.pk)
    else:
        wanted |= Q(landlord_id=unit.landlord_id, kind=payer_kind, currency=currency)
    found = {account.kind: account for account in Account.objects.filter(wanted)}
    revenue = found.get(Account.Kind.REVENUE) or landlord_account(
        landlord=unit.landlord, kind=Account.Kind.REVENUE, currency=currency
    )
    payer = found.get(payer_kind)
    if payer is None:
        payer = (
            tenant_account(tenancy=tenancy)
            if tenancy is not None
            else landlord_account(landlord=unit.landlord, kind=payer_kind, currency=currency)
        )
    return revenue, payer


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
                idempotency_key=_standing_key(tenancy.pk, day),
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


# --- Issuing bills, one or a batch at a time --------------------------------------

# Bills issued per transaction by the billing run. A batch's facts are read with
# a few queries whatever its size and its rows written with bulk inserts; a
# larger batch holds its locks (the landlord's revenue account among them, when
# usage is posted on the way) for longer.
BILLING_BATCH = 1000
# Idempotency keys looked up per query (SQLite caps a statement's parameters).
_KEYS_PER_QUERY = 5000


def _standing_key(tenancy_id: int, day: date) -> str:
    """The idempotency key of a tenancy's standing charge for a day (``_StandingKeyIn``
    builds the same keys in SQL on PostgreSQL)."""
    return f"standing:{tenancy_id}:{day.isoformat()}"


class _StandingKeyIn(Lookup):
    """``lhs`` is the key of a standing charge of one of ``tenancy_ids`` for a day
    from ``start`` to before ``end``: ``rhs`` is ``(tenancy_ids, start, end)``.

    On PostgreSQL the database builds the keys from one array of ids and the two
    days, so a batch of a thousand month-long bills sends three parameters, not
    thirty thousand keys, and each key is still found by equality through the
    idempotency index (whatever the collation: no key range is compared)."""

    lookup_name = "standing_key_in"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        tenancy_ids, start, end = self.rhs
        days = [start + timedelta(days=n) for n in range((end - start).days)]
        keys = [_standing_key(t, day) for t in tenancy_ids for day in days]
        if not keys:
            return "1 = 0", ()
        return f"{lhs} IN ({', '.join(['%s'] * len(keys))})", (*lhs_params, *keys)

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        tenancy_ids, start, end = self.rhs
        keys = (
            "ARRAY(SELECT 'standing:' || t || ':' || to_char(d, 'YYYY-MM-DD')"
            " FROM unnest(%s::bigint[]) AS t,"
            " generate_series(%s::date, %s::date - 1, interval '1 day') AS d)"
        )
        return f"{lhs} = ANY({keys})", (*lhs_params, pg_array(tenancy_ids), start, end)


@dataclass(frozen=True)
class BillDue:
    """A bill to issue: a tenancy and the first day of one of its billing cycles."""

    tenancy: Tenancy
    period_start: date


@dataclass
class _Draft:
    """A bill of a batch on its way: what it covers, then the facts read for it."""

    due: BillDue
    unit: Unit
    tz: zoneinfo.ZoneInfo
    schedule: rating.Schedule
    period: _BillPeriod
    switch_priced: dict
    meter_ids: list[int]
    usage: list[invoicing.Usage] = field(default_factory=list)
    late: list[Invoice] = field(default_factory=list)
    priced: dict[int, tuple[invoicing.Priced, invoicing.Priced]] = field(default_factory=dict)
    billed_through: dict | None = None
    standing_minor: int = 0

    @property
    def tenancy(self) -> Tenancy:
        return self.due.tenancy


def _priced_around(
    *, meter_ids: list[int], start_at: datetime, end_at: datetime
) -> dict[int, tuple[invoicing.Priced, invoicing.Priced]]:
    """Per meter, its priced slots before ``start_at`` and before ``end_at``."""
    before = Q(start__lt=start_at)
    rows = (
        Interval.objects.filter(
            IdIn(F("meter_id"), meter_ids),
            kind=Interval.Kind.SLOT,
            gross_sub__isnull=False,
            start__lt=end_at,
        )
        .values("meter_id")
        .annotate(
            bg=Sum("gross_sub", filter=before),
            bn=Sum("net_sub", filter=before),
            bw=Sum("energy_wh", filter=before),
            g=Sum("gross_sub"),
            n=Sum("net_sub"),
            w=Sum("energy_wh"),
        )
        .order_by()
    )
    return {
        row["meter_id"]: (
            invoicing.Priced(row["bg"] or 0, row["bn"] or 0, row["bw"] or 0),
            invoicing.Priced(row["g"], row["n"], row["w"]),
        )
        for row in rows
    }


_LineKey = tuple[int, str, int, str]  # tariff version, band, tier from (Wh), price as stored


def _priced_lines(drafts: list[_Draft]) -> dict[int, dict[_LineKey, tuple[int, int]]]:
    """Per draft (by ``id``), the tariff lines of the slots priced in its period,
    summed per version, band, tier and price: (Wh, net sub-units).

    On PostgreSQL the lines are summed by the database (one query for the
    batch, its rows a few per bill rather than one per slot); elsewhere they
    are read slot by slot and summed here. Both sum the same stored lines.
    Each meter's slots are read through the (meter, start) index for its own
    period (``OFFSET 0`` keeps the subquery apart, so the planner cannot turn
    it into a join that walks every meter's slots from the first).
    """
    sums: dict[int, dict[_LineKey, tuple[int, int]]] = {id(d): {} for d in drafts}
    pairs = [(meter_id, d) for d in drafts for meter_id in d.meter_ids]
    if not pairs:
        return sums
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT d.k, (l->>0)::bigint, l->>1, (l->>2)::bigint, l->>3,
                       SUM((l->>4)::bigint), SUM((l->>5)::bigint)
                FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::int[])
                     AS d(meter_id, start_at, end_at, k)
                CROSS JOIN LATERAL (
                    SELECT i.lines FROM meters_interval i
                    WHERE i.meter_id = d.meter_id AND i.start >= d.start_at
                      AND i.start < d.end_at AND i.gross_sub IS NOT NULL
                    OFFSET 0
                ) AS i
                CROSS JOIN LATERAL jsonb_array_elements(i.lines) AS l
                GROUP BY 1, 2, 3, 4, 5
                """,
                [
                    pg_array(meter_id for meter_id, _ in pairs),
                    pg_array(d.period.start_at for _, d in pairs),
                    pg_array(d.period.end_at for _, d in pairs),
                    pg_array(range(len(pairs))),
                ],
            )
            for k, version_id, band, tier, price, wh, net in cursor.fetchall():
                acc = sums[id(pairs[k][1])]
                key = (version_id, band, tier, str(Decimal(price)))
                acc[key] = _plus(acc.get(key), int(wh), int(net))
        return sums
    by_meter: dict[int, list[_Draft]] = defaultdict(list)
    for meter_id, d in pairs:
        by_meter[meter_id].append(d)
    rows = Interval.objects.filter(
        gross_sub__isnull=False,
        meter_id__in=list(by_meter),
        start__gte=min(d.period.start_at for d in drafts),
        start__lt=max(d.period.end_at for d in drafts),
    ).values_list("meter_id", "start", "lines")
    for meter_id, start, lines in rows:
        for d in by_meter[meter_id]:
            if d.period.start_at <= start < d.period.end_at:
                acc = sums[id(d)]
                for raw in lines:
                    line = rating.Line.from_json(raw)
                    key = (
                        line.version_id,
                        line.band,
                        line.tier_from_wh,
                        str(line.price_per_kwh_minor),
                    )
                    acc[key] = _plus(acc.get(key), line.energy_wh, line.net_sub)
    return sums


def _plus(pair: tuple[int, int] | None, wh: int, net: int) -> tuple[int, int]:
    return (wh, net) if pair is None else (pair[0] + wh, pair[1] + net)


def _drafts_read(drafts: list[_Draft]) -> None:
    """Read what every draft's bill is made of, with a few queries for the batch."""
    by_tenancy = {d.tenancy.pk: d for d in drafts}
    by_meter: dict[int, list[_Draft]] = defaultdict(list)
    for d in drafts:
        for meter_id in d.meter_ids:
            by_meter[meter_id].append(d)
    # The bill shows unpriced slots (whatever their quality) and gaps still
    # held, one by one; a released gap is billed through the slots it was
    # spread over. Priced energy is shown summed per tariff line, so it is read
    # summed (the bill itemises sums, whatever the order of the slots).
    held = Interval.objects.filter(
        Q(kind=Interval.Kind.SLOT) | Q(quality=Interval.Quality.HELD),
        IdIn(F("meter_id"), list(by_meter)),
        gross_sub__isnull=True,
        start__gte=min(d.period.start_at for d in drafts),
        start__lt=max(d.period.end_at for d in drafts),
    ).order_by("start", "pk")
    stored = held.values_list("meter_id", "start", *invoicing.Usage.STORED)
    held_usage: dict[int, list[invoicing.Usage]] = defaultdict(list)
    for meter_id, start, energy_wh, gross_sub, lines, held_reason, note in stored:
        usage = None
        for d in by_meter[meter_id]:
            if d.period.start_at <= start < d.period.end_at:
                usage = usage or invoicing.Usage.stored(
                    energy_wh=energy_wh,
                    gross_sub=gross_sub,
                    lines=lines,
                    held_reason=held_reason,
                    note=note,
                )
                held_usage[id(d)].append(usage)
    summed = _priced_lines(drafts)
    for d in drafts:
        lines = tuple(
            rating.Line(version_id, band, tier, Decimal(price), wh, net)
            for (version_id, band, tier, price), (wh, net) in sorted(summed[id(d)].items())
        )
        d.usage = [invoicing.Usage(sum(line.energy_wh for line in lines), lines)] if lines else []
        d.usage += held_usage[id(d)]
    # Late fees charged since the last bill are shown (and totalled) on this one.
    late = Invoice.objects.filter(
        IdIn(F("tenancy_id"), list(by_tenancy)),
        late_fee_minor__gt=0,
        late_fee_billed_on__isnull=True,
    ).order_by("period_start")
    for invoice in late:
        by_tenancy[invoice.tenancy_id].late.append(invoice)
    # Priced energy per meter before each period's start and end, one query per
    # distinct period (most of a batch shares one).
    periods: dict[tuple[datetime, datetime], list[_Draft]] = defaultdict(list)
    for d in drafts:
        periods[(d.period.start_at, d.period.end_at)].append(d)
    for (start_at, end_at), members in periods.items():
        meter_ids = sorted({m for d in members for m in d.meter_ids})
        priced = _priced_around(meter_ids=meter_ids, start_at=start_at, end_at=end_at)
        for d in members:
            d.priced = priced
    # What the previous bill charged through (the first bill after a switch to
    # postpaid starts from what was priced by the switch).
    plain = [d for d in drafts if not d.period.from_switch]
    previous: dict[tuple[int, date], dict] = {}
    for tenancy_id, period_end, billed_through in (
        Invoice.objects.filter(
            IdIn(F("tenancy_id"), [d.tenancy.pk for d in plain]),
            period_end__in={d.period.start for d in plain},
        )
        .order_by("-period_start", "pk")
        .values_list("tenancy_id", "period_end", "billed_through")
    ):
        previous.setdefault((tenancy_id, period_end), billed_through)
    for d in drafts:
        d.billed_through = (
            d.switch_priced
            if d.period.from_switch
            else previous.get((d.tenancy.pk, d.period.start), {})
        )
    # Standing charges the ledger posted for each period's days (one key per day),
    # summed per tenancy by the database: one row per bill, not one per day.
    spans: dict[tuple[date, date], list[int]] = defaultdict(list)
    for d in drafts:
        spans[(d.period.start, d.period.end)].append(d.tenancy.pk)
    landlords = {d.tenancy.landlord_id for d in drafts}
    for (start, end), tenancy_ids in spans.items():
        # SQLite caps a statement's parameters: a slice of the tenancies at a time
        # (PostgreSQL takes them all in three).
        step = (
            len(tenancy_ids)
            if connection.vendor == "postgresql"
            else max(_KEYS_PER_QUERY // max((end - start).days, 1), 1)
        )
        for first in range(0, len(tenancy_ids), step):
            rows = (
                Posting.objects.filter(
                    _StandingKeyIn(
                        F("transaction__idempotency_key"),
                        (tenancy_ids[first : first + step], start, end),
                    ),
                    # The transaction's landlord leads the idempotency index.
                    transaction__landlord_id__in=landlords,
                    landlord_id__in=landlords,
                    transaction__kind=LedgerTransaction.Kind.STANDING,
                )
                .values_list("debit__tenancy_id", "landlord_id")
                .annotate(s=Sum("amount_minor"))
                .order_by()
            )
            for tenancy_id, landlord_id, amount in rows:
                # A standing charge debits its own tenancy's balance
                # (standing_charges_post).
                charged = by_tenancy.get(tenancy_id)
                if charged is not None and landlord_id == charged.tenancy.landlord_id:
                    charged.standing_minor += amount


def _meter_totals(draft: _Draft) -> dict[int, invoicing.MeterTotals]:
    """Per meter: priced before the period, before its end, and through the
    previous bill (or, on the first bill after a switch to postpaid, by the switch:
    energy priced later for slots before it is shown as an adjustment)."""
    billed = {
        int(meter_id): invoicing.Priced.from_json(values)
        for meter_id, values in (draft.billed_through or {}).items()
    }
    if draft.period.from_switch:
        # A meter with nothing priced by the switch starts from zero.
        billed = {m: billed.get(m, invoicing.Priced()) for m in draft.meter_ids}
    nothing = (invoicing.Priced(), invoicing.Priced())
    return {
        meter_id: invoicing.MeterTotals(
            before=draft.priced.get(meter_id, nothing)[0],
            through=draft.priced.get(meter_id, nothing)[1],
            billed=billed.get(meter_id),
        )
        for meter_id in draft.meter_ids
    }


def _bill(draft: _Draft) -> invoicing.Bill:
    """Compose a draft's bill from the facts read for it."""
    return invoicing.bill_compose(
        fees=[
            (f"Late fee: bill {i.number} unpaid after its due date", i.late_fee_minor)
            for i in draft.late
        ],
        schedule=draft.schedule,
        start=draft.period.start,
        end=draft.period.end,
        usage=draft.usage,
        meters=_meter_totals(draft),
        standing_posted_minor=draft.standing_minor,
    )


def _invoice_row(draft: _Draft, bill: invoicing.Bill, now: datetime) -> Invoice:
    prop = draft.unit.property
    given = {
        "due_date": timezone.localtime(now, draft.tz).date() + timedelta(days=prop.bill_due_days),
        "landlord_id": draft.tenancy.landlord_id,
        "tenancy_id": draft.tenancy.pk,
        "period_start": draft.due.period_start,
        "period_end": draft.period.end,
        "currency": prop.currency,
        "issued_at": now,
        "energy_wh": bill.energy_wh,
        "net_minor": bill.net_minor,
        "tax_minor": bill.tax_minor,
        "total_minor": bill.total_minor,
        "tax_inclusive": bill.tax_inclusive,
        "held_wh": bill.held_wh,
        "held_reason": bill.held_reason[:300],
        "billed_through": bill.billed_through,
    }
    # Every field by position, the others at their defaults: Django's positional
    # constructor costs a third of the keyword one, a thousand times a batch.
    invoice = Invoice(
        *(
            given[field.attname] if field.attname in given else field.get_default()
            for field in Invoice._meta.concrete_fields
        )
    )
    Invoice.tenancy.field.set_cached_value(invoice, draft.tenancy)
    return invoice


def _invoices_store(rows: list[Invoice]) -> list[tuple[Invoice, bool]]:
    """Insert the bills: (invoice, True), or (the one already there, False) where
    another run issued that tenancy's bill for the period first (the unique
    constraint on tenancy and period decides; its bill stands)."""
    try:
        with transaction.atomic():
            _invoices_insert(rows)
            return [(row, True) for row in rows]
    except IntegrityError:
        for row in rows:
            row.pk = None
    stored = []
    for row in rows:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
            stored.append((row, True))
        except IntegrityError:
            found = Invoice.objects.get(tenancy_id=row.tenancy_id, period_start=row.period_start)
            stored.append((found, False))
    return stored


def _invoices_insert(rows: list[Invoice]) -> None:
    """Insert new bills, setting their primary keys. On PostgreSQL the keys are
    drawn from the table's sequence in one query and the rows sent with COPY:
    a batch's thousand rows are otherwise mostly Python time spent preparing an
    INSERT's parameters field by field."""
    if connection.vendor != "postgresql":
        Invoice.objects.bulk_create(rows)
        return
    fields = list(Invoice._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(f.column or f.attname) for f in fields)
    encoders = [(f.attname, isinstance(f, JSONField), getattr(f, "encoder", None)) for f in fields]
    table = Invoice._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(rows)],
        )
        for row, (pk,) in zip(rows, cursor.fetchall(), strict=True):
            row.pk = pk
        with (
            connection.wrap_database_errors,
            cursor.cursor.copy(
                f"COPY {connection.ops.quote_name(table)} ({columns}) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                values = []
                for attname, is_json, encoder in encoders:
                    value = getattr(row, attname)
                    if is_json and value is not None:
                        value = json.dumps(value, cls=encoder)
                    values.append(value)
                copy.write_row(values)
    for row in rows:
        row._state.adding = False
        row._state.db = connection.alias


_LINE_COLUMNS = (
    "invoice_id",
    "position",
    "kind",
    "description",
    "quantity",
    "unit_price",
    "amount_minor",
)


def _lines_insert(lines: list[tuple[int, int, str, str, str, str, int]]) -> None:
    """Insert bill lines given as values in ``_LINE_COLUMNS`` order (COPY on PostgreSQL)."""
    if connection.vendor != "postgresql":
        InvoiceLine.objects.bulk_create(
            InvoiceLine(**dict(zip(_LINE_COLUMNS, values, strict=True))) for values in lines
        )
        return
    table = connection.ops.quote_name(InvoiceLine._meta.db_table)
    statement = f"COPY {table} ({', '.join(_LINE_COLUMNS)}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for values in lines:
            copy.write_row(values)


@transaction.atomic
def invoices_issue(
    *,
    due: Sequence[BillDue],
    now: datetime | None = None,
    final: bool = False,
    units: Mapping[int, Unit] | None = None,
) -> list[Invoice | BillingError | rating.Unpriceable]:
    """Issue a batch of bills, at most one per tenancy, in one transaction: per bill
    (in ``due``'s order) the invoice, or why it cannot be issued (a period still
    open, prepaid throughout, nothing to price it with). A bill already issued is
    returned as it is. The facts of the whole batch are read with a few queries
    and the rows written with bulk inserts; each bill is composed by the same
    rules as :func:`invoice_issue`, which is a batch of one.

    ``units``: the tenancies' units with their property and tariff, when the
    caller (the billing run) has just read them; otherwise they are read here.
    """
    now = now or timezone.now()
    tenancy_ids = [item.tenancy.pk for item in due]
    if len(set(tenancy_ids)) != len(tenancy_ids):
        raise ValueError("A batch holds at most one bill per tenancy.")
    results: list[Invoice | BillingError | rating.Unpriceable | None] = [None] * len(due)
    existing = {
        (invoice.tenancy_id, invoice.period_start): invoice
        for invoice in Invoice.objects.filter(
            IdIn(F("tenancy_id"), tenancy_ids),
            period_start__in={item.period_start for item in due},
        )
    }
    if units is None:
        units = Unit.objects.select_related("property", "tariff").in_bulk(
            {item.tenancy.unit_id for item in due}
        )
    # The billing run read each tenancy's billing state with it; others are read here.
    states: dict[int, BillingState] = {}
    unread = []
    for item in due:
        if Tenancy.billing_state.is_cached(item.tenancy):
            state = getattr(item.tenancy, "billing_state", None)
            if state is not None:
                states[item.tenancy.pk] = state
        else:
            unread.append(item.tenancy.pk)
    if unread:
        states |= {
            s.tenancy_id: s for s in BillingState.objects.filter(IdIn(F("tenancy_id"), unread))
        }
    meters: dict[int, list[int]] = defaultdict(list)
    unsettled: set[int] = set()
    for meter_id, unit_id, pending, since, held in (
        Meter.objects.filter(IdIn(F("unit_id"), list(units)))
        .order_by("pk")
        .values_list("pk", "unit_id", "pending_sub", "pending_since", "held_from")
    ):
        meters[unit_id].append(meter_id)
        # What settling the meter (usage_settle_meter, forced) would change; a
        # meter it would leave as it is is not locked.
        if held is not None or pending // rating.SCALE != 0 or (pending == 0 and since):
            unsettled.add(meter_id)
    drafts: list[tuple[int, _Draft]] = []
    # A batch's units share a few tariffs and properties: one schedule each.
    schedules: dict[tuple[int, int], rating.Schedule] = {}
    for index, item in enumerate(due):
        found = existing.get((item.tenancy.pk, item.period_start))
        if found is not None:
            results[index] = found
            continue
        unit = units[item.tenancy.unit_id]
        tz = zoneinfo.ZoneInfo(unit.property.timezone)
        state = states.get(item.tenancy.pk)
        try:
            period = _bill_period(
                tenancy=item.tenancy,
                period_start=item.period_start,
                tz=tz,
                now=now,
                cycle_day=unit.property.bill_cycle_day,
                final=final,
                switched_at=state.postpaid_from if state else None,
            )
            shared = (unit.tariff_id or 0, unit.property_id)
            schedule = schedules.get(shared) or schedules.setdefault(
                shared, unit_schedule(unit=unit)
            )
        except (BillingError, rating.Unpriceable) as error:
            results[index] = error
            continue
        switch_priced = state.postpaid_priced if state else {}
        drafts.append(
            (index, _Draft(item, unit, tz, schedule, period, switch_priced, meters[unit.pk]))
        )
    if not drafts:
        return [r for r in results if r is not None]

    # Everything in a period reaches the ledger before it is itemised (held
    # energy that can be priced by now is priced on the way).
    for meter_id in sorted({m for _, d in drafts for m in d.meter_ids} & unsettled):
        usage_settle_meter(meter_id=meter_id, now=now, force=True)
    for _, d in drafts:
        through = d.period.end - timedelta(days=1)
        last = min(through, d.tenancy.end_date or through)
        state = states.get(d.tenancy.pk)
        if state is None or state.standing_through is None or state.standing_through < last:
            standing_charges_post(tenancy=d.tenancy, through=through)

    _drafts_read([d for _, d in drafts])
    bills = [_bill(d) for _, d in drafts]
    stored = _invoices_store(
        [_invoice_row(d, b, now) for (_, d), b in zip(drafts, bills, strict=True)]
    )
    _lines_insert(
        [
            (
                invoice.pk,
                i,
                InvoiceLine.Kind(line.kind).value,
                line.description,
                line.quantity,
                line.unit_price,
                line.amount_minor,
            )
            for (invoice, created), bill in zip(stored, bills, strict=True)
            if created
            for i, line in enumerate(bill.lines)
        ]
    )
    issued = []
    for (index, d), (invoice, created) in zip(drafts, stored, strict=True):
        results[index] = invoice
        if not created:
            continue
        issued.append(d.tenancy)
        if d.late:
            Invoice.objects.filter(pk__in=[i.pk for i in d.late]).update(late_fee_billed_on=invoice)
    # Credit carried from earlier payments is applied to the new bills.
    bills_allocate_many(tenancies=issued)
    tenancies_changed_notify((t.landlord_id, t.unit_id, t.pk) for t in issued)
    # Postpaid autopay charges the saved card on the due date, not now
    # (payments.automatic.autopays_run_due).
    return [r for r in results if r is not None]


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
    A batch of one (:func:`invoices_issue`).
    """
    (result,) = invoices_issue(
        due=[BillDue(tenancy, period_start)], now=now or timezone.now(), final=final
    )
    if isinstance(result, Exception):
        raise result
    return result


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


def _cycles_due(*, tenancy: Tenancy, latest: date | None, now: datetime) -> list[date]:
    """The first days of the closed billing cycles a postpaid tenancy has no bill
    for yet, oldest first: after its latest bill, or from its start (or its switch
    to postpaid)."""
    prop = tenancy.unit.property
    tz = zoneinfo.ZoneInfo(prop.timezone)
    today = timezone.localtime(now, tz).date()
    current_start, _ = cycle_bounds(today, prop.bill_cycle_day)
    if latest is not None:
        start = cycle_bounds(latest, prop.bill_cycle_day)[1]
    else:
        first_day = tenancy.start_date
        state = getattr(tenancy, "billing_state", None)
        if state is not None and state.postpaid_from is not None:
            first_day = max(first_day, timezone.localtime(state.postpaid_from, tz).date())
        start = cycle_bounds(first_day, prop.bill_cycle_day)[0]
    starts = []
    while start < current_start:
        if tenancy.end_date is not None and tenancy.end_date < start:
            break
        starts.append(start)
        start = cycle_bounds(start, prop.bill_cycle_day)[1]
    return starts


def _units_share(*, units: Sequence[Unit]) -> None:
    """Attach their properties and tariffs to many units, read once each: a batch's
    thousand units share a few, and a join would build a copy per unit."""
    properties = Property.objects.in_bulk({u.property_id for u in units})
    tariffs = Tariff.objects.in_bulk({u.tariff_id for u in units if u.tariff_id is not None})
    for unit in units:
        unit.property = properties[unit.property_id]
        unit.tariff = tariffs[unit.tariff_id] if unit.tariff_id is not None else None


def _tenancies_read(ids: list[int]) -> list[Tenancy]:
    """A batch's tenancies (by primary key) with their units, properties, tariffs and
    billing states attached. Each table is read on its own through its index: joined,
    the planner hashes the whole unit and billing-state tables for a thousand rows
    (tens of milliseconds a batch on a fleet of 100,000)."""
    tenancies = list(Tenancy.objects.filter(IdIn(F("pk"), ids)).order_by("pk"))
    units = {u.pk: u for u in Unit.objects.filter(IdIn(F("pk"), [t.unit_id for t in tenancies]))}
    _units_share(units=list(units.values()))
    states = {
        s.tenancy_id: s
        for s in BillingState.objects.filter(IdIn(F("tenancy_id"), [t.pk for t in tenancies]))
    }
    unit_cache = Tenancy.unit.field
    state_cache = Tenancy.billing_state.related
    for tenancy in tenancies:
        unit_cache.set_cached_value(tenancy, units[tenancy.unit_id])
        state_cache.set_cached_value(tenancy, states.get(tenancy.pk))
    return tenancies


def invoices_issue_due(
    *,
    now: datetime | None = None,
    on_progress: Callable[[int], bool] | None = None,
    batch: int = BILLING_BATCH,
) -> list[Invoice]:
    """Issue every closed billing cycle (in each property's time zone and cycle)
    that a postpaid tenancy has no bill for yet, oldest first: the cycles after
    its latest bill, or from its start (or its switch to postpaid), so cycles
    missed while the task was not running are billed when it runs again.

    Tenancies are taken ``batch`` at a time (:func:`invoices_issue`, one
    transaction each; a tenancy with several cycles due has its oldest issued
    first, then the next, each in its own). A cycle that cannot be billed
    (prepaid then, or not priceable yet) is left for a later run.

    ``on_progress`` is told how many tenancies are done before each next batch;
    when it answers False the run stops there (a later run carries on)."""
    now = now or timezone.now()
    issued: list[Invoice] = []
    # Tenancies that ended more than a year ago had their closing bill.
    horizon = now.date() - timedelta(days=400)
    postpaid = Tenancy.objects.filter(unit__billing_mode=Unit.BillingMode.POSTPAID).filter(
        Q(end_date__isnull=True) | Q(end_date__gte=horizon)
    )
    ids = list(postpaid.order_by("pk").values_list("pk", flat=True))
    for done in range(0, len(ids), batch):
        if on_progress is not None and done and not on_progress(done):
            break
        batch_ids = ids[done : done + batch]
        tenancies = _tenancies_read(batch_ids)
        # The batch's latest bills, found through the (tenancy, period) unique
        # index rather than by grouping the whole invoice table.
        latest = dict(
            Invoice.objects.filter(IdIn(F("tenancy_id"), batch_ids))
            .values_list("tenancy_id")
            .annotate(m=Max("period_start"))
            .order_by()
        )
        waiting = [
            (tenancy, _cycles_due(tenancy=tenancy, latest=latest.get(tenancy.pk), now=now))
            for tenancy in tenancies
        ]
        while waiting := [(t, starts) for t, starts in waiting if starts]:
            due = [BillDue(t, starts.pop(0)) for t, starts in waiting]
            units = {t.unit_id: t.unit for t, _ in waiting}
            results = invoices_issue(due=due, now=now, units=units)
            issued += [r for r in results if isinstance(r, Invoice)]
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
