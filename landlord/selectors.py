"""Read-only views of a unit's state for pages and live updates."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Case,
    DateTimeField,
    FilteredRelation,
    Func,
    Max,
    Min,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.formats import format_money
from config.prepared import Param, Prepared
from meters.models import Alert, CutoffNotice, Device, Interval, Meter, Reading
from payments.arrears import invoices_with_owed
from payments.automatic import saved_method_for
from payments.billing import (
    open_period_accrued,
)
from payments.emergency import (
    emergency_credit_available,
    emergency_debt_expression,
    recovery_percent,
)
from payments.forms import PRESETS_MINOR
from payments.models import (
    Account,
    Invoice,
    LedgerTransaction,
    Payment,
    PaymentSettings,
    Posting,
)
from payments.rating import SCALE, Line, Unpriceable, round_half_up
from payments.tariffs import current_price_per_kwh, unit_schedule
from supply.alerts import open_alerts
from supply.cutoff import ScheduledCutoff, cutoff_from_notice, cutoff_schedule, protections_for
from supply.protections import Protections
from supply.runway import mean_power_w, runway_hours, runway_text, runway_until_text

from .models import Membership, PaymentPlanRequest, Tenancy, Unit
from .tenant_status import (
    SupplyFacts,
    SupplyLine,
    TenantAlert,
    TopUpPreview,
    supply_line,
    tenant_alert,
    topup_preview,
)


@dataclass
class UsageBar:
    label: str
    wh: int
    pct: int


@dataclass
class UnitView:
    unit: Unit
    tenancy: Tenancy | None
    currency: str
    balance_minor: int | None
    relay_desired: str
    relay_reported: str
    relay_reason: str
    relay_pending: bool
    device_connected: bool
    last_reading_at: datetime | None
    last_register_wh: int | None
    hold_reason: str
    tz: zoneinfo.ZoneInfo
    usage: list[UsageBar] = field(default_factory=list)
    avg_power_w: int | None = None
    # 'about N days left' at current usage, for a prepaid balance.
    runway: str = ""
    # Bills and emergency credit (tenant page only).
    invoices: list[Invoice] = field(default_factory=list)
    accrued_minor: int = 0
    accrued_wh: int = 0
    emergency_available: bool = False
    emergency_debt_minor: int = 0
    # Supply safety (supply.cutoff / supply.alerts), filled for single-unit pages.
    cutoff: ScheduledCutoff | None = None
    alerts: list[Alert] = field(default_factory=list)
    # The unit's device: none registered, or registered but never connected yet.
    has_device: bool = False
    device_seen: bool = False

    @property
    def device_status(self) -> str:
        if not self.has_device:
            return "no meter registered"
        if self.device_connected:
            return "connected"
        if not self.device_seen:
            return "waiting for first connection"
        return "offline"

    # The tenant's page (landlord.tenant_status): one supply line, at most one alert,
    # the runway in clock time, and for postpaid the latest bill and the month's projection.
    protections: Protections | None = None
    supply: SupplyLine | None = None
    alert: TenantAlert | None = None
    price_per_kwh_minor: float | None = None
    runway_hours: float | None = None
    projected_minor: int = 0

    @property
    def latest_bill(self) -> Invoice | None:
        return self.invoices[0] if self.invoices else None

    # What is still owed on the latest bill, as its own page says.
    latest_bill_owed_minor: int = 0

    @property
    def shows_power(self) -> bool:
        """'Using about N kW' only while the supply is on and the numbers are live."""
        return bool(self.avg_power_w) and self.relay_reported == "on" and self.is_live

    @property
    def is_prepaid(self) -> bool:
        return self.unit.is_prepaid

    @property
    def low_credit(self) -> bool:
        return (
            self.is_prepaid
            and self.balance_minor is not None
            and 0 < self.balance_minor < self.unit.low_credit_threshold_minor
        )

    @property
    def out_of_credit(self) -> bool:
        return self.is_prepaid and self.balance_minor is not None and self.balance_minor <= 0

    @property
    def amount_due_minor(self) -> int:
        if self.balance_minor is None or self.balance_minor >= 0:
            return 0
        return -self.balance_minor

    @property
    def is_live(self) -> bool:
        if not self.device_connected or self.last_reading_at is None:
            return False
        age = timezone.now() - self.last_reading_at
        return age.total_seconds() <= settings.SUBMETER["LIVE_STALE_SECONDS"]

    @property
    def as_of(self) -> str:
        if self.last_reading_at is None:
            return "no readings yet"
        local = timezone.localtime(self.last_reading_at, self.tz)
        if local.date() == timezone.localtime(timezone.now(), self.tz).date():
            return f"as of {local:%H:%M}"
        return f"as of {local:%d %b %H:%M}"

    @property
    def last_reading_iso(self) -> str:
        return self.last_reading_at.isoformat() if self.last_reading_at else ""

    @property
    def relay_label(self) -> str:
        if self.relay_reported == "unknown":
            return "supply state unknown"
        return "supply on" if self.relay_reported == "on" else "supply off"


def _unit_view(
    unit: Unit,
    tenancy: Tenancy | None,
    balance: int | None,
    installed: list[Meter] | None = None,
) -> UnitView:
    """``installed``: the unit's installed meters with their devices, already read
    (the tenant's page); the device is then the installed meter's."""
    if installed is None:
        meters: list[Meter] = [m for m in unit.meters.all() if m.removed_at is None]
        devices: list[Device] = list(unit.devices.all())
    else:
        meters = installed
        devices = [m.device for m in meters] or list(unit.devices.all())
    device = devices[0] if devices else None
    meter = meters[0] if meters else None
    view = UnitView(
        unit=unit,
        tenancy=tenancy,
        currency=unit.property.currency,
        # Rated usage not yet posted (an open debit window) already counts.
        balance_minor=None if balance is None else balance - _pending_minor(meters),
        relay_desired=device.desired_relay if device else "unknown",
        relay_reported=device.reported_relay if device else "unknown",
        relay_reason=device.desired_reason if device else "",
        relay_pending=bool(device and not device.relay_converged),
        device_connected=bool(device and device.connected),
        last_reading_at=meter.last_reading_at if meter else None,
        last_register_wh=meter.last_register_wh if meter else None,
        hold_reason=meter.hold_reason if meter else "",
        tz=zoneinfo.ZoneInfo(unit.property.timezone),
        has_device=device is not None,
        device_seen=bool(device and device.last_seen_at),
    )
    view.runway = _runway(view)
    return view


def _runway(view: UnitView) -> str:
    """The runway line; it reads the price only when there is usage to estimate from."""
    if not view.is_prepaid or view.balance_minor is None or view.unit.tariff is None:
        return ""
    if not view.avg_power_w:
        return "no credit left" if view.balance_minor <= 0 else "no recent usage to estimate from"
    price = current_price_per_kwh(unit=view.unit)
    if price is None:
        return ""
    view.price_per_kwh_minor = float(price)  # also for the top-up previews
    if view.balance_minor <= 0:
        return "no credit left"
    hours = runway_hours(
        balance_minor=view.balance_minor,
        power_w=view.avg_power_w,
        price_per_kwh_minor=float(price),
    )
    view.runway_hours = hours
    return "" if hours is None else runway_text(hours)


def _pending_minor(meters: list[Meter]) -> int:
    return sum(max(m.pending_sub, 0) // SCALE for m in meters)


def _units_queryset():
    return Unit.objects.select_related("property", "tariff").prefetch_related(
        "devices",
        "meters",
        Prefetch(
            "tenancies",
            queryset=Tenancy.objects.active().select_related("tenant", "account"),
            to_attr="active_tenancies",
        ),
    )


def _balance(tenancy: Tenancy | None) -> int | None:
    if tenancy is None:
        return None
    try:
        return tenancy.account.balance_minor
    except Account.DoesNotExist:
        return 0


def landlord_unit_views(*, landlord_id: int) -> list[UnitView]:
    views = []
    for unit in (
        _units_queryset()
        .filter(landlord_id=landlord_id, archived_at__isnull=True)
        .order_by("property__name", "name")
    ):
        tenancy = unit.active_tenancies[0] if unit.active_tenancies else None
        views.append(_unit_view(unit, tenancy, _balance(tenancy)))
    return views


def landlord_unit_view(*, landlord_id: int, unit_id: int) -> UnitView | None:
    return _landlord_unit_view(_units_queryset(), landlord_id=landlord_id, unit_id=unit_id)


def _landlord_unit_view(units: QuerySet[Any], *, landlord_id: int, unit_id: int) -> UnitView | None:
    unit = units.filter(landlord_id=landlord_id, pk=unit_id).first()
    if unit is None:
        return None
    tenancy = unit.active_tenancies[0] if unit.active_tenancies else None
    return _unit_view(unit, tenancy, _balance(tenancy))


def _add_safety(view: UnitView) -> None:
    if view.tenancy is None:
        return
    view.cutoff = cutoff_schedule(tenancy=view.tenancy, balance_minor=view.balance_minor)
    view.alerts = open_alerts(tenancy_id=view.tenancy.pk)


def landlord_unit_detail_view(*, landlord_id: int, unit_id: int) -> UnitView | None:
    # The unit page names who set a manual override.
    units = _units_queryset().select_related("override_by")
    view = _landlord_unit_view(units, landlord_id=landlord_id, unit_id=unit_id)
    if view is not None:
        _add_safety(view)
        view.alerts += list(
            Alert.objects.filter(
                unit_id=unit_id, audience=Alert.Audience.LANDLORD, cleared_at__isnull=True
            )
        )
    return view


def _tenant_home_query(*, by_tenant: bool) -> Prepared[Tenancy]:
    def build() -> QuerySet[Tenancy]:
        # The type stubs do not know select_related on a FilteredRelation's name.
        tenancies = (
            Tenancy.objects.annotate(  # type: ignore[misc]
                open_notice=FilteredRelation(
                    "cutoff_notices",
                    condition=Q(cutoff_notices__status=CutoffNotice.Status.SCHEDULED),
                ),
                emergency_debt_minor=emergency_debt_expression(),
            )
            .select_related("account", "landlord", "unit__property", "unit__tariff", "open_notice")
            .filter(pk=Param("tenancy_id", BigIntegerField()))
        )
        if by_tenant:
            tenancies = tenancies.filter(tenant_id=Param("tenant_id", BigIntegerField()))
        return tenancies

    return Prepared(build)


_TENANT_HOME = _tenant_home_query(by_tenant=False)
_TENANT_HOME_OF = _tenant_home_query(by_tenant=True)
_INSTALLED_METERS: Prepared[Meter] = Prepared(
    lambda: (
        Meter.objects.filter(unit_id=Param("unit_id", BigIntegerField()), removed_at__isnull=True)
        .select_related("device")
        .order_by("pk")
    )
)


def tenant_home_tenancy(*, tenancy_id: int, tenant_id: int | None = None) -> Tenancy | None:
    """A tenancy with what the tenant's home reads with it, in one query (the
    balance, unit, property and tariff, the open cut-off notice, the emergency
    credit owed), and its unit's installed meters with their devices in a second
    (``unit.installed_meters``). ``tenant_id``: only if it is this tenant's.

    Both queries are compiled once per process (``config.prepared``): building
    them costs more than the database takes to answer."""
    if tenant_id is None:
        found = _TENANT_HOME.run(tenancy_id=tenancy_id)
    else:
        found = _TENANT_HOME_OF.run(tenancy_id=tenancy_id, tenant_id=tenant_id)
    if not found:
        return None
    tenancy = found[0]
    tenancy.unit.installed_meters = _INSTALLED_METERS.run(unit_id=tenancy.unit_id)  # type: ignore[attr-defined]
    return tenancy


def tenancy_view(
    *, tenancy: Tenancy, now: datetime | None = None, loaded: bool = False
) -> UnitView:
    """The tenant's home as it stands. ``loaded``: ``tenancy`` came from
    ``tenant_home_tenancy`` in this request (else it is read again, fresh)."""
    now = now or timezone.now()
    fresh = tenancy if loaded else tenant_home_tenancy(tenancy_id=tenancy.pk)
    if fresh is None:
        raise Tenancy.DoesNotExist
    installed: list[Meter] = fresh.unit.installed_meters  # type: ignore[attr-defined]
    view = _unit_view(fresh.unit, fresh, _balance(fresh), installed)
    # Set by the join only when the tenancy has an open notice.
    notice: CutoffNotice | None = getattr(fresh, "open_notice", None)
    # A freeze (a query) shows only on prepaid credit or a scheduled cut-off.
    view.protections = protections_for(
        unit=fresh.unit, tenancy=fresh, hooks=view.is_prepaid or notice is not None
    )
    _add_usage(view, installed[0] if installed else None, now)
    _add_billing(view, fresh, now)
    view.cutoff = cutoff_from_notice(
        notice=notice,
        balance_minor=view.balance_minor,
        protections=view.protections,
        currency=view.currency,
    )
    view.alerts = open_alerts(tenancy_id=fresh.pk)
    _add_tenant_status(view, now)
    return view


def tenant_panel_context(*, tenancy: Tenancy, view: UnitView | None = None) -> dict[str, Any]:
    """What the tenant's live panel is rendered with, by the page and by its socket."""
    view = view or tenancy_view(tenancy=tenancy)
    return {
        "v": view,
        "tenancy": tenancy,
        "recovery_percent": recovery_percent(),
        "heartbeat_seconds": settings.SUBMETER["LIVE_HEARTBEAT_SECONDS"],
    }


