"""The usage chart: energy and money per half hour, day or month, for a tenancy
(the tenant's page) or for a whole unit across its tenancies (the landlord's).

Built from the priced half-hour slots (``meters.Interval``, kind SLOT) and the
ledger. Money is what the balance is charged, to the penny:

- energy: each meter's slots are priced in sub-units (``gross_sub``, tax
  included) and the ledger posts them in whole minor units, carrying the
  fraction (``payments.billing``). A bar's money is the same: the meter's
  running priced total rounded down at the bar's end, minus the same at its
  start. So the bars of a day add up to what the ledger takes for that day's
  energy, and bars never lose or invent a fraction of a penny.
- the standing charge: the ledger posts it once per local day under the key
  ``standing:<tenancy>:<day>``; day bars (week, month, year) include the
  posting of their day; half-hour bars do not, and the day's total says it.

A slot with no priced row (no readings, a held gap, a slot not yet derived)
is ``None``, drawn as a gap; never zero.
"""

from __future__ import annotations

import functools
import zoneinfo
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Q, Sum
from django.http import QueryDict
from django.utils import timezone

from meters.models import Interval, Meter
from payments.models import LedgerTransaction, Posting
from payments.rating import SCALE

from .models import Tenancy, Unit

PERIODS = ("day", "week", "month", "year")
SLOT = timedelta(minutes=30)


@dataclass
class Series:
    labels: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # bucket starts, Unix seconds
    wh: list[int | None] = field(default_factory=list)
    minor: list[int | None] = field(default_factory=list)

    @property
    def total_wh(self) -> int:
        return sum(v for v in self.wh if v is not None)

    @property
    def total_minor(self) -> int:
        return sum(v for v in self.minor if v is not None)


@dataclass
class Usage:
    period: str
    day: date  # the day the period was asked for
    start: date
    end: date  # exclusive
    currency: str
    current: Series
    previous: Series
    standing_minor: int  # the standing charges posted for the period's days
    standing_in_bars: bool
    includes_tax: bool
    charged: str = "your balance was charged"  # who paid, in the sentence below

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def total_minor(self) -> int:
        """What the balance was charged for the period, standing charges included."""
        return self.current.total_minor + (0 if self.standing_in_bars else self.standing_minor)

    @property
    def includes(self) -> str:
        """What the money figures include, for people."""
        energy = "energy including tax" if self.includes_tax else "energy"
        if self.standing_in_bars:
            return f"Money is what {self.charged}: {energy} and the daily standing charge."
        return (
            f"Money is what {self.charged} for {energy}; the day's standing "
            "charge is in the total, not in the half-hour bars."
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "day": self.day.isoformat(),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "currency": self.currency,
            "labels": self.current.labels,
            "x": self.current.starts,
            "wh": self.current.wh,
            "minor": self.current.minor,
            "previous": {
                "labels": self.previous.labels,
                "wh": self.previous.wh,
                "minor": self.previous.minor,
            },
            "total_wh": self.current.total_wh,
            "energy_minor": self.current.total_minor
            - (self.standing_minor if self.standing_in_bars else 0),
            "standing_minor": self.standing_minor,
            "total_minor": self.total_minor,
            "previous_total_wh": self.previous.total_wh,
            "previous_total_minor": self.previous.total_minor,
            "includes": self.includes,
        }


def period_bounds(period: str, day: date) -> tuple[date, date]:
    """The local days [start, end) of the period holding ``day``."""
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        return start, (start + timedelta(days=32)).replace(day=1)
    start = day.replace(month=1, day=1)
    return start, start.replace(year=start.year + 1)


def previous_day(period: str, day: date) -> date:
    """A day in the period before the one holding ``day``."""
    start, _ = period_bounds(period, day)
    return start - timedelta(days=1)


