"""A unit's protections and its scheduled cut-off, read-only (for evaluation
and for screens)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from landlord.models import Tenancy, Unit
from meters.models import (
    CutoffNotice,
)

from .protections import (
    Protections,
    next_window_start,
)

logger = logging.getLogger(__name__)


def protections_for(*, unit: Unit, tenancy: Tenancy | None, hooks: bool = True) -> Protections:
    """Read a unit's protections from its property and tenancy (and the freeze hooks).

    ``hooks=False``: without the freeze hooks (a query each), for a screen that
    shows nothing they decide."""
    prop = unit.property
    holidays = set()
    for item in prop.cutoff_holidays or []:
        try:
            holidays.add(date.fromisoformat(str(item)))
        except ValueError:
            logger.warning("property %s: ignoring bad holiday %r", prop.pk, item)
    freeze = ""
    if tenancy is not None and hooks:
        for path in settings.SUBMETER.get("DISCONNECTION_FREEZE_HOOKS", []):
            freeze = import_string(path)(tenancy=tenancy) or ""
            if freeze:
                break
    return Protections(
        tz=prop.timezone,
        days=prop.cutoff_days,
        start=prop.cutoff_start,
        end=prop.cutoff_end,
        holidays=frozenset(holidays),
        notice=timedelta(minutes=prop.cutoff_notice_minutes),
        landlord_may_disconnect=prop.landlord_may_disconnect,
        vulnerable=bool(tenancy and tenancy.vulnerable),
        freeze_reason=freeze,
    )


def cutoff_expected_at(
    *, notice: CutoffNotice, protections: Protections, now: datetime
) -> datetime | None:
    """When the scheduled cut-off will happen if nothing changes (for screens)."""
    if notice.earliest_at is None or protections.blocking_reason():
        return None
    return next_window_start(protections, max(notice.earliest_at, now))


def cutoff_amount_to_cancel(balance_minor: int) -> int:
    """What a tenant must add to cancel a scheduled cut-off: above zero, at least a top-up."""
    return max(-balance_minor + 1, settings.SUBMETER["TOPUP_MIN_MINOR"])


@dataclass(frozen=True)
class ScheduledCutoff:
    """A scheduled cut-off as it stands: off ``at`` unless ``amount_minor`` is added.

    Pages say it in the property's time zone and currency
    (the tenant home and the landlord unit page).
    """

    at: datetime
    amount_minor: int
    tz: str
    currency: str


def cutoff_schedule(*, tenancy: Tenancy, balance_minor: int | None) -> ScheduledCutoff | None:
    """The open cut-off notice of a tenancy, as it stands now (read-only)."""
    notice = (
        CutoffNotice.objects.filter(tenancy=tenancy, status=CutoffNotice.Status.SCHEDULED)
        .select_related("unit__property")
        .first()
    )
    if notice is None:
        return None
    return cutoff_from_notice(
        notice=notice,
        balance_minor=balance_minor,
        protections=protections_for(unit=notice.unit, tenancy=tenancy),
        currency=notice.unit.property.currency,
    )


def cutoff_from_notice(
    *,
    notice: CutoffNotice | None,
    balance_minor: int | None,
    protections: Protections,
    currency: str,
) -> ScheduledCutoff | None:
    """``cutoff_schedule`` from a notice and protections the caller already read
    (the tenant's page reads them with the tenancy)."""
    if notice is None or notice.status != CutoffNotice.Status.SCHEDULED:
        return None
    if notice.cut_at is not None or balance_minor is None:
        return None
    at = cutoff_expected_at(notice=notice, protections=protections, now=timezone.now())
    if at is None:
        return None
    return ScheduledCutoff(
        at=at,
        amount_minor=cutoff_amount_to_cancel(balance_minor),
        tz=protections.tz,
        currency=currency,
    )