def view_topup_preview(view: UnitView, amount_minor: int) -> TopUpPreview:
    return topup_preview(
        amount_minor=amount_minor,
        debt_minor=view.emergency_debt_minor,
        balance_minor=view.balance_minor or 0,
        power_w=view.avg_power_w,
        price_per_kwh_minor=view.price_per_kwh_minor,
        currency=view.currency,
    )


def preset_previews(view: UnitView) -> list[TopUpPreview]:
    """The preview of each preset top-up (prepaid only)."""
    if not view.is_prepaid:
        return []
    return [view_topup_preview(view, amount) for amount in PRESETS_MINOR]


def _add_tenant_status(view: UnitView, now: datetime) -> None:
    assert view.protections is not None
    unit = view.unit
    facts = SupplyFacts(
        prepaid=view.is_prepaid,
        reported=view.relay_reported,
        desired=view.relay_desired,
        override_state=unit.override_state,
        override_reason=unit.override_reason,
        balance_minor=view.balance_minor,
        currency=view.currency,
        low_threshold_minor=unit.low_credit_threshold_minor,
        emergency_debt_minor=view.emergency_debt_minor,
        cutoff=view.cutoff,
        protected_reason=view.protections.blocking_reason(),
        low_runway=any(a.kind == Alert.Kind.LOW_RUNWAY and not a.cleared_at for a in view.alerts),
        restored_recently=any(a.kind == Alert.Kind.SUPPLY_RESTORED for a in view.alerts),
        tz=unit.property.timezone,
    )
    view.supply = supply_line(facts)
    view.alert = tenant_alert(facts)
    if facts.out_of_credit:
        view.runway = ""  # the supply line says it
    elif view.runway_hours is not None and view.runway_hours > 0:
        view.runway = runway_until_text(
            hours=view.runway_hours, now=now, protections=view.protections
        )


