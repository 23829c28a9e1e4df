"""Read-only views for setting up: the onboarding checklist and a tariff change's impact.

Nothing here writes. The impact preview re-prices the last days' real intervals
with the pure rating engine (``payments.rating``), as if the new version had
applied to them, beside what they were charged.
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from meters.models import Interval
from payments import rating
from payments.models import Tariff
from payments.providers import get_provider

from .models import Landlord, Property, Unit
from .selectors import UnitView
from .setup import VersionFields, version_problem


@dataclass
class Step:
    title: str
    done: bool
    missing: str
    url: str


@dataclass
class Checklist:
    steps: list[Step]

    @property
    def done(self) -> bool:
        return all(step.done for step in self.steps)

    @property
    def next_step(self) -> Step | None:
        return next((step for step in self.steps if not step.done), None)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def onboarding_checklist(*, landlord: Landlord, rows: list[UnitView]) -> Checklist:
    """What a landlord still has to set up, from the units page's own rows (their
    tariffs, meters and tenants are already loaded), so it costs few queries."""
    units = [row.unit for row in rows]
    has_property = bool(units) or Property.objects.filter(landlord=landlord).exists()
    no_tariff = [u for u in units if u.tariff_id is None]
    no_meter = [u for u in units if not any(m.removed_at is None for m in u.meters.all())]
    tenants = sum(1 for row in rows if row.tenancy is not None)
    provider = get_provider()
    payments_ready = provider is not None and provider.payee_status(landlord=landlord).ready
    setup_url = reverse("landlord:setup")
    return Checklist(
        steps=[
            Step(
                "Add a property",
                has_property,
                "No property yet: its address, time zone, currency and protections.",
                reverse("landlord:property_new"),
            ),
            Step(
                "Add its units",
                bool(units),
                "No units yet: add them one by one or from a CSV file.",
                reverse("landlord:unit_new"),
            ),
            Step(
                "Choose a tariff for each unit",
                bool(units) and not no_tariff,
                f"{_plural(len(no_tariff), 'unit')} without a tariff: their energy is not billed."
                if no_tariff
                else "Create a tariff, then choose it on each unit.",
                reverse("landlord:tariff_new") if not no_tariff else setup_url,
            ),
            Step(
                "Register a meter in each unit",
                bool(units) and not no_meter,
                f"{_plural(len(no_meter), 'unit')} without a meter: "
                + ", ".join(u.name for u in no_meter[:5])
                + ("…" if len(no_meter) > 5 else "")
                if no_meter
                else "Add units first.",
                reverse("landlord:people:devices", args=[no_meter[0].pk])
                if no_meter
                else setup_url,
            ),
            Step(
                "Set up the payment account",
                payments_ready,
                "Tenants cannot pay until the payment account (Stripe) is set up.",
                reverse("payments:connect"),
            ),
            Step(
                "Invite tenants",
                tenants > 0,
                "No tenants yet."
                if units
                else "Add units first, then invite a tenant to each let unit.",
                reverse("landlord:people:tenants", args=[units[0].pk]) if units else setup_url,
            ),
        ]
    )


# --- a tariff change's impact -------------------------------------------------------------


@dataclass
class UnitImpact:
    unit: Unit
    energy_wh: int
    old_minor: int
    new_minor: int
    unpriced: str = ""

    @property
    def change_minor(self) -> int:
        return self.new_minor - self.old_minor


@dataclass
class Impact:
    days: int
    since: datetime
    currency: str
    units: list[UnitImpact] = field(default_factory=list)
    problem: str = ""

    @property
    def old_minor(self) -> int:
        return sum(u.old_minor for u in self.units)

    @property
    def new_minor(self) -> int:
        return sum(u.new_minor for u in self.units)

    @property
    def change_minor(self) -> int:
        return self.new_minor - self.old_minor

    @property
    def energy_wh(self) -> int:
        return sum(u.energy_wh for u in self.units)


def tariff_version_impact(
    *, tariff: Tariff, values: VersionFields, days: int = 30, now: datetime | None = None
) -> Impact:
    """The landlord's units on ``tariff``: their priced half hours of the last ``days``
    days, re-priced with ``values`` as if it had been in force, beside what they cost.

    Tier positions carry on from the energy each meter used earlier in the month,
    as in real rating. Held energy (never priced) is left out of both sides.
    """
    now = now or timezone.now()
    since = now - timedelta(days=days)
    impact = Impact(days=days, since=since, currency=tariff.currency)
    impact.problem = version_problem(values)
    if impact.problem:
        return impact
    new = dataclasses.replace(values.as_rating(), valid_from=date(1970, 1, 1))
    units = list(
        Unit.objects.filter(tariff=tariff, landlord_id=tariff.landlord_id, archived_at__isnull=True)
        .select_related("property")
        .order_by("property__name", "name")
    )
    rows = (
        Interval.objects.filter(
            landlord_id=tariff.landlord_id,
            meter__unit__in=units,
            kind=Interval.Kind.SLOT,
            gross_sub__isnull=False,
            start__gte=since,
            start__lt=now,
        )
        .order_by("meter_id", "start")
        .values_list("meter_id", "meter__unit_id", "start", "energy_wh", "gross_sub")
    )
    by_meter: dict[tuple[int, int], list[tuple[datetime, int, int]]] = defaultdict(list)
    for meter_id, unit_id, start, energy_wh, gross_sub in rows:
        by_meter[(unit_id, meter_id)].append((start, energy_wh, gross_sub or 0))
    per_unit = {u.pk: UnitImpact(unit=u, energy_wh=0, old_minor=0, new_minor=0) for u in units}
    subs: dict[int, list[int]] = {u.pk: [0, 0] for u in units}
    for (unit_id, meter_id), slots in by_meter.items():
        unit = per_unit[unit_id].unit
        schedule = rating.Schedule(
            versions=(new,),
            tz=zoneinfo.ZoneInfo(unit.property.timezone),
            currency=unit.property.currency,
            tariff_currency=tariff.currency,
            tariff_name=tariff.name,
        )
        first = slots[0][0]
        before = (
            Interval.objects.filter(
                meter_id=meter_id,
                kind=Interval.Kind.SLOT,
                start__gte=schedule.period_start(first),
                start__lt=first,
            ).aggregate(wh=Sum("energy_wh"))["wh"]
            or 0
        )
        rated = rating.rate_energy(
            schedule=schedule, pieces=[(s, wh) for s, wh, _ in slots], period_wh_before=before
        )
        for slot in rated:
            if slot.price is None:
                per_unit[unit_id].unpriced = slot.held_reason
            else:
                subs[unit_id][1] += slot.price.gross_sub
        subs[unit_id][0] += sum(gross for _, _, gross in slots)
        per_unit[unit_id].energy_wh += sum(wh for _, wh, _ in slots)
    for unit_id, (old_sub, new_sub) in subs.items():
        per_unit[unit_id].old_minor = rating.round_half_up(old_sub)
        per_unit[unit_id].new_minor = rating.round_half_up(new_sub)
    impact.units = list(per_unit.values())
    return impact
