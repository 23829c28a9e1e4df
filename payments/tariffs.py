"""Tariffs as the rating engine sees them: versions loaded and cached per tariff
revision, a unit's schedule, new versions, and the price in force now."""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from landlord.models import Unit
from meters.models import Interval

from . import rating
from .errors import BillingError
from .models import Tariff, TariffVersion


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