def month_projection(*, accrued_minor: int, now: datetime, tz: zoneinfo.ZoneInfo) -> int:
    """The month's energy charge at the rate so far: accrued over the elapsed share of it."""
    local = timezone.localtime(now, tz)
    start = datetime.combine(local.date().replace(day=1), time(0), tz)
    following = (start + timedelta(days=32)).replace(day=1)
    elapsed = (now - start).total_seconds()
    if elapsed <= 3600:  # the first hour says nothing about a month
        return accrued_minor
    return round(accrued_minor * (following - start).total_seconds() / elapsed)


_LATEST_BILLS: Prepared[Invoice] = Prepared(
    lambda: (
        Invoice.objects.filter(tenancy_id=Param("tenancy_id", BigIntegerField()))
        .annotate(paid_minor=Coalesce(Sum("allocations__amount_minor"), 0))
        .order_by("-period_start")[:12]
    )
)


def _add_billing(view: UnitView, tenancy: Tenancy, now: datetime) -> None:
    # What each bill's payments paid, read with the bills (allocations).
    view.invoices = _LATEST_BILLS.run(tenancy_id=tenancy.pk)
    # A prepaid unit's bills are from before it turned prepaid: top-ups pay the
    # closing bill first (payments.allocation), and the panel says what is left.
    if view.invoices and view.balance_minor is not None:
        latest = view.invoices[0]
        # payments.allocation.invoice_outstanding_minor, from the sum read above.
        outstanding = max(latest.total_minor, 0) - latest.paid_minor  # type: ignore[attr-defined]
        view.latest_bill_owed_minor = min(max(-view.balance_minor, 0), outstanding)
    if not view.unit.is_prepaid:  # the month so far and its projection: postpaid only
        view.accrued_minor, view.accrued_wh = open_period_accrued(unit=view.unit, now=now)
        view.projected_minor = month_projection(
            accrued_minor=view.accrued_minor, now=now, tz=view.tz
        )
    view.emergency_debt_minor = tenancy.emergency_debt_minor  # type: ignore[attr-defined]
    view.emergency_available = emergency_credit_available(
        tenancy=tenancy, balance_minor=view.balance_minor, debt_minor=view.emergency_debt_minor
    )


