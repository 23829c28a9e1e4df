"""Input checks for the set-up pages: what a browser sends becomes the services' values.

Money a tenant sees (emergency credit, the low-credit threshold) is typed as an
amount (``3.00``); energy prices and standing charges are typed in minor units,
as they are quoted on bills: pence per kWh and pence per day for GBP, cents for
EUR and USD (``landlord.setup.PRICE_UNIT``).
"""

from __future__ import annotations

import zoneinfo
from datetime import date, time
from decimal import Decimal
from typing import Any

from django import forms

from payments.models import Tariff

from .models import Property, Unit
from .setup import (
    CURRENCIES,
    DAY_UNIT,
    MAX_IMPORT_ROWS,
    PRICE_UNIT,
    PropertyFields,
    SetupError,
    UnitFields,
    VersionFields,
    parse_money,
)

WEEKDAY_CHOICES = [
    ("1", "Mon"),
    ("2", "Tue"),
    ("3", "Wed"),
    ("4", "Thu"),
    ("5", "Fri"),
    ("6", "Sat"),
    ("7", "Sun"),
]
CURRENCY_CHOICES = [(c, c) for c in CURRENCIES]


class MoneyField(forms.CharField):
    """An amount of money such as 3 or 2.50, cleaned to integer minor units."""

    def clean(self, value: Any) -> int:
        text = super().clean(value)
        try:
            return parse_money(text or "0", label=str(self.label or "amount"))
        except SetupError as exc:
            raise forms.ValidationError(str(exc).split(": ", 1)[-1]) from exc


def _minor_text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


class PropertyForm(forms.Form):
    name = forms.CharField(max_length=200)
    address = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    timezone = forms.CharField(
        label="Time zone",
        max_length=64,
        initial="Europe/London",
        help_text="A zone like Europe/London or America/New_York (default Europe/London). "
        "Disconnection windows and tariff hours are in this local time.",
    )
    currency = forms.ChoiceField(
        choices=CURRENCY_CHOICES,
        initial="GBP",
        help_text="Default GBP. Cannot change once the property has units.",
    )
    cutoff_days = forms.MultipleChoiceField(
        label="Days automatic disconnection may happen",
        choices=WEEKDAY_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        initial=["1", "2", "3", "4", "5"],
        help_text="Default Monday to Friday: never at weekends.",
    )
    cutoff_start = forms.TimeField(
        label="Window opens",
        initial=time(9, 0),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="Local time; default 09:00.",
    )
    cutoff_end = forms.TimeField(
        label="Window closes",
        initial=time(15, 0),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="Local time; default 15:00 (someone can still sort it out the same day). "
        "The same time as the opening means all day.",
    )
    cutoff_holidays = forms.CharField(
        label="Holidays (no disconnection)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "2026-12-25"}),
        help_text="One date per line, like 2026-12-25. Default none.",
    )
    cutoff_notice_minutes = forms.IntegerField(
        label="Notice before disconnection (minutes)",
        min_value=0,
        max_value=60 * 24 * 60,
        initial=24 * 60,
        help_text="Default 1440 (a day): the tenant is told this long before the earliest "
        "automatic cut-off.",
    )
    landlord_may_disconnect = forms.BooleanField(
        label="Automatic disconnection allowed",
        required=False,
        initial=True,
        help_text="Default on. Turn off where the law forbids landlords to disconnect a supply: "
        "prepaid units then stay on at zero credit.",
    )

    def clean_timezone(self) -> str:
        zone = self.cleaned_data["timezone"].strip()
        if zone not in zoneinfo.available_timezones():
            raise forms.ValidationError(f"{zone!r} is not a time zone; use one like Europe/London.")
        return zone

    def clean_cutoff_holidays(self) -> list[str]:
        days = []
        for line in self.cleaned_data["cutoff_holidays"].replace(",", "\n").splitlines():
            text = line.strip().strip('"[]')
            if not text:
                continue
            try:
                days.append(date.fromisoformat(text).isoformat())
            except ValueError:
                raise forms.ValidationError(f"{text!r} is not a date like 2026-12-25.") from None
        return sorted(set(days))

    @classmethod
    def initial_from(cls, prop: Property) -> dict[str, Any]:
        return {
            "name": prop.name,
            "address": prop.address,
            "timezone": prop.timezone,
            "currency": prop.currency,
            "cutoff_days": list(prop.cutoff_days),
            "cutoff_start": prop.cutoff_start,
            "cutoff_end": prop.cutoff_end,
            "cutoff_holidays": "\n".join(prop.cutoff_holidays),
            "cutoff_notice_minutes": prop.cutoff_notice_minutes,
            "landlord_may_disconnect": prop.landlord_may_disconnect,
        }

    def values(self) -> PropertyFields:
        data = self.cleaned_data
        return PropertyFields(
            name=data["name"].strip(),
            address=data["address"],
            timezone=data["timezone"],
            currency=data["currency"],
            cutoff_days="".join(sorted(data["cutoff_days"])),
            cutoff_start=data["cutoff_start"],
            cutoff_end=data["cutoff_end"],
            cutoff_holidays=data["cutoff_holidays"],
            cutoff_notice_minutes=data["cutoff_notice_minutes"],
            landlord_may_disconnect=data["landlord_may_disconnect"],
        )


