"""A landlord sets up their business: properties, units and tariffs.

Each action is one keyword-only service, atomic and audit-logged with its
actor. The pages (``landlord.views_setup``) parse and authorise; every rule
about what may be set up lives here, so the pages, the demo and tests share it.
A refused request raises :class:`SetupError` with a message for the person
(and, where it belongs to one, the form field it concerns).
"""

from __future__ import annotations

import csv
import io
import zoneinfo
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.formats import AmountError, parse_amount
from payments import rating
from payments.errors import BillingError
from payments.models import Tariff, TariffVersion
from payments.tariffs import tariff_version_create
from supply.decision import supply_evaluate

from .audit import audit_record
from .models import Landlord, Property, Tenancy, Unit, validate_days, validate_holidays

CURRENCIES = ("GBP", "EUR", "USD")
# The unit prices are entered in: minor units per kWh, as energy prices are quoted.
PRICE_UNIT = {"GBP": "p/kWh", "EUR": "c/kWh", "USD": "¢/kWh"}
DAY_UNIT = {"GBP": "p/day", "EUR": "c/day", "USD": "¢/day"}
MAX_IMPORT_ROWS = 500
UNIT_CSV_COLUMNS = ("name", "billing_mode", "tariff", "emergency_credit", "low_credit_threshold")