class _EpochMinute(Func):
    """Whole minutes since 1970 (UTC) of a timestamp, worked out by the database.

    Django's ``TruncMinute`` on SQLite is a Python function the database calls
    back for every reading (and its result a datetime to convert back); this is
    the database's own arithmetic on both backends, and an integer."""

    arity = 1
    output_field = BigIntegerField()
    template = "FLOOR(EXTRACT(EPOCH FROM %(expressions)s) / 60)::bigint"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Stored as UTC text; strftime's '%s' is whole seconds ('%%%%': the '%' that
        # survives both this template and the driver's parameter style).
        template = "(CAST(strftime('%%%%s', %(expressions)s) AS INTEGER) / 60)"
        return self.as_sql(compiler, connection, template=template, **extra)


def _usage_minutes() -> QuerySet[Any, Any]:
    """A meter's actual readings from the last one before ``start`` on, a row per
    minute, the reading before ``start`` in a row of its own (first)."""
    start = Param("start", DateTimeField())
    actual = Reading.objects.filter(
        meter_id=Param("meter_id", BigIntegerField()), quality=Reading.Quality.ACTUAL
    )
    before = actual.filter(taken_at__lt=start).order_by("-taken_at").values("taken_at")[:1]
    return (
        actual.filter(taken_at__gte=Coalesce(Subquery(before), start))
        .annotate(
            minute=_EpochMinute("taken_at"),
            before=Case(When(taken_at__lt=start, then=Value(True)), default=Value(False)),
        )
        .values("minute", "before")
        .annotate(
            top=Max("register_wh"),
            last=Max("taken_at"),
            low=Min("register_wh"),
            first=Min("taken_at"),
        )
        .order_by("-before", "minute")
    )


