"""The set-up services (landlord.setup): properties, units, CSV imports, tariffs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.http import Http404

from landlord import access, setup
from landlord.access import Action
from landlord.models import AuditEvent, Property, Tenancy, Unit
from landlord.selectors import landlord_unit_views
from landlord.setup import PropertyFields, SetupError, UnitFields, VersionFields
from landlord.setup_selectors import tariff_version_impact
from meters.models import Interval, Meter
from payments.models import Tariff, TariffVersion
from payments.rating import SCALE
from tests.factories import make_staff_member

pytestmark = pytest.mark.django_db

TOMORROW = date.today() + timedelta(days=2)  # after 'today' in any zone


def _flat(price: str = "30", valid_from: date = TOMORROW, **kw) -> VersionFields:
    return VersionFields(valid_from=valid_from, rates=(("", 0, Decimal(price)),), **kw)


# --- properties -----------------------------------------------------------------


def test_property_create_is_audited_with_its_actor(personas):
    world = personas.a
    prop = setup.property_create(
        landlord=world.landlord,
        actor_id=world.staff.pk,
        values=PropertyFields(name="Annex", timezone="Europe/Paris", currency="EUR"),
    )
    assert (prop.timezone, prop.currency, prop.cutoff_days) == ("Europe/Paris", "EUR", "12345")
    event = AuditEvent.objects.get(action="property.create")
    assert event.actor_id == world.staff.pk and event.subject == f"property {prop.pk} Annex"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        (PropertyFields(name="X", timezone="Mars/Olympus"), "timezone"),
        (PropertyFields(name="X", timezone="europe/london"), "timezone"),
        (PropertyFields(name=" "), "name"),
        (PropertyFields(name="X", currency="XBT"), "currency"),
        (PropertyFields(name="X", cutoff_days="118"), "cutoff_days"),
        (PropertyFields(name="X", cutoff_holidays=["25/12/2026"]), "cutoff_holidays"),
    ],
)
def test_property_create_refuses_bad_input(personas, values, field):
    with pytest.raises(SetupError) as exc:
        setup.property_create(landlord=personas.a.landlord, actor_id=None, values=values)
    assert exc.value.field == field
    assert Property.objects.filter(landlord=personas.a.landlord).count() == 1


def _fields_of(prop: Property, **changes) -> PropertyFields:
    values = PropertyFields(
        **{name: getattr(prop, name) for name in PropertyFields.__dataclass_fields__}
    )
    return replace(values, **changes)


def test_changing_protections_re_evaluates_the_units_supply(personas):
    world = personas.a
    with mock.patch("landlord.setup.supply_evaluate") as evaluate:
        setup.property_update(
            prop=world.prop,
            actor_id=world.staff.pk,
            values=_fields_of(world.prop, cutoff_notice_minutes=90, cutoff_start=time(8, 0)),
        )
    assert sorted(call.kwargs["unit"].pk for call in evaluate.call_args_list) == sorted(
        [world.prepaid.pk, world.postpaid.pk]
    )
    world.prop.refresh_from_db()
    assert world.prop.cutoff_notice_minutes == 90
    event = AuditEvent.objects.get(action="property.update")
    assert event.data["cutoff_notice_minutes"] == [0, 90] and event.actor_id == world.staff.pk


def test_renaming_a_property_does_not_touch_supplies(personas):
    with mock.patch("landlord.setup.supply_evaluate") as evaluate:
        setup.property_update(
            prop=personas.a.prop, actor_id=None, values=_fields_of(personas.a.prop, name="New")
        )
    assert evaluate.call_count == 0


def test_currency_cannot_change_under_units(personas):
    with pytest.raises(SetupError, match="currency cannot change"):
        setup.property_update(
            prop=personas.a.prop, actor_id=None, values=_fields_of(personas.a.prop, currency="EUR")
        )


# --- units ------------------------------------------------------------------------


def test_unit_create_and_duplicate_name(personas):
    world = personas.a
    unit = setup.unit_create(
        prop=world.prop,
        actor_id=world.staff.pk,
        values=UnitFields(name="Flat 9", tariff=world.tariff, emergency_credit_minor=300),
    )
    assert (unit.landlord_id, unit.tariff_id, unit.emergency_credit_minor) == (
        world.landlord.pk,
        world.tariff.pk,
        300,
    )
    assert AuditEvent.objects.filter(action="unit.create", actor_id=world.staff.pk).count() == 1
    with pytest.raises(SetupError, match="already has a unit named 'Flat 9'") as exc:
        setup.unit_create(prop=world.prop, actor_id=None, values=UnitFields(name=" Flat 9 "))
    assert exc.value.field == "name"


def test_unit_refuses_another_landlords_tariff(personas):
    with pytest.raises(SetupError, match="one of your tariffs"):
        setup.unit_create(
            prop=personas.a.prop,
            actor_id=None,
            values=UnitFields(name="Flat 9", tariff=personas.b.tariff),
        )


def test_billing_mode_changes_only_while_vacant(personas):
    world = personas.a
    occupied = UnitFields(
        name=world.prepaid.name,
        billing_mode=Unit.BillingMode.POSTPAID,
        tariff=world.tariff,
        low_credit_threshold_minor=200,
    )
    with pytest.raises(SetupError, match="only while it is vacant"):
        setup.unit_update(unit=world.prepaid, actor_id=None, values=occupied)
    vacant = setup.unit_create(prop=world.prop, actor_id=None, values=UnitFields(name="Empty"))
    setup.unit_update(
        unit=vacant,
        actor_id=world.staff.pk,
        values=UnitFields(name="Empty", billing_mode=Unit.BillingMode.POSTPAID),
    )
    vacant.refresh_from_db()
    assert vacant.billing_mode == Unit.BillingMode.POSTPAID
    event = AuditEvent.objects.get(action="unit.update")
    assert event.data == {"billing_mode": ["prepaid", "postpaid"]}


def test_archive_refuses_an_occupied_unit_and_hides_a_vacant_one(personas):
    world = personas.a
    with pytest.raises(SetupError, match="has a tenant"):
        setup.unit_archive(unit=world.prepaid, actor_id=None)
    vacant = setup.unit_create(prop=world.prop, actor_id=None, values=UnitFields(name="Empty"))
    upcoming = Tenancy.objects.create(
        landlord=world.landlord,
        unit=vacant,
        tenant=world.postpaid_tenant,
        start_date=date.today() + timedelta(days=10),
    )
    with pytest.raises(SetupError, match="moving in"):
        setup.unit_archive(unit=vacant, actor_id=None)
    upcoming.delete()
    setup.unit_archive(unit=vacant, actor_id=world.staff.pk)
    vacant.refresh_from_db()
    assert vacant.archived_at is not None
    assert vacant.pk not in [
        row.unit.pk for row in landlord_unit_views(landlord_id=vacant.landlord_id)
    ]
    assert AuditEvent.objects.filter(action="unit.archive", actor_id=world.staff.pk).exists()


# --- units from CSV -------------------------------------------------------------------


def test_csv_preview_reports_each_bad_row_and_saves_nothing(personas):
    world = personas.a
    text = (
        "name,billing_mode,tariff,emergency_credit,low_credit_threshold\n"
        "Flat 10,prepaid,Flat,3.00,2.50\n"
        "Flat 11,weekly,,,\n"
        "Flat 10,postpaid,,,\n"
        "Prepaid flat,,,,\n"
        "Flat 12,,Gold,,\n"
        "Flat 13,,,3.001,\n"
        ",postpaid,,,\n"
        "\n"
        "Flat 14,postpaid,flat,,\n"
    )
    rows = setup.units_import_preview(prop=world.prop, csv_text=text)
    errors = {row.line: row.error for row in rows}
    assert errors[2] == ""
    assert "prepaid or postpaid" in errors[3]
    assert "appears twice" in errors[4]
    assert "already has a unit named 'Prepaid flat'" in errors[5]
    assert "No tariff named 'Gold'" in errors[6]
    assert "two decimal places" in errors[7]
    assert "name is empty" in errors[8]
    assert errors[10] == ""  # tariff names match whatever their case
    assert rows[0].values is not None and rows[0].values.emergency_credit_minor == 300
    assert rows[0].values.low_credit_threshold_minor == 250
    with pytest.raises(SetupError, match=r"Line 3: .* Nothing was saved"):
        setup.units_import(prop=world.prop, actor_id=None, csv_text=text)
    assert Unit.objects.filter(landlord=world.landlord).count() == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("unit,mode\nFlat 1,prepaid\n", "at least 'name'"),
        ("name,colour\nFlat 1,red\n", "Unknown column 'colour'"),
        ("name\n\n", "no units"),
        ("", "at least 'name'"),
    ],
)
def test_csv_refuses_a_bad_file(personas, text, message):
    with pytest.raises(SetupError, match=message):
        setup.units_import_preview(prop=personas.a.prop, csv_text=text)


def test_csv_import_creates_every_row(personas):
    world = personas.a
    units = setup.units_import(
        prop=world.prop,
        actor_id=world.staff.pk,
        csv_text="\ufeffName,Billing_Mode\nFlat 20,postpaid\nFlat 21,\n",
    )
    assert [(u.name, u.billing_mode) for u in units] == [
        ("Flat 20", "postpaid"),
        ("Flat 21", "prepaid"),
    ]
    assert AuditEvent.objects.filter(action="unit.create").count() == 2


# --- tariffs ----------------------------------------------------------------------------


def test_tariff_create_flat_tiered_and_time_of_use(personas):
    world = personas.a
    today = setup.landlord_today(landlord_id=world.landlord.pk)
    flat = setup.tariff_create(
        landlord=world.landlord,
        actor_id=world.staff.pk,
        name="Standard",
        currency="GBP",
        values=_flat("28.5", valid_from=today, standing_charge_per_day_minor=Decimal("45")),
    )
    version = flat.versions.get()
    assert version.valid_from == today and version.standing_charge_per_day_minor == Decimal("45")
    tiered = setup.tariff_create(
        landlord=world.landlord,
        actor_id=None,
        name="Block",
        currency="GBP",
        values=VersionFields(
            valid_from=today,
            rates=(("", 0, Decimal("20")), ("", 100_000, Decimal("31.25"))),
            tax_percent=Decimal("5"),
            tax_inclusive=False,
        ),
    )
    assert [r.tier_from_wh for r in tiered.versions.get().rates.all()] == [0, 100_000]
    tou = setup.tariff_create(
        landlord=world.landlord,
        actor_id=None,
        name="Day and night",
        currency="GBP",
        values=VersionFields(
            valid_from=today,
            rates=(("", 0, Decimal("32")), ("night", 0, Decimal("14"))),
            windows=(("night", "all", 0, 7),),
        ),
    )
    assert tou.versions.get().windows.get().end_hour == 7
    assert AuditEvent.objects.filter(action="tariff.create").count() == 3


def test_tariff_refuses_unpriced_hours_and_past_start(personas):
    world = personas.a
    today = setup.landlord_today(landlord_id=world.landlord.pk)
    night_only = VersionFields(
        valid_from=today,
        rates=(("night", 0, Decimal("14")),),
        windows=(("night", "all", 0, 7),),
    )
    with pytest.raises(SetupError, match="has no price for any time"):
        setup.tariff_create(
            landlord=world.landlord, actor_id=None, name="Nights", currency="GBP", values=night_only
        )
    with pytest.raises(SetupError, match="cannot start in the past") as exc:
        setup.tariff_create(
            landlord=world.landlord,
            actor_id=None,
            name="Old",
            currency="GBP",
            values=_flat(valid_from=today - timedelta(days=1)),
        )
    assert exc.value.field == "valid_from"
    with pytest.raises(SetupError, match="already have a tariff named 'Flat'"):
        setup.tariff_create(
            landlord=world.landlord, actor_id=None, name="Flat", currency="GBP", values=_flat()
        )
    assert Tariff.objects.filter(landlord=world.landlord).count() == 1


def test_version_schedule_future_only(personas):
    world = personas.a
    today = setup.landlord_today(landlord_id=world.landlord.pk)
    for day in (today, today - timedelta(days=3)):
        with pytest.raises(SetupError, match="tomorrow or later"):
            setup.tariff_version_schedule(
                tariff=world.tariff, actor_id=None, values=_flat(valid_from=day)
            )
    with pytest.raises(SetupError, match="has no price for any time"):
        setup.tariff_version_schedule(
            tariff=world.tariff,
            actor_id=None,
            values=VersionFields(
                valid_from=TOMORROW,
                rates=(("peak", 0, Decimal("40")),),
                windows=(("peak", "weekdays", 16, 19),),
            ),
        )
    with pytest.raises(SetupError, match="more than 4 decimals"):
        setup.tariff_version_schedule(tariff=world.tariff, actor_id=None, values=_flat("28.12345"))
    version = setup.tariff_version_schedule(
        tariff=world.tariff, actor_id=world.staff.pk, values=_flat("33")
    )
    assert version.valid_from == TOMORROW
    assert TariffVersion.objects.filter(tariff=world.tariff).count() == 2
    event = AuditEvent.objects.get(action="tariff.version_schedule")
    assert event.actor_id == world.staff.pk and event.data["rates"] == [["", 0, "33"]]
    with pytest.raises(SetupError, match="already starts on that day"):
        setup.tariff_version_schedule(tariff=world.tariff, actor_id=None, values=_flat("34"))


# --- authorisation -----------------------------------------------------------------------


def test_access_helpers_hide_other_landlords_objects_and_refuse_staff(personas):
    a, b = personas.a, personas.b
    staff = make_staff_member(a)
    with pytest.raises(Http404):
        access.access_property(user=b.staff, property_id=a.prop.pk, action=Action.SETUP)
    with pytest.raises(Http404):
        access.access_tariff(user=b.staff, tariff_id=a.tariff.pk, action=Action.SETUP)
    with pytest.raises(PermissionDenied):
        access.access_property(user=staff, property_id=a.prop.pk, action=Action.SETUP)
    with pytest.raises(PermissionDenied):
        access.access_tariff(user=staff, tariff_id=a.tariff.pk, action=Action.SETUP)
    with pytest.raises(PermissionDenied):
        access.landlord_for_user(user=staff, action=Action.SETUP)
    assert (
        access.access_property(user=a.staff, property_id=a.prop.pk, action=Action.SETUP) == a.prop
    )


# --- the impact of new prices --------------------------------------------------------------

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def _priced(meter: Meter, start: datetime, wh: int, pence: int) -> None:
    Interval.objects.create(
        landlord_id=meter.landlord_id,
        meter=meter,
        start=start,
        end=start + timedelta(minutes=30),
        energy_wh=wh,
        net_sub=pence * SCALE,
        gross_sub=pence * SCALE,
        tariff_version_id=1,
    )


def test_impact_of_new_prices_checked_by_hand(personas):
    world = personas.a
    meter = Meter.objects.get(unit=world.prepaid)
    # given the prepaid unit's half hours at the old flat 30p/kWh (the postpaid unit used nothing)
    _priced(meter, datetime(2026, 3, 10, 9, 0, tzinfo=UTC), 1000, 30)  # before the window
    _priced(meter, datetime(2026, 3, 15, 9, 0, tzinfo=UTC), 1000, 30)
    _priced(meter, datetime(2026, 3, 15, 10, 0, tzinfo=UTC), 2000, 60)
    Interval.objects.create(  # held energy is never priced, on either side
        landlord_id=meter.landlord_id,
        meter=meter,
        start=datetime(2026, 3, 15, 11, 0, tzinfo=UTC),
        end=datetime(2026, 3, 15, 11, 30, tzinfo=UTC),
        energy_wh=500,
        quality=Interval.Quality.HELD,
    )
    # when a flat 40p with 5% tax added is previewed over the last day
    flat = tariff_version_impact(
        tariff=world.tariff,
        values=_flat("40", tax_percent=Decimal("5"), tax_inclusive=False),
        days=1,
        now=NOW,
    )
    # then 3 kWh cost 90p and would cost 3 x 40p x 1.05 = 126p
    rows = {row.unit.pk: row for row in flat.units}
    assert (rows[world.prepaid.pk].old_minor, rows[world.prepaid.pk].new_minor) == (90, 126)
    assert rows[world.prepaid.pk].energy_wh == 3000
    assert (rows[world.postpaid.pk].old_minor, rows[world.postpaid.pk].new_minor) == (0, 0)
    assert (flat.old_minor, flat.new_minor, flat.change_minor) == (90, 126, 36)
    # a tier from 1.5 kWh a month: 1 kWh was used earlier in March, so the first
    # half hour has 0.5 kWh at 20p and 0.5 kWh at 50p (35p), the second 2 kWh at 50p
    tiered = tariff_version_impact(
        tariff=world.tariff,
        values=VersionFields(
            valid_from=TOMORROW, rates=(("", 0, Decimal("20")), ("", 1500, Decimal("50")))
        ),
        days=1,
        now=NOW,
    )
    assert (tiered.old_minor, tiered.new_minor) == (90, 135)
    # and the preview wrote nothing
    assert TariffVersion.objects.filter(tariff=world.tariff).count() == 1


def test_impact_names_a_version_that_cannot_price_every_hour(personas):
    impact = tariff_version_impact(
        tariff=personas.a.tariff,
        values=VersionFields(
            valid_from=TOMORROW,
            rates=(("night", 0, Decimal("10")),),
            windows=(("night", "all", 0, 7),),
        ),
        now=NOW,
    )
    assert "no price for any time" in impact.problem and impact.units == []


@pytest.fixture(autouse=True)
def _pending_matches_intervals():
    """Intervals made by hand are priced but not posted: the ledger check at the end
    of each test wants them counted as pending on their meter."""
    yield
    for meter in Meter.objects.all():
        total = meter.intervals.aggregate(total=Sum("gross_sub"))["total"] or 0
        Meter.objects.filter(pk=meter.pk).update(pending_sub=total)