class SetupError(Exception):
    """A set-up request that cannot be done; the message is for the person who asked."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


def _plain(value: object) -> object:
    if isinstance(value, time | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Tariff):
        return value.pk
    return value


# --- properties -----------------------------------------------------------------


@dataclass(frozen=True)
class PropertyFields:
    name: str
    address: str = ""
    timezone: str = "Europe/London"
    currency: str = "GBP"
    cutoff_days: str = "12345"
    cutoff_start: time = time(9, 0)
    cutoff_end: time = time(15, 0)
    cutoff_holidays: list[str] = field(default_factory=list)
    cutoff_notice_minutes: int = 24 * 60
    landlord_may_disconnect: bool = True


PROTECTIONS = (
    "cutoff_days",
    "cutoff_start",
    "cutoff_end",
    "cutoff_holidays",
    "cutoff_notice_minutes",
    "landlord_may_disconnect",
)


def _check_property(values: PropertyFields) -> None:
    if not values.name.strip():
        raise SetupError("Give the property a name.", field="name")
    if values.timezone not in zoneinfo.available_timezones():
        raise SetupError(
            f"{values.timezone!r} is not a time zone; use one like Europe/London.",
            field="timezone",
        )
    if values.currency not in CURRENCIES:
        raise SetupError(f"Choose one of {', '.join(CURRENCIES)}.", field="currency")
    for name, check in (("cutoff_days", validate_days), ("cutoff_holidays", validate_holidays)):
        try:
            check(getattr(values, name))
        except ValidationError as exc:
            raise SetupError(" ".join(exc.messages), field=name) from exc
    if values.cutoff_notice_minutes < 0:
        raise SetupError("Notice cannot be negative.", field="cutoff_notice_minutes")


@transaction.atomic
def property_create(
    *, landlord: Landlord, actor_id: int | None, values: PropertyFields
) -> Property:
    _check_property(values)
    prop = Property.objects.create(
        landlord=landlord, **{f.name: getattr(values, f.name) for f in fields(values)}
    )
    audit_record(
        landlord_id=landlord.pk,
        actor_id=actor_id,
        action="property.create",
        subject=f"property {prop.pk} {prop.name}",
        data={f.name: _plain(getattr(values, f.name)) for f in fields(values)},
    )
    return prop


@transaction.atomic
def property_update(*, prop: Property, actor_id: int | None, values: PropertyFields) -> Property:
    """Change a property; when its protections change, its units' supply is
    re-evaluated at once (as after any change to protections)."""
    _check_property(values)
    prop = Property.objects.select_for_update().get(pk=prop.pk)
    if values.currency != prop.currency and prop.units.exists():
        raise SetupError(
            "The currency cannot change once the property has units: their balances and "
            "tariffs are in it.",
            field="currency",
        )
    changed = {
        f.name: [_plain(getattr(prop, f.name)), _plain(getattr(values, f.name))]
        for f in fields(values)
        if getattr(prop, f.name) != getattr(values, f.name)
    }
    for name in changed:
        setattr(prop, name, getattr(values, name))
    if changed:
        prop.save(update_fields=list(changed))
        audit_record(
            landlord_id=prop.landlord_id,
            actor_id=actor_id,
            action="property.update",
            subject=f"property {prop.pk} {prop.name}",
            data=changed,
        )
    if set(changed) & set(PROTECTIONS) or "timezone" in changed:
        for unit in prop.units.filter(archived_at__isnull=True).order_by("pk"):
            supply_evaluate(unit=unit, reason="protections changed")
    return prop


# --- units --------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitFields:
    name: str
    billing_mode: str = Unit.BillingMode.PREPAID
    tariff: Tariff | None = None
    emergency_credit_minor: int = 0
    low_credit_threshold_minor: int = 500


def _check_unit(*, prop: Property, values: UnitFields, unit: Unit | None = None) -> None:
    name = values.name.strip()
    if not name:
        raise SetupError("Give the unit a name.", field="name")
    if len(name) > 100:
        raise SetupError("Use at most 100 characters.", field="name")
    if values.billing_mode not in Unit.BillingMode.values:
        raise SetupError("Choose prepaid or postpaid.", field="billing_mode")
    taken = Unit.objects.filter(property=prop, name=name)
    if unit is not None:
        taken = taken.exclude(pk=unit.pk)
    if taken.exists():
        raise SetupError(f"{prop.name} already has a unit named {name!r}.", field="name")
    if values.tariff is not None and values.tariff.landlord_id != prop.landlord_id:
        raise SetupError("Choose one of your tariffs.", field="tariff")
    if values.tariff is not None and values.tariff.currency != prop.currency:
        raise SetupError(
            f"The tariff is in {values.tariff.currency}; {prop.name} bills in {prop.currency}.",
            field="tariff",
        )
    for name_, amount in (
        ("emergency_credit_minor", values.emergency_credit_minor),
        ("low_credit_threshold_minor", values.low_credit_threshold_minor),
    ):
        if amount < 0:
            raise SetupError("The amount cannot be negative.", field=name_)


def _unit_data(values: UnitFields) -> dict[str, Any]:
    return {f.name: _plain(getattr(values, f.name)) for f in fields(values)}


def _unit_create(*, prop: Property, actor_id: int | None, values: UnitFields) -> Unit:
    _check_unit(prop=prop, values=values)
    unit = Unit.objects.create(
        landlord_id=prop.landlord_id,
        property=prop,
        name=values.name.strip(),
        billing_mode=values.billing_mode,
        tariff=values.tariff,
        emergency_credit_minor=values.emergency_credit_minor,
        low_credit_threshold_minor=values.low_credit_threshold_minor,
    )
    audit_record(
        landlord_id=prop.landlord_id,
        actor_id=actor_id,
        action="unit.create",
        unit=unit,
        data=_unit_data(values),
    )
    return unit


@transaction.atomic
def unit_create(*, prop: Property, actor_id: int | None, values: UnitFields) -> Unit:
    return _unit_create(prop=prop, actor_id=actor_id, values=values)


def _has_active_tenancy(unit: Unit) -> bool:
    return Tenancy.objects.active().filter(unit_id=unit.pk).exists()


@transaction.atomic
def unit_update(*, unit: Unit, actor_id: int | None, values: UnitFields) -> Unit:
    """Change a unit. Its billing mode changes only while nobody lives there:
    switching an occupied unit needs a final bill and is a cut-over of its own."""
    unit = Unit.objects.select_for_update().select_related("property").get(pk=unit.pk)
    if unit.archived_at is not None:
        raise SetupError("The unit is archived.")
    _check_unit(prop=unit.property, values=values, unit=unit)
    if values.billing_mode != unit.billing_mode and _has_active_tenancy(unit):
        raise SetupError(
            "The unit has a tenant: prepaid or postpaid can change only while it is vacant.",
            field="billing_mode",
        )
    before = {
        "name": unit.name,
        "billing_mode": unit.billing_mode,
        "tariff": unit.tariff_id,
        "emergency_credit_minor": unit.emergency_credit_minor,
        "low_credit_threshold_minor": unit.low_credit_threshold_minor,
    }
    after = _unit_data(values) | {"name": values.name.strip()}
    changed = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
    if not changed:
        return unit
    unit.name = values.name.strip()
    unit.billing_mode = values.billing_mode
    unit.tariff = values.tariff
    unit.emergency_credit_minor = values.emergency_credit_minor
    unit.low_credit_threshold_minor = values.low_credit_threshold_minor
    unit.save(
        update_fields=[
            "name",
            "billing_mode",
            "tariff",
            "emergency_credit_minor",
            "low_credit_threshold_minor",
        ]
    )
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="unit.update",
        unit=unit,
        data=changed,
    )
    if {"billing_mode", "tariff", "low_credit_threshold_minor"} & set(changed):
        supply_evaluate(unit=unit, reason="unit settings changed")
    return unit


@transaction.atomic
def unit_archive(*, unit: Unit, actor_id: int | None) -> Unit:
    """Hide a unit that is no longer let; its history stays. Never one with a tenant."""
    unit = Unit.objects.select_for_update().get(pk=unit.pk)
    if unit.archived_at is not None:
        return unit
    today = timezone.localdate()
    if unit.tenancies.filter(Q(end_date__isnull=True) | Q(end_date__gte=today)).exists():
        raise SetupError(
            "The unit has a tenant (or one moving in): end the tenancy before archiving the unit."
        )
    unit.archived_at = timezone.now()
    unit.save(update_fields=["archived_at"])
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="unit.archive",
        unit=unit,
        data={},
    )
    return unit


# --- many units from a CSV file ----------------------------------------------------------


@dataclass
class ImportRow:
    line: int
    raw: dict[str, str]
    values: UnitFields | None
    error: str = ""


def parse_money(raw: str, *, label: str) -> int:
    """A typed amount of money (``3``, ``2.50``) in minor units."""
    try:
        minor = parse_amount(raw.strip() or "0", bound=10**9)
    except AmountError as exc:
        if exc.places:
            raise SetupError(f"{label}: use at most two decimal places.") from None
        raise SetupError(f"{label}: {raw!r} is not an amount like 2.50.") from None
    if minor < 0:
        raise SetupError(f"{label}: {raw!r} is not an amount like 2.50.")
    return minor


def _import_row(
    *, prop: Property, tariffs: dict[str, Tariff], raw: dict[str, str], seen: set[str]
) -> UnitFields:
    name = (raw.get("name") or "").strip()
    if not name:
        raise SetupError("The name is empty.")
    if name.casefold() in seen:
        raise SetupError(f"{name!r} appears twice in the file.")
    seen.add(name.casefold())
    mode = (raw.get("billing_mode") or "prepaid").strip().lower()
    tariff_name = (raw.get("tariff") or "").strip()
    tariff = tariffs.get(tariff_name.casefold()) if tariff_name else None
    if tariff_name and tariff is None:
        raise SetupError(f"No tariff named {tariff_name!r}.")
    values = UnitFields(
        name=name,
        billing_mode=mode,
        tariff=tariff,
        emergency_credit_minor=parse_money(
            raw.get("emergency_credit") or "0", label="emergency credit"
        ),
        low_credit_threshold_minor=parse_money(
            raw.get("low_credit_threshold") or "5", label="low-credit threshold"
        ),
    )
    _check_unit(prop=prop, values=values)
    return values


def units_import_preview(*, prop: Property, csv_text: str) -> list[ImportRow]:
    """Each row of a CSV file of units, parsed and checked; nothing is written.

    Columns: name (required), billing_mode (prepaid or postpaid; prepaid when
    blank), tariff (a tariff's name; none when blank), emergency_credit and
    low_credit_threshold (amounts of money such as 3.00; 0 and 5.00 when blank).
    """
    reader = csv.DictReader(io.StringIO(csv_text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "name" not in header:
        raise SetupError(
            "The first line must name the columns, at least 'name' "
            f"(known columns: {', '.join(UNIT_CSV_COLUMNS)})."
        )
    unknown = [h for h in header if h and h not in UNIT_CSV_COLUMNS]
    if unknown:
        raise SetupError(f"Unknown column {unknown[0]!r}; known: {', '.join(UNIT_CSV_COLUMNS)}.")
    reader.fieldnames = header
    tariffs = {t.name.casefold(): t for t in Tariff.objects.filter(landlord_id=prop.landlord_id)}
    rows: list[ImportRow] = []
    seen: set[str] = set()
    for raw in reader:
        clean = {k: (v or "") for k, v in raw.items() if k}
        if not any(value.strip() for value in clean.values()):
            continue
        if len(rows) >= MAX_IMPORT_ROWS:
            raise SetupError(f"At most {MAX_IMPORT_ROWS} units at a time.")
        try:
            values = _import_row(prop=prop, tariffs=tariffs, raw=clean, seen=seen)
            rows.append(ImportRow(line=reader.line_num, raw=clean, values=values))
        except SetupError as exc:
            rows.append(ImportRow(line=reader.line_num, raw=clean, values=None, error=str(exc)))
    if not rows:
        raise SetupError("The file has no units.")
    return rows


@transaction.atomic
def units_import(*, prop: Property, actor_id: int | None, csv_text: str) -> list[Unit]:
    """Create every unit of a CSV file, or none: the file is checked again as it is
    saved, and any row with an error refuses the whole file."""
    rows = units_import_preview(prop=prop, csv_text=csv_text)
    bad = [row for row in rows if row.error]
    if bad:
        raise SetupError(f"Line {bad[0].line}: {bad[0].error} Nothing was saved.")
    return [
        _unit_create(prop=prop, actor_id=actor_id, values=row.values)
        for row in rows
        if row.values is not None
    ]


# --- tariffs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionFields:
    """One tariff version as entered: prices in minor units per kWh (pence for GBP)."""

    valid_from: date
    rates: tuple[tuple[str, int, Decimal], ...]
    windows: tuple[tuple[str, str, int, int], ...] = ()
    standing_charge_per_day_minor: Decimal = Decimal(0)
    tax_percent: Decimal = Decimal(0)
    tax_inclusive: bool = True

    def as_rating(self, *, version_id: int = 0) -> rating.Version:
        return rating.Version(
            id=version_id,
            valid_from=self.valid_from,
            rates=tuple(
                rating.Rate(band=b, tier_from_wh=t, price_per_kwh_minor=p) for b, t, p in self.rates
            ),
            windows=tuple(
                rating.Window(band=b, days=d, start_hour=s, end_hour=e)
                for b, d, s, e in self.windows
            ),
            standing_per_day_minor=self.standing_charge_per_day_minor,
            tax_percent=self.tax_percent,
            tax_inclusive=self.tax_inclusive,
        )


def landlord_today(*, landlord_id: int) -> date:
    """The latest local date among the landlord's properties: 'today' everywhere they let."""
    zones = set(Property.objects.filter(landlord_id=landlord_id).values_list("timezone", flat=True))
    now = timezone.now()
    return max(
        (now.astimezone(zoneinfo.ZoneInfo(zone)).date() for zone in zones),
        default=timezone.localdate(),
    )


def _version_data(values: VersionFields) -> dict[str, Any]:
    return {
        "valid_from": values.valid_from.isoformat(),
        "rates": [[b, t, str(p)] for b, t, p in values.rates],
        "windows": [list(w) for w in values.windows],
        "standing_charge_per_day_minor": str(values.standing_charge_per_day_minor),
        "tax_percent": str(values.tax_percent),
        "tax_inclusive": values.tax_inclusive,
    }


def version_problem(values: VersionFields) -> str:
    """Why the version could not be stored or could not price every hour of a week
    (empty when it can). Prices and standing charges are stored with 4 decimals."""
    version = values.as_rating()
    amounts = [r.price_per_kwh_minor for r in version.rates] + [version.standing_per_day_minor]
    for amount in amounts:
        if not amount.is_finite() or amount < 0 or amount >= 10**8:
            return f"{amount} is not a price"
        if amount != amount.quantize(Decimal("0.0001")):
            return f"price {amount} has more than 4 decimals"
    try:
        for rate in version.rates:
            rating.price_sub_per_wh(rate.price_per_kwh_minor)
        rating.tax_bp(version.tax_percent)
        rating.to_sub(version.standing_per_day_minor)
        monday = datetime(2024, 1, 1)
        for hour in range(7 * 24):
            version.rates_for(version.band_at(monday + timedelta(hours=hour)))
    except rating.Unpriceable as exc:
        return str(exc)
    return ""


def _version_create(*, tariff: Tariff, values: VersionFields) -> TariffVersion:
    if not values.rates:
        raise SetupError("Give at least one price.")
    problem = version_problem(values)
    if problem:
        raise SetupError(_sentence(problem))
    try:
        return tariff_version_create(
            tariff=tariff,
            valid_from=values.valid_from,
            rates=list(values.rates),
            windows=values.windows,
            standing_charge_per_day_minor=values.standing_charge_per_day_minor,
            tax_percent=values.tax_percent,
            tax_inclusive=values.tax_inclusive,
        )
    except (BillingError, rating.Unpriceable) as exc:
        raise SetupError(_sentence(str(exc))) from exc


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


@transaction.atomic
def tariff_create(
    *, landlord: Landlord, actor_id: int | None, name: str, currency: str, values: VersionFields
) -> Tariff:
    """A new tariff with its first version (from ``values.valid_from``, today at the earliest)."""
    name = name.strip()
    if not name:
        raise SetupError("Give the tariff a name.", field="name")
    if currency not in CURRENCIES:
        raise SetupError(f"Choose one of {', '.join(CURRENCIES)}.", field="currency")
    if Tariff.objects.filter(landlord=landlord, name=name).exists():
        raise SetupError(f"You already have a tariff named {name!r}.", field="name")
    if values.valid_from < landlord_today(landlord_id=landlord.pk):
        raise SetupError("A new tariff cannot start in the past.", field="valid_from")
    tariff = Tariff.objects.create(landlord=landlord, name=name, currency=currency)
    _version_create(tariff=tariff, values=values)
    audit_record(
        landlord_id=landlord.pk,
        actor_id=actor_id,
        action="tariff.create",
        subject=f"tariff {tariff.pk} {tariff.name}",
        data={"currency": currency, **_version_data(values)},
    )
    return tariff


@transaction.atomic
def tariff_version_schedule(
    *, tariff: Tariff, actor_id: int | None, values: VersionFields
) -> TariffVersion:
    """A new version of a tariff from a future day; what was used before keeps its prices."""
    if values.valid_from <= landlord_today(landlord_id=tariff.landlord_id):
        raise SetupError(
            "A new version must start tomorrow or later: prices already in force are not "
            "changed after the fact.",
            field="valid_from",
        )
    if TariffVersion.objects.filter(tariff=tariff, valid_from=values.valid_from).exists():
        raise SetupError("A version already starts on that day.", field="valid_from")
    version = _version_create(tariff=tariff, values=values)
    audit_record(
        landlord_id=tariff.landlord_id,
        actor_id=actor_id,
        action="tariff.version_schedule",
        subject=f"tariff {tariff.pk} {tariff.name}",
        data=_version_data(values),
    )
    return version