_USAGE_MINUTES: Prepared[dict[str, Any]] = Prepared(_usage_minutes)


def _add_usage(
    view: UnitView, meter: Meter | None, now: datetime, minutes: int = 60, bars: int = 12
) -> None:
    """Energy per 5-minute slot over the last hour, and the average power.

    Each slot's energy is its highest register minus the one before it; the
    first slot starts from the last reading before the window (or, on a new
    meter, the first reading inside it), so it is never blank. One query: the
    readings from that last one before the window on, a row per minute (the
    reading before the window in a row of its own).
    """
    if meter is None:
        return
    start = now - timedelta(minutes=minutes)
    rows = _USAGE_MINUTES.run(meter_id=meter.pk, start=start)
    if not rows:
        return
    if rows[0]["before"]:
        origin_at, origin_wh = rows[0]["last"], rows[0]["top"]
        rows = rows[1:]
    else:  # a new meter: from its first reading
        origin_at, origin_wh = rows[0]["first"], rows[0]["low"]
    slot = minutes // bars
    tops: list[int | None] = [None] * bars
    last_at, last_top = origin_at, origin_wh
    start_s = start.timestamp()
    for row in rows:
        idx = min(max(int((row["minute"] * 60 - start_s) // (slot * 60)), 0), bars - 1)
        tops[idx] = row["top"]
        last_at, last_top = row["last"], row["top"]
    usage: list[int] = []
    previous = origin_wh
    for top in tops:
        usage.append(max(top - previous, 0) if top is not None else 0)
        if top is not None:
            previous = top
    peak = max(usage) or 1
    edges = [start + timedelta(minutes=slot * (i + 1)) for i in range(bars)]
    view.usage = [
        UsageBar(
            label=f"{timezone.localtime(edge, view.tz):%H:%M}", wh=wh, pct=round(100 * wh / peak)
        )
        for edge, wh in zip(edges, usage, strict=True)
    ]
    power = mean_power_w(start_at=origin_at, start_wh=origin_wh, end_at=last_at, end_wh=last_top)
    if power is not None:
        view.avg_power_w = round(power)
        view.runway = _runway(view)


# --- Billing views for landlords -----------------------------------------------


@dataclass
class PricedInterval:
    interval: Interval
    lines: list[Line]
    amount: str


def unit_billing(*, unit: Unit, day: date | None = None, limit: int = 48) -> dict[str, object]:
    """Intervals with the tariff lines that priced them (the latest, or one local
    day's), and the unit's invoices."""
    rows = []
    intervals = Interval.objects.filter(meter__unit=unit)
    if day is not None:
        tz = zoneinfo.ZoneInfo(unit.property.timezone)
        start = datetime.combine(day, time(0), tz)
        end = datetime.combine(day + timedelta(days=1), time(0), tz)
        intervals = intervals.filter(start__gte=start, start__lt=end).order_by("start")
        limit = 60  # a 25-hour day has 50 half hours, plus any held gaps
    else:
        intervals = intervals.order_by("-start")
    for interval in intervals[:limit]:
        lines = [Line.from_json(raw) for raw in interval.lines]
        amount = (
            format_money(round_half_up(interval.gross_sub), unit.property.currency)
            if interval.gross_sub is not None
            else "held"
        )
        rows.append(PricedInterval(interval=interval, lines=lines, amount=amount))
    invoices = Invoice.objects.filter(tenancy__unit=unit).select_related("tenancy__tenant")
    return {"intervals": rows, "invoices": list(invoices[:24]), "interval_day": day}


def flagged_for_landlord(*, landlord_id: int, limit: int = 200) -> dict[str, object]:
    readings = (
        Reading.objects.filter(landlord_id=landlord_id)
        .exclude(quality=Reading.Quality.ACTUAL)
        .select_related("meter__unit__property")
        .order_by("-taken_at")[:limit]
    )
    held = (
        Interval.objects.filter(landlord_id=landlord_id, quality=Interval.Quality.HELD)
        .select_related("meter__unit__property")
        .order_by("-start")[:limit]
    )
    return {
        "flagged_readings": list(readings),
        "held_intervals": list(held),
        "plan_requests": open_plan_requests(landlord_id=landlord_id),
    }


# --- The tenant's history and receipts -------------------------------------------


def unit_price(price_per_kwh_minor: Decimal, currency: str) -> str:
    """'28.5p per kWh' (pence for pounds), '€0.285 per kWh' otherwise."""
    if currency.upper() == "GBP":
        return f"{price_per_kwh_minor.normalize():f}p per kWh"
    major = (price_per_kwh_minor / 100).normalize()
    return f"{format_money(0, currency)[:-4]}{major:f} per kWh"


def prices_in_force(*, unit: Unit, when: datetime | None = None) -> list[str]:
    """The tariff's prices on ``when`` (now), for people: one line per band and tier,
    then the standing charge."""
    try:
        version = unit_schedule(unit=unit).version_at(when or timezone.now())
    except Unpriceable:
        return []
    currency = unit.property.currency
    hours: dict[str, list[str]] = {}
    for w in version.windows:
        hours.setdefault(w.band, []).append(f"{w.start_hour:02d}:00-{w.end_hour % 24:02d}:00")
    lines = []
    for rate in sorted(version.rates, key=lambda r: (r.band, r.tier_from_wh)):
        name = rate.band or "Energy"
        if rate.band in hours:
            name += f" ({', '.join(hours[rate.band])})"
        if rate.tier_from_wh:
            name += f", above {rate.tier_from_wh // 1000:,} kWh a month"
        lines.append(f"{name}: {unit_price(rate.price_per_kwh_minor, currency)}")
    if version.standing_per_day_minor:
        standing = version.standing_per_day_minor
        lines.append(
            f"Standing charge: {unit_price(standing, currency).replace(' per kWh', '')} a day"
        )
    return lines


@dataclass
class HistoryRow:
    at: datetime
    what: str
    amount_minor: int  # positive into the tenant's balance, negative out of it
    payment: Payment | None


HISTORY_HIDDEN_KINDS = (LedgerTransaction.Kind.USAGE, LedgerTransaction.Kind.STANDING)


def tenancy_history_rows(*, tenancy: Tenancy) -> QuerySet[Posting]:
    """Every posting on the tenant's balance but the running energy and standing
    charges (bills and the balance sum those up), newest first."""
    return (
        Posting.objects.filter(landlord_id=tenancy.landlord_id)
        .filter(Q(debit__tenancy=tenancy) | Q(credit__tenancy=tenancy))
        .exclude(transaction__kind__in=HISTORY_HIDDEN_KINDS)
        .select_related("transaction__payment", "credit")
        .order_by("-transaction__created_at", "-id")
    )


def history_row(posting: Posting, tenancy: Tenancy) -> HistoryRow:
    txn = posting.transaction
    into = posting.credit.tenancy_id == tenancy.pk
    payment = getattr(txn, "payment", None)
    what = txn.get_kind_display()
    if payment is not None:
        what = f"{payment.get_purpose_display()} {payment.receipt_number}"
    elif txn.memo:
        what = f"{what}: {txn.memo}"
    return HistoryRow(
        at=txn.created_at,
        what=what,
        amount_minor=posting.amount_minor if into else -posting.amount_minor,
        payment=payment,
    )


@dataclass
class ReceiptSplit:
    repaid_minor: int  # emergency credit repaid from this payment
    credit_minor: int


def payment_split(*, payment: Payment) -> ReceiptSplit:
    """What a succeeded payment did: the emergency credit it repaid (the ledger's
    recovery posting for it) and the rest, credit."""
    repaid = (
        Posting.objects.filter(
            landlord_id=payment.landlord_id,
            transaction__idempotency_key=f"recovery:{payment.uuid}",
        ).aggregate(s=Sum("amount_minor"))["s"]
        or 0
    )
    return ReceiptSplit(repaid_minor=repaid, credit_minor=payment.amount_minor - repaid)


def unit_meter_label(*, unit: Unit) -> str:
    meter = Meter.objects.installed().filter(unit=unit).first()
    if meter is None:
        return ""
    return f"meter {meter.serial}"


# --- The unit page for people -----------------------------------------------------


def unit_people_facts(*, unit: Unit, tenancy: Tenancy | None) -> dict[str, object]:
    """What the unit page shows up front besides the unit's state and its usage
    chart (``landlord.usage``): its bills (with what is still owed on each) and its
    latest payments, and the tenant's payment-plan request (open, or its answer)."""
    bills = list(
        invoices_with_owed(Invoice.objects.filter(landlord_id=unit.landlord_id, tenancy__unit=unit))
        .select_related("tenancy__tenant")
        .order_by("-period_start")[:12]
    )
    payments = list(
        Payment.objects.filter(landlord_id=unit.landlord_id, tenancy__unit=unit)
        .exclude(status=Payment.Status.CANCELED)
        .select_related("tenancy__tenant")
        .order_by("-created_at")[:10]
    )
    plan = (
        PaymentPlanRequest.objects.filter(landlord_id=unit.landlord_id, tenancy__unit=unit)
        .select_related("tenancy__tenant", "answered_by")
        .order_by("-created_at", "-pk")
        .first()
    )
    if plan is not None and plan.status != PaymentPlanRequest.Status.OPEN:
        # An answer stays on the page for the tenancy it was given to, not for the next.
        plan = plan if tenancy is not None and plan.tenancy_id == tenancy.pk else None
    return {"bills": bills, "payments": payments, "plan_request": plan}


def automatic_payments_sentence(*, tenancy: Tenancy) -> str:
    """Prepaid auto top-up or postpaid autopay, said as a sentence."""
    found = PaymentSettings.objects.filter(tenancy=tenancy).first()
    card = saved_method_for(tenancy=tenancy)
    currency = tenancy.unit.property.currency
    if tenancy.unit.is_prepaid:
        if found is None or not found.auto_topup_enabled:
            return "Automatic top-up is off: nothing is charged unless you top up."
        if card is None:
            return "Automatic top-up is on, but no card is saved, so nothing can be charged."
        return (
            f"When your credit falls below {format_money(found.auto_topup_threshold_minor, currency)}, "
            f"{format_money(found.auto_topup_amount_minor, currency)} is charged to your {card}, "
            f"at most once every {found.auto_topup_period_hours} hours and "
            f"{format_money(found.auto_topup_monthly_cap_minor, currency)} a month."
        )
    if found is None or not found.autopay_enabled:
        return "Your bills are not paid automatically: pay each one from its page."
    if card is None:
        return "Automatic bill payment is on, but no card is saved, so nothing can be charged."
    return f"Each bill is paid automatically from your {card} on its due date."


def landlord_contacts(*, landlord_id: int) -> dict[str, object]:
    """Who a tenant can contact: the landlord's name and its owners' email addresses."""
    owners = (
        Membership.objects.filter(landlord_id=landlord_id, role=Membership.Role.OWNER)
        .exclude(user__email="")
        .select_related("user", "landlord")
        .order_by("pk")
    )
    rows = list(owners)
    name = rows[0].landlord.name if rows else ""
    return {"name": name, "emails": [m.user.email for m in rows]}


def open_plan_requests(*, landlord_id: int) -> list[PaymentPlanRequest]:
    """The tenants' open payment-plan requests, for the landlord's flagged page."""
    return list(
        PaymentPlanRequest.objects.filter(
            landlord_id=landlord_id, status=PaymentPlanRequest.Status.OPEN
        )
        .select_related("tenancy__unit__property", "tenancy__tenant")
        .order_by("created_at")
    )
