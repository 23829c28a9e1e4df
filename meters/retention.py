"""Raw readings kept for ``READING_RETENTION_DAYS``, then thinned to one a day.

Readings are the evidence behind the half-hour slots that are billed; once a
meter's slots before the horizon (now minus the retention) are all priced and
posted, the readings between them are no longer needed to bill, only to
explain. So, per meter, readings taken before the horizon are deleted except:

- the last reading of each day (UTC): the register at every day's end stays,
  so any day's usage can still be shown and checked;
- readings that are not ``actual`` (flagged or stored unused): they are why
  something was not billed;

and a meter is left alone entirely while any of these holds:

- it has not been rated past the horizon (``rated_at``);
- a slot or held interval before the horizon has no price yet (energy that
  may still be billed, or released from a hold);
- its unit has a dispute that is not closed (the evidence timeline reads the
  readings).

Off by default (``READING_RETENTION_DAYS`` = 0 keeps everything). While it is
on, intake refuses readings taken before the horizon
(``meters.readings.readings_oldest``), so a reading deleted here can never
come back as a late one and re-derive a step that was billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from disputes.models import Dispute

from .models import Interval, Meter, Reading


@dataclass(frozen=True)
class Pruned:
    meters: int = 0
    deleted: int = 0
    skipped_meters: int = 0


def retention_horizon(*, now: datetime) -> datetime | None:
    """Readings taken before this may be thinned; ``None`` when retention is off."""
    days = int(settings.SUBMETER.get("READING_RETENTION_DAYS", 0))
    if days <= 0:
        return None
    return now - timedelta(days=days)


def _eligible(horizon: datetime):
    """Meters rated past the horizon, with every slot before it priced and no open dispute."""
    # A held gap with no energy in it has nothing left to price.
    unpriced = (
        Interval.objects.filter(meter=OuterRef("pk"), start__lt=horizon, gross_sub__isnull=True)
        .filter(Q(kind=Interval.Kind.SLOT) | Q(quality=Interval.Quality.HELD))
        .exclude(energy_wh=0)
    )
    disputed = Dispute.objects.unresolved().filter(unit_id=OuterRef("unit_id"))
    old = Reading.objects.filter(meter=OuterRef("pk"), taken_at__lt=horizon)
    return (
        Meter.objects.filter(rated_at__gte=horizon)
        .filter(Exists(old))
        .exclude(Exists(unpriced))
        .exclude(Exists(disputed))
    )


def readings_prune(*, now: datetime | None = None) -> Pruned:
    """Thin the readings taken before the retention horizon (see the module)."""
    now = now or timezone.now()
    horizon = retention_horizon(now=now)
    if horizon is None:
        return Pruned()
    with_old = Meter.objects.filter(
        Exists(Reading.objects.filter(meter=OuterRef("pk"), taken_at__lt=horizon))
    ).count()
    meter_ids = list(_eligible(horizon).order_by("pk").values_list("pk", flat=True))
    deleted = 0
    for meter_id in meter_ids:
        with transaction.atomic():
            old = Reading.objects.filter(meter_id=meter_id, taken_at__lt=horizon)
            day_ends = list(
                old.annotate(day=TruncDate("taken_at", tzinfo=UTC))
                .values("day")
                .annotate(last_at=Max("taken_at"))
                .values_list("last_at", flat=True)
                .order_by()
            )
            gone, _ = (
                old.filter(quality=Reading.Quality.ACTUAL).exclude(taken_at__in=day_ends).delete()
            )
            deleted += gone
    return Pruned(meters=len(meter_ids), deleted=deleted, skipped_meters=with_old - len(meter_ids))