class UnitForm(forms.Form):
    property = forms.ModelChoiceField(queryset=Property.objects.none(), empty_label=None)
    name = forms.CharField(max_length=100, help_text="Unique within the property, e.g. Flat 3.")
    billing_mode = forms.ChoiceField(
        label="Billing",
        choices=Unit.BillingMode.choices,
        initial=Unit.BillingMode.PREPAID,
        widget=forms.RadioSelect,
        help_text="Prepaid: the tenant tops up first; the supply is cut when the credit runs "
        "out (within the property's protections). Postpaid: use first, a bill each month.",
    )
    tariff = forms.ModelChoiceField(
        queryset=Tariff.objects.none(),
        required=False,
        empty_label="No tariff yet (energy is held, not billed)",
    )
    emergency_credit = MoneyField(
        label="Emergency credit",
        initial="0.00",
        help_text="Prepaid: credit a tenant may take once when low. Default 0.00: not offered.",
    )
    low_credit_threshold = MoneyField(
        label="Low-credit warning below",
        initial="5.00",
        help_text="Prepaid: the tenant is warned when their credit falls below this. Default 5.00.",
    )

    def __init__(self, *args: Any, landlord_id: int, unit: Unit | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        props = self.fields["property"]
        tariff = self.fields["tariff"]
        assert isinstance(props, forms.ModelChoiceField)
        assert isinstance(tariff, forms.ModelChoiceField)
        props.queryset = Property.objects.filter(landlord_id=landlord_id).order_by("name")
        tariff.queryset = Tariff.objects.filter(landlord_id=landlord_id).order_by("name")
        if unit is not None:
            del self.fields["property"]

    @classmethod
    def initial_from(cls, unit: Unit) -> dict[str, Any]:
        return {
            "name": unit.name,
            "billing_mode": unit.billing_mode,
            "tariff": unit.tariff_id,
            "emergency_credit": _minor_text(unit.emergency_credit_minor),
            "low_credit_threshold": _minor_text(unit.low_credit_threshold_minor),
        }

    def values(self) -> UnitFields:
        data = self.cleaned_data
        return UnitFields(
            name=data["name"],
            billing_mode=data["billing_mode"],
            tariff=data["tariff"],
            emergency_credit_minor=data["emergency_credit"],
            low_credit_threshold_minor=data["low_credit_threshold"],
        )


class UnitImportForm(forms.Form):
    property = forms.ModelChoiceField(queryset=Property.objects.none(), empty_label=None)
    csv_file = forms.FileField(label="CSV file", required=False)
    csv_text = forms.CharField(
        label="…or paste the rows",
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 6, "placeholder": "name,billing_mode,tariff\nFlat 1,prepaid,Standard"}
        ),
    )

    def __init__(self, *args: Any, landlord_id: int, **kwargs: Any):
        super().__init__(*args, **kwargs)
        props = self.fields["property"]
        assert isinstance(props, forms.ModelChoiceField)
        props.queryset = Property.objects.filter(landlord_id=landlord_id).order_by("name")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("csv_file")
        if upload:
            if upload.size > MAX_IMPORT_ROWS * 400:
                raise forms.ValidationError("The file is too large.")
            try:
                data["csv_text"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                raise forms.ValidationError("Save the file as CSV in UTF-8.") from None
        if not (data.get("csv_text") or "").strip():
            raise forms.ValidationError("Choose a CSV file or paste its rows.")
        return data


class TariffVersionForm(forms.Form):
    """One version's prices. Every price is in minor units per kWh (``price_unit``)."""

    FLAT, TIERED, TOU = "flat", "tiered", "tou"
    kind = forms.ChoiceField(
        label="Kind",
        choices=[
            (FLAT, "Flat: one price"),
            (TIERED, "Tiered: a higher (or lower) price after a monthly allowance"),
            (TOU, "Time of use: a different price in some hours"),
        ],
        initial=FLAT,
        widget=forms.RadioSelect,
    )
    valid_from = forms.DateField(
        label="In force from",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="From local midnight of this day.",
    )
    price = forms.DecimalField(
        label="Energy price",
        required=False,
        min_value=Decimal(0),
        max_digits=12,
        decimal_places=4,
        help_text="Any time (time of use: outside the band's hours).",
    )
    tier_from_kwh = forms.IntegerField(
        label="Tiered: from (kWh per month)",
        required=False,
        min_value=1,
        help_text="Once this much was used in the calendar month…",
    )
    tier_price = forms.DecimalField(
        label="Tiered: price from then on",
        required=False,
        min_value=Decimal(0),
        max_digits=12,
        decimal_places=4,
    )
    band = forms.CharField(
        label="Time of use: band name",
        required=False,
        max_length=30,
        initial="night",
    )
    band_price = forms.DecimalField(
        label="Time of use: price in the band",
        required=False,
        min_value=Decimal(0),
        max_digits=12,
        decimal_places=4,
    )
    band_days = forms.ChoiceField(
        label="Time of use: days",
        choices=[("all", "Every day"), ("weekdays", "Monday to Friday"), ("weekends", "Weekends")],
        initial="all",
    )
    band_start_hour = forms.IntegerField(
        label="Time of use: from hour", required=False, min_value=0, max_value=23, initial=0
    )
    band_end_hour = forms.IntegerField(
        label="Time of use: until hour",
        required=False,
        min_value=1,
        max_value=24,
        initial=7,
        help_text="Local hours, e.g. 0 to 7 for midnight to 7 am.",
    )
    standing_charge = forms.DecimalField(
        label="Daily standing charge",
        min_value=Decimal(0),
        max_digits=12,
        decimal_places=4,
        initial=Decimal(0),
        help_text="Charged per day whatever is used; default 0.",
    )
    tax_percent = forms.DecimalField(
        label="Tax (VAT) %",
        min_value=Decimal(0),
        max_value=Decimal(100),
        decimal_places=2,
        initial=Decimal(0),
    )
    tax_included = forms.ChoiceField(
        label="Prices above",
        choices=[("included", "include the tax"), ("added", "exclude the tax: it is added")],
        initial="included",
        widget=forms.RadioSelect,
    )

    def __init__(self, *args: Any, currency: str = "GBP", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.price_unit = PRICE_UNIT[currency]
        for name in ("price", "tier_price", "band_price"):
            self.fields[name].label = f"{self.fields[name].label} ({self.price_unit})"
        self.fields["standing_charge"].label = f"Daily standing charge ({DAY_UNIT[currency]})"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == self.TIERED:
            for name in ("price", "tier_from_kwh", "tier_price"):
                if data.get(name) is None:
                    self.add_error(name, "Needed for a tiered tariff.")
        elif kind == self.TOU:
            for name in ("band", "band_price", "band_start_hour", "band_end_hour"):
                if data.get(name) in (None, ""):
                    self.add_error(name, "Needed for a time-of-use tariff.")
            start, end = data.get("band_start_hour"), data.get("band_end_hour")
            if start is not None and end is not None and end <= start:
                self.add_error("band_end_hour", "End after the start (at most 24).")
        elif data.get("price") is None:
            self.add_error("price", "Give the price.")
        return data

    def values(self) -> VersionFields:
        data = self.cleaned_data
        kind = data["kind"]
        rates: list[tuple[str, int, Decimal]] = []
        windows: tuple[tuple[str, str, int, int], ...] = ()
        if data.get("price") is not None:
            rates.append(("", 0, data["price"]))
        if kind == self.TIERED:
            rates.append(("", data["tier_from_kwh"] * 1000, data["tier_price"]))
        if kind == self.TOU:
            band = data["band"].strip()
            rates.append((band, 0, data["band_price"]))
            windows = ((band, data["band_days"], data["band_start_hour"], data["band_end_hour"]),)
        return VersionFields(
            valid_from=data["valid_from"],
            rates=tuple(rates),
            windows=windows,
            standing_charge_per_day_minor=data["standing_charge"],
            tax_percent=data["tax_percent"],
            tax_inclusive=data["tax_included"] == "included",
        )


class TariffForm(TariffVersionForm):
    name = forms.CharField(max_length=100, help_text="E.g. Prepaid standard.")
    currency = forms.ChoiceField(
        choices=CURRENCY_CHOICES,
        initial="GBP",
        help_text="Prices below are in its minor unit: pence for GBP, cents for EUR and USD.",
    )

    field_order = ["name", "currency"]

    def __init__(self, *args: Any, **kwargs: Any):
        data = args[0] if args else kwargs.get("data")
        chosen = (data or {}).get("currency") if data is not None else None
        kwargs["currency"] = chosen if chosen in CURRENCIES else "GBP"
        super().__init__(*args, **kwargs)
