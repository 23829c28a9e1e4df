"""Read-only views of a unit's state for pages and live updates."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, Prefetch, QuerySet
from django.db.models.functions import TruncMinute
from django.utils import timezone

from config.formats import format_money
from meters.models import Alert, Device, Interval, Meter, Reading
from payments.billing import (
    open_period_accrued,
)
from payments.emergency import emergency_credit_available, emergency_debt
from payments.models import Account, Invoice
from payments.rating import SCALE, Line, round_half_up
from payments.tariffs import current_price_per_kwh
from supply.alerts import open_alerts
from supply.cutoff import ScheduledCutoff, cutoff_schedule
from supply.runway import mean_power_w, runway_hours, runway_text

from .models import Tenancy, Unit


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


def _unit_view(unit: Unit, tenancy: Tenancy | None, balance: int | None) -> UnitView:
    devices: list[Device] = list(unit.devices.all())
    meters: list[Meter] = [m for m in unit.meters.all() if m.removed_at is None]
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
    if view.balance_minor <= 0:
        return "no credit left"
    if not view.avg_power_w:
        return "no recent usage to estimate from"
    price = current_price_per_kwh(unit=view.unit)
    if price is None:
        return ""
    hours = runway_hours(
        balance_minor=view.balance_minor,
        power_w=view.avg_power_w,
        price_per_kwh_minor=float(price),
    )
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


def tenancy_view(*, tenancy: Tenancy) -> UnitView:
    fresh = (
        Tenancy.objects.select_related("account", "unit__property", "unit__tariff")
        .prefetch_related("unit__devices", "unit__meters")
        .get(pk=tenancy.pk)
    )
    view = _unit_view(fresh.unit, fresh, _balance(fresh))
    _add_usage(view)
    _add_billing(view, fresh)
    _add_safety(view)
    return view


def _add_billing(view: UnitView, tenancy: Tenancy) -> None:
    view.invoices = list(Invoice.objects.filter(tenancy=tenancy).order_by("-period_start")[:12])
    view.accrued_minor, view.accrued_wh = open_period_accrued(unit=view.unit)
    view.emergency_debt_minor = emergency_debt(tenancy=tenancy)
    view.emergency_available = emergency_credit_available(
        tenancy=tenancy, balance_minor=view.balance_minor
    )


def _add_usage(view: UnitView, minutes: int = 60, bars: int = 12) -> None:
    """Energy per 5-minute slot over the last hour, and the average power.

    Each slot's energy is its highest register minus the one before it; the
    first slot starts from the last reading before the window (or, on a new
    meter, the first reading inside it), so it is never blank.
    """
    meter = next((m for m in view.unit.meters.all() if m.removed_at is None), None)
    if meter is None:
        return
    now = timezone.now()
    start = now - timedelta(minutes=minutes)
    actual = Reading.objects.filter(meter=meter, quality=Reading.Quality.ACTUAL)
    origin = (
        actual.filter(taken_at__lt=start).order_by("-taken_at").first()
        or actual.filter(taken_at__gte=start).order_by("taken_at").first()
    )
    if origin is None:
        return
    per_minute = (
        actual.filter(taken_at__gte=start)
        .annotate(minute=TruncMinute("taken_at"))
        .values("minute")
        .annotate(top=Max("register_wh"), last=Max("taken_at"))
        .order_by("minute")
    )
    slot = minutes // bars
    tops: list[int | None] = [None] * bars
    last_at, last_top = origin.taken_at, origin.register_wh
    for row in per_minute:
        idx = min(max(int((row["minute"] - start).total_seconds() // (slot * 60)), 0), bars - 1)
        tops[idx] = row["top"]
        last_at, last_top = row["last"], row["top"]
    usage: list[int] = []
    previous = origin.register_wh
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
    power = mean_power_w(
        start_at=origin.taken_at, start_wh=origin.register_wh, end_at=last_at, end_wh=last_top
    )
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
    return {"flagged_readings": list(readings), "held_intervals": list(held)}
