"""The landlord's home: what needs attention first, then the numbers.

Read-only. Built from the units page's own rows (``selectors.landlord_unit_views``:
units with their devices, meters and tenancies already loaded) plus a fixed
number of landlord-wide queries, so its cost does not grow with the number of
units. Scheduled cut-offs are the exception: each asks the unit's protections
(the dispute freeze hook, one query), and at most ``LIMIT`` of them are read.

Every number carries the address of the rows behind it (a filtered list page).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Case, F, Max, Min, Q, Sum, When
from django.urls import reverse
from django.utils import timezone

from disputes.models import Dispute
from meters.models import CutoffNotice, Interval, Reading, RelayCommand
from payments.arrears import BUCKETS, Ageing, landlord_arrears
from payments.models import Account, Invoice, Payment, Posting
from payments.models import Dispute as Chargeback
from payments.tariffs import current_price_per_kwh
from supply.cutoff import cutoff_expected_at, protections_for
from supply.runway import duration_text, mean_power_w, runway_hours

from .models import PaymentPlanRequest, Unit
from .selectors import UnitView

LIMIT = 50
# Readings flagged, and payments failed, this recently are listed.
FLAGGED_DAYS = 7
FAILED_PAYMENT_DAYS = 30
REVENUE_DAYS = 30
# Chargebacks waiting for the landlord's evidence (Stripe's statuses).
CHARGEBACK_OPEN = ("warning_needs_response", "needs_response")


@dataclass
class Issue:
    """One thing that needs attention: what, where, how urgent, where to act."""

    kind: str
    title: str
    detail: str
    url: str
    severity: str = "warn"  # "danger" or "warn": the alert class on the page
    unit: Unit | None = None
    hours_left: float | None = None


@dataclass
class Figure:
    """A number on the home page and the page that lists the rows behind it."""

    label: str
    amounts: dict[str, int]  # {currency: minor}; a count has {"": n}
    url: str
    note: str = ""

    @property
    def is_count(self) -> bool:
        return "" in self.amounts

    @property
    def count(self) -> int:
        return self.amounts.get("", 0)


@dataclass
class Home:
    issues: list[Issue] = field(default_factory=list)
    money: list[Figure] = field(default_factory=list)
    counts: list[Figure] = field(default_factory=list)
    arrears: Ageing | None = None
    arrears_figures: list[Figure] = field(default_factory=list)
    tz: str = ""
    month_start: date | None = None


def meter_silent_after() -> timedelta:
    """A connected meter that sent no reading for this long is "silent"
    (``SUBMETER["METER_SILENT_MINUTES"]``)."""
    return timedelta(minutes=int(settings.SUBMETER.get("METER_SILENT_MINUTES", 30)))


def relay_stuck_after() -> timedelta:
    """A relay command neither acknowledged nor superseded this long after it was made
    is "not switching" (``SUBMETER["RELAY_STUCK_SECONDS"]``)."""
    return timedelta(seconds=int(settings.SUBMETER.get("RELAY_STUCK_SECONDS", 120)))


def _first_property_row(rows: list[UnitView]) -> UnitView | None:
    return min(rows, key=lambda row: row.unit.property_id, default=None)


def home_tz(rows: list[UnitView]) -> str:
    """The time zone a landlord's "this month" is counted in: its first property's
    (``reports.landlord_zone`` says the same from the database)."""
    row = _first_property_row(rows)
    return row.unit.property.timezone if row else str(settings.TIME_ZONE)


def home_currency(rows: list[UnitView]) -> str:
    """The currency a zero is shown in: the first property's."""
    row = _first_property_row(rows)
    return row.currency if row else "GBP"


def _url(name: str, **params: object) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in ("", None)})
    return reverse(name) + (f"?{query}" if query else "")


def _unit_url(unit: Unit) -> str:
    return reverse("landlord:unit", args=[unit.pk])


def _unit_name(unit: Unit) -> str:
    return f"{unit.property.name} · {unit.name}"


# --- exceptions ----------------------------------------------------------------------