def _midnight(day: date, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def _buckets(
    period: str, start: date, end: date, tz: zoneinfo.ZoneInfo
) -> list[tuple[datetime, str, date | None]]:
    """(UTC start, label, the local day it is if a whole day) per bar, in order."""
    out: list[tuple[datetime, str, date | None]] = []
    if period == "day":
        at, stop = _midnight(start, tz), _midnight(end, tz)
        while at < stop:  # 46, 48 or 50 half hours, as the local day has
            out.append((at, f"{at.astimezone(tz):%H:%M}", None))
            at += SLOT
        return out
    if period == "year":
        month = start
        while month < end:
            out.append((_midnight(month, tz), f"{month:%b}", None))
            month = (month + timedelta(days=32)).replace(day=1)
        return out
    day = start
    while day < end:
        label = f"{day:%a}" if period == "week" else f"{day.day}"
        out.append((_midnight(day, tz), label, day))
        day += timedelta(days=1)
    return out


def _series(
    *,
    landlord_id: int,
    tenancies: list[Tenancy],
    clip: Tenancy | None,
    meters: list[int],
    period: str,
    start: date,
    end: date,
    tz: zoneinfo.ZoneInfo,
) -> tuple[Series, int, bool]:
    """``tenancies``: whose standing charges count; ``clip``: the one tenancy whose
    days alone are shown (a tenant's chart), or none (the unit's, every tenant's)."""
    buckets = _buckets(period, start, end, tz)
    edges = [b[0] for b in buckets] + [_midnight(end, tz)]
    first = _midnight(start, tz)
    last = None
    if clip is not None:
        # Only the tenancy's own days: before or after it the unit was someone else's.
        first = _midnight(max(start, clip.start_date), tz)
        if clip.end_date:
            last = _midnight(min(end, clip.end_date + timedelta(days=1)), tz)
    slots = Interval.objects.filter(
        meter_id__in=meters, kind=Interval.Kind.SLOT, start__gte=first, start__lt=edges[-1]
    )
    if last is not None:
        slots = slots.filter(start__lt=last)
    rows = list(
        slots.order_by("start").values_list(
            "meter_id", "start", "energy_wh", "gross_sub", "net_sub", "quality"
        )
    )
    # Each meter's priced total before the period: where its carried fraction stands.
    carried = {
        row["meter_id"]: row["s"] or 0
        for row in Interval.objects.filter(
            meter_id__in=meters, kind=Interval.Kind.SLOT, start__lt=first
        )
        .values("meter_id")
        .annotate(s=Sum("gross_sub"))
    }
    wh: list[int | None] = [None] * len(buckets)
    money: list[int | None] = [None] * len(buckets)
    includes_tax = False
    for meter_id, at, energy, gross, net, quality in rows:
        if quality == Interval.Quality.HELD or gross is None:
            continue  # not known yet: a gap, not zero
        i = bisect_right(edges, at) - 1
        wh[i] = (wh[i] or 0) + energy
        includes_tax = includes_tax or (net is not None and gross != net)
        before = carried.get(meter_id, 0)
        carried[meter_id] = before + gross
        money[i] = (money[i] or 0) + carried[meter_id] // SCALE - before // SCALE
    standing = _standing(landlord_id=landlord_id, tenancies=tenancies, start=start, end=end)
    if period != "day":  # day bars carry their day's standing charge
        for day, amount in standing.items():
            i = bisect_right(edges, _midnight(day, tz)) - 1
            money[i] = (money[i] or 0) + amount
    series = Series(
        labels=[b[1] for b in buckets],
        starts=[int(b[0].timestamp()) for b in buckets],
        wh=wh,
        minor=money,
    )
    return series, sum(standing.values()), includes_tax


def _standing(
    *, landlord_id: int, tenancies: list[Tenancy], start: date, end: date
) -> dict[date, int]:
    """The standing charge the ledger posted for each local day of [start, end), to
    the given tenancies."""
    keys = {}
    for tenancy in tenancies:
        day = start
        while day < end:
            keys[f"standing:{tenancy.pk}:{day.isoformat()}"] = day
            day += timedelta(days=1)
    if not keys:
        return {}
    rows = (
        Posting.objects.filter(
            landlord_id=landlord_id,
            transaction__kind=LedgerTransaction.Kind.STANDING,
            transaction__idempotency_key__in=list(keys),
        )
        .filter(Q(debit__tenancy__in=[t.pk for t in tenancies]))
        .values_list("transaction__idempotency_key", "amount_minor")
    )
    out: dict[date, int] = {}
    for key, amount in rows:
        out[keys[key]] = out.get(keys[key], 0) + amount
    return out


def _usage(
    *,
    unit: Unit,
    tenancies: list[Tenancy],
    clip: Tenancy | None,
    period: str,
    day: date,
    **extra: str,
) -> Usage:
    """The usage of ``unit``'s meters for the period holding ``day`` and the period
    before it (``tenancies``, ``clip``: as for :func:`_series`)."""
    tz = zoneinfo.ZoneInfo(unit.property.timezone)
    meters = list(Meter.objects.filter(unit=unit).values_list("pk", flat=True))
    start, end = period_bounds(period, day)
    p_start, p_end = period_bounds(period, previous_day(period, day))
    series = functools.partial(
        _series,
        landlord_id=unit.landlord_id,
        tenancies=tenancies,
        clip=clip,
        meters=meters,
        period=period,
        tz=tz,
    )
    current, standing, tax = series(start=start, end=end)
    previous, _, p_tax = series(start=p_start, end=p_end)
    return Usage(
        period=period,
        day=day,
        start=start,
        end=end,
        currency=unit.property.currency,
        current=current,
        previous=previous,
        standing_minor=standing,
        standing_in_bars=period != "day",
        includes_tax=tax or p_tax,
        **extra,
    )


def tenancy_usage(*, tenancy: Tenancy, period: str, day: date) -> Usage:
    """The tenant's usage for the period holding ``day``, and the period before it."""
    return _usage(unit=tenancy.unit, tenancies=[tenancy], clip=tenancy, period=period, day=day)


def unit_usage(*, unit: Unit, period: str, day: date) -> Usage:
    """The unit's usage for the period holding ``day`` and the period before it: all
    its meters, every tenant's days and the vacant ones (whose energy the ledger posts
    to the landlord's vacant-units account), and the standing charges posted to its
    tenancies."""
    end = period_bounds(period, day)[1]
    p_start = period_bounds(period, previous_day(period, day))[0]
    tenancies = list(
        Tenancy.objects.filter(landlord_id=unit.landlord_id, unit=unit, start_date__lt=end).filter(
            Q(end_date=None) | Q(end_date__gte=p_start)
        )
    )
    return _usage(
        unit=unit,
        tenancies=tenancies,
        clip=None,
        period=period,
        day=day,
        charged="the unit was charged (a vacant day to your vacant-units account)",
    )


def usage_params(query: QueryDict, tz: str) -> tuple[str, date, str]:
    """(period, day, error) from ``?period=&date=``: a bad period or date falls back
    to today's day view, with the error to say."""
    today = timezone.localdate(timezone=zoneinfo.ZoneInfo(tz))
    period = query.get("period", "day") or "day"
    raw = query.get("date", "")
    if period not in PERIODS:
        return "day", today, f"There is no “{period[:20]}” view; showing today."
    if not raw:
        return period, today, ""
    try:
        return period, date.fromisoformat(raw), ""
    except ValueError:
        return period, today, f"“{raw[:20]}” is not a date (YYYY-MM-DD); showing today."


def usage_context(data: Usage) -> dict[str, object]:
    """What the chart's template (``usage/_chart.html``) shows besides the chart."""
    return {
        "u": data,
        "rows": list(
            zip(
                data.current.labels,
                data.current.wh,
                data.current.minor,
                data.previous.wh + [None] * len(data.current.wh),
                strict=False,
            )
        ),
        "periods": PERIODS,
        "earlier": previous_day(data.period, data.day),
        "later": period_bounds(data.period, data.day)[1],
    }