def _supply_issues(rows: list[UnitView], now: datetime) -> list[Issue]:
    issues = []
    stale = meter_silent_after()
    for row in rows:
        unit = row.unit
        device = next(iter(unit.devices.all()), None)
        if row.relay_reported == "off":
            issues.append(
                Issue(
                    "off",
                    f"{_unit_name(unit)}: supply off",
                    row.relay_reason or "switched off",
                    _unit_url(unit),
                    "danger",
                    unit,
                )
            )
        if device is None:
            continue
        if not device.connected and device.last_seen_at is not None:
            issues.append(
                Issue(
                    "offline",
                    f"{_unit_name(unit)}: meter offline",
                    f"last heard {timezone.localtime(device.last_seen_at, row.tz):%d %b %H:%M}",
                    _unit_url(unit),
                    "warn",
                    unit,
                )
            )
        elif device.connected and _silent(row, device.created_at, now, stale):
            since = (
                f"no reading since {timezone.localtime(row.last_reading_at, row.tz):%d %b %H:%M}"
                if row.last_reading_at
                else "connected, but no reading yet"
            )
            issues.append(
                Issue(
                    "silent",
                    f"{_unit_name(unit)}: meter silent",
                    since,
                    _unit_url(unit),
                    "warn",
                    unit,
                )
            )
    return issues


def _silent(row: UnitView, registered_at: datetime, now: datetime, stale: timedelta) -> bool:
    """Connected, yet no reading for ``stale`` (or none ever, long after it was registered)."""
    last = row.last_reading_at or registered_at
    return now - last > stale


def _cutoff_issues(landlord_id: int, now: datetime) -> tuple[list[Issue], set[int]]:
    notices = (
        CutoffNotice.objects.filter(
            landlord_id=landlord_id, status=CutoffNotice.Status.SCHEDULED, cut_at__isnull=True
        )
        .select_related("unit__property", "tenancy")
        .order_by("earliest_at")[:LIMIT]
    )
    issues, units = [], set()
    for notice in notices:
        unit = notice.unit
        units.add(unit.pk)
        protections = protections_for(unit=unit, tenancy=notice.tenancy)
        at = cutoff_expected_at(notice=notice, protections=protections, now=now)
        if at is None:
            issues.append(
                Issue(
                    "cutoff",
                    f"{_unit_name(unit)}: out of credit",
                    f"no disconnection: {protections.blocking_reason()}",
                    _unit_url(unit),
                    "warn",
                    unit,
                )
            )
            continue
        hours = max((at - now).total_seconds() / 3600, 0)
        local = timezone.localtime(at, zoneinfo.ZoneInfo(protections.tz))
        issues.append(
            Issue(
                "cutoff",
                f"{_unit_name(unit)}: supply goes off in {duration_text(hours)}",
                f"scheduled cut-off {local:%a %d %b %H:%M} unless credit is added",
                _unit_url(unit),
                "danger",
                unit,
                hours,
            )
        )
    return issues, units


def _runway_issues(
    rows: list[UnitView], landlord_id: int, now: datetime, skip: set[int]
) -> list[Issue]:
    """Prepaid credit that runs out within ``LOW_RUNWAY_HOURS`` at the last hour's power
    (one query for every meter's first and last reading of the hour)."""
    candidates = [
        row
        for row in rows
        if row.is_prepaid
        and row.tenancy is not None
        and row.balance_minor is not None
        and row.balance_minor > 0
        and row.unit.pk not in skip
        and row.unit.tariff_id is not None
    ]
    if not candidates:
        return []
    meter_unit = {
        meter.pk: row
        for row in candidates
        for meter in row.unit.meters.all()
        if meter.removed_at is None
    }
    spans = (
        Reading.objects.filter(
            landlord_id=landlord_id,
            meter_id__in=list(meter_unit),
            quality=Reading.Quality.ACTUAL,
            taken_at__gte=now - timedelta(hours=1),
        )
        .values("meter_id")
        .annotate(
            t0=Min("taken_at"), t1=Max("taken_at"), w0=Min("register_wh"), w1=Max("register_wh")
        )
        .order_by()
    )
    limit = float(settings.SUBMETER["LOW_RUNWAY_HOURS"])
    issues = []
    for span in spans:
        row = meter_unit[span["meter_id"]]
        power = mean_power_w(
            start_at=span["t0"], start_wh=span["w0"], end_at=span["t1"], end_wh=span["w1"]
        )
        price = current_price_per_kwh(unit=row.unit, now=now) if power else None
        if price is None or row.balance_minor is None:
            continue
        hours = runway_hours(
            balance_minor=row.balance_minor, power_w=power, price_per_kwh_minor=float(price)
        )
        if hours is None or hours > limit:
            continue
        issues.append(
            Issue(
                "runway",
                f"{_unit_name(row.unit)}: credit runs out in {duration_text(hours)}",
                "at the last hour's usage; the tenant has been warned",
                _unit_url(row.unit),
                "warn",
                row.unit,
                hours,
            )
        )
    return issues


def _relay_issues(landlord_id: int, now: datetime) -> list[Issue]:
    stuck = (
        RelayCommand.objects.filter(
            landlord_id=landlord_id,
            generation=F("device__desired_generation"),
            status__in=[
                RelayCommand.Status.PENDING,
                RelayCommand.Status.SENT,
                RelayCommand.Status.REJECTED,
            ],
            created_at__lt=now - relay_stuck_after(),
        )
        .select_related("device__unit__property")
        .order_by("created_at")[:LIMIT]
    )
    issues = []
    for command in stuck:
        device = command.device
        if device.relay_converged:
            continue
        minutes = int((now - command.created_at).total_seconds() // 60)
        issues.append(
            Issue(
                "relay",
                f"{_unit_name(device.unit)}: relay not switching {command.state}",
                f"{command.get_status_display().lower()} for {minutes} minutes, "
                f"{command.attempts} attempt{'s' if command.attempts != 1 else ''}: {command.reason}",
                _unit_url(device.unit),
                "danger",
                device.unit,
            )
        )
    return issues


def _flagged_issues(landlord_id: int, now: datetime) -> list[Issue]:
    flagged = (
        Reading.objects.filter(
            landlord_id=landlord_id, taken_at__gte=now - timedelta(days=FLAGGED_DAYS)
        )
        .exclude(quality=Reading.Quality.ACTUAL)
        .count()
    )
    held = Interval.objects.filter(landlord_id=landlord_id, quality=Interval.Quality.HELD).count()
    if not flagged and not held:
        return []
    parts = []
    if flagged:
        parts.append(
            f"{flagged} reading{'s' if flagged != 1 else ''} flagged in {FLAGGED_DAYS} days"
        )
    if held:
        parts.append(f"{held} stretch{'es' if held != 1 else ''} of energy held from billing")
    return [Issue("flagged", "Flagged readings", "; ".join(parts), reverse("landlord:flagged"))]


def _payment_issues(landlord_id: int, now: datetime) -> list[Issue]:
    since = now - timedelta(days=FAILED_PAYMENT_DAYS)
    failed = Payment.objects.filter(
        landlord_id=landlord_id, status=Payment.Status.FAILED, created_at__gte=since
    )
    found = list(failed.select_related("tenancy__unit__property").order_by("-created_at")[:6])
    issues = []
    url = _url("payments:landlord_payments", status=Payment.Status.FAILED)
    for payment in found[:5]:
        unit = payment.tenancy.unit
        issues.append(
            Issue(
                "payment",
                f"{_unit_name(unit)}: payment failed",
                f"{payment.get_purpose_display()} {payment.receipt_number}, "
                f"{timezone.localtime(payment.created_at):%d %b %H:%M}",
                url,
                "warn",
                unit,
            )
        )
    if len(found) > 5:
        issues.append(Issue("payment", "More failed payments", "see all of them", url))
    return issues


def _dispute_issues(landlord_id: int) -> list[Issue]:
    disputes = list(
        Dispute.objects.unresolved()
        .filter(landlord_id=landlord_id)
        .select_related("unit__property")
        .order_by("created_at")[:6]
    )
    issues = [
        Issue(
            "dispute",
            f"{_unit_name(d.unit)}: dispute #{d.pk}",
            d.get_status_display(),
            reverse("disputes:detail", args=[d.pk]),
            "danger" if d.status == Dispute.Status.OPEN else "warn",
            d.unit,
        )
        for d in disputes[:5]
    ]
    if len(disputes) > 5:
        issues.append(
            Issue(
                "dispute",
                "More open disputes",
                "see all of them",
                reverse("disputes:landlord_list"),
            )
        )
    chargebacks = Chargeback.objects.filter(
        landlord_id=landlord_id, status__in=CHARGEBACK_OPEN
    ).count()
    if chargebacks:
        issues.append(
            Issue(
                "chargeback",
                f"{chargebacks} chargeback{'s' if chargebacks != 1 else ''} waiting for evidence",
                "the tenant's bank is disputing a payment",
                reverse("payments:landlord_payments"),
                "danger",
            )
        )
    return issues


def _plan_issues(landlord_id: int) -> list[Issue]:
    """Tenants' payment-plan requests waiting for an answer (given on the unit page)."""
    found = list(
        PaymentPlanRequest.objects.filter(
            landlord_id=landlord_id, status=PaymentPlanRequest.Status.OPEN
        )
        .select_related("tenancy__unit__property", "tenancy__tenant")
        .order_by("created_at")[:6]
    )
    issues = []
    for plan in found[:5]:
        unit = plan.tenancy.unit
        tenant = plan.tenancy.tenant
        issues.append(
            Issue(
                "plan",
                f"{_unit_name(unit)}: payment-plan request",
                f"{tenant.get_full_name() or tenant.get_username()} asked on "
                f"{timezone.localtime(plan.created_at):%d %b}: answer it",
                _unit_url(unit) + "#plan-request",
                "warn",
                unit,
            )
        )
    if len(found) > 5:
        issues.append(
            Issue(
                "plan", "More payment-plan requests", "see all of them", reverse("landlord:flagged")
            )
        )
    return issues


ORDER = {
    "cutoff": 0,
    "off": 1,
    "relay": 2,
    "runway": 3,
    "dispute": 4,
    "chargeback": 5,
    "plan": 6,
}


def landlord_issues(
    *, landlord_id: int, rows: list[UnitView], now: datetime | None = None
) -> list[Issue]:
    """What needs attention, most urgent first: cut-offs soonest first, then
    supplies off, relays, credit running out, disputes, and the rest."""
    now = now or timezone.now()
    cutoffs, cut_units = _cutoff_issues(landlord_id, now)
    issues = (
        cutoffs
        + _supply_issues(rows, now)
        + _relay_issues(landlord_id, now)
        + _runway_issues(rows, landlord_id, now, cut_units)
        + _dispute_issues(landlord_id)
        + _plan_issues(landlord_id)
        + _payment_issues(landlord_id, now)
        + _flagged_issues(landlord_id, now)
    )
    issues.sort(
        key=lambda i: (
            ORDER.get(i.kind, 9),
            i.hours_left if i.hours_left is not None else float("inf"),
        )
    )
    return issues


# --- the numbers -----------------------------------------------------------------------


def _by_currency(rows: Iterable[Any], key: str = "currency") -> dict[str, int]:
    return {str(r[key]): int(r["s"] or 0) for r in rows if r["s"]}


def month_bounds(*, now: datetime, tz: str) -> tuple[date, datetime]:
    """The first local day of this month and its start as an aware datetime."""
    local = timezone.localtime(now, zoneinfo.ZoneInfo(tz))
    first = local.date().replace(day=1)
    return first, datetime.combine(first, time(0), zoneinfo.ZoneInfo(tz))


def landlord_money(*, landlord_id: int, tz: str, now: datetime, currency: str) -> list[Figure]:
    first, month_start = month_bounds(now=now, tz=tz)
    today = timezone.localtime(now, zoneinfo.ZoneInfo(tz)).date()
    collected = (
        Payment.objects.filter(
            landlord_id=landlord_id,
            status=Payment.Status.SUCCEEDED,
            ledger_transaction__created_at__gte=month_start,
        )
        .values("currency")
        .annotate(s=Sum("amount_minor"))
        .order_by()
    )
    billed = (
        Invoice.objects.filter(landlord_id=landlord_id, issued_at__gte=month_start)
        .values("currency")
        .annotate(s=Sum("total_minor"))
        .order_by()
    )
    revenue_kind = Account.Kind.REVENUE
    revenue = (
        Posting.objects.filter(
            landlord_id=landlord_id,
            transaction__created_at__gte=now - timedelta(days=REVENUE_DAYS),
        )
        .filter(Q(credit__kind=revenue_kind) | Q(debit__kind=revenue_kind))
        .annotate(
            cur=Case(
                When(credit__kind=revenue_kind, then=F("credit__currency")),
                default=F("debit__currency"),
            )
        )
        .values("cur")
        .annotate(
            s=Sum(
                Case(
                    When(credit__kind=revenue_kind, then=F("amount_minor")),
                    default=-F("amount_minor"),
                )
            )
        )
        .order_by()
    )
    since = (now - timedelta(days=REVENUE_DAYS)).astimezone(zoneinfo.ZoneInfo(tz)).date()
    figures = [
        Figure(
            "Collected this month",
            _by_currency(collected),
            _url(
                "payments:landlord_payments",
                status=Payment.Status.SUCCEEDED,
                **{"from": first.isoformat(), "to": today.isoformat()},
            ),
            "payments credited since the 1st",
        ),
        Figure(
            "Billed this month",
            _by_currency(billed),
            _url("landlord:bills", **{"from": first.isoformat(), "to": today.isoformat()}),
            "postpaid bills issued since the 1st",
        ),
        Figure(
            f"Revenue, last {REVENUE_DAYS} days",
            _by_currency(revenue, "cur"),
            _url(
                "landlord:ledger",
                account=revenue_kind,
                **{"from": since.isoformat(), "to": today.isoformat()},
            ),
            "energy, standing charges and fees charged, less corrections",
        ),
    ]
    for figure in figures:
        figure.amounts = figure.amounts or {currency: 0}
    return figures


def arrears_figures(ageing: Ageing, currency: str) -> list[Figure]:
    return [
        Figure(
            label,
            ageing.totals[key] or {currency: 0},
            _url("landlord:arrears", bucket=key),
            f"{ageing.counts[key]} tenanc{'ies' if ageing.counts[key] != 1 else 'y'}",
        )
        for key, label, _first, _last in BUCKETS
    ]


def unit_filters() -> dict[str, str]:
    """The unit list's filters (``?show=``) and their names."""
    return {
        "let": "let",
        "vacant": "vacant",
        "prepaid": "prepaid",
        "postpaid": "postpaid",
        "online": "meters online",
        "offline": "meters offline or not yet connected",
        "off": "supply off",
    }


def unit_matches(row: UnitView, show: str) -> bool:
    """Whether a unit row is one of those a count on the home page counts."""
    checks = {
        "let": row.tenancy is not None,
        "vacant": row.tenancy is None,
        "prepaid": row.is_prepaid,
        "postpaid": not row.is_prepaid,
        "online": row.device_connected,
        "offline": row.has_device and not row.device_connected,
        "off": row.relay_reported == "off",
    }
    return checks.get(show, True)


def unit_counts(rows: list[UnitView]) -> list[Figure]:
    figures = [Figure("Units", {"": len(rows)}, reverse("landlord:units") + "#unit-list")]
    for key, label in unit_filters().items():
        figures.append(
            Figure(
                label,
                {"": sum(1 for row in rows if unit_matches(row, key))},
                _url("landlord:units", show=key) + "#unit-list",
            )
        )
    return figures


def landlord_home(*, landlord_id: int, rows: list[UnitView], now: datetime | None = None) -> Home:
    """Everything on the landlord's home above the unit list."""
    now = now or timezone.now()
    tz = home_tz(rows)
    ageing = landlord_arrears(landlord_id=landlord_id, now=now)
    return Home(
        issues=landlord_issues(landlord_id=landlord_id, rows=rows, now=now),
        money=landlord_money(landlord_id=landlord_id, tz=tz, now=now, currency=home_currency(rows)),
        counts=unit_counts(rows),
        arrears=ageing,
        arrears_figures=arrears_figures(ageing, home_currency(rows)),
        tz=tz,
        month_start=month_bounds(now=now, tz=tz)[0],
    )
