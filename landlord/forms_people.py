"""Forms of the device, tenant and billing-mode pages (landlord/views_people.py).

Register readings are entered in kWh, as meters show them, and passed on in
whole Wh.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone

from meters.models import MeterEvent, Protocol

from .models import Unit


def kwh_field(label: str, **kwargs: Any) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        min_value=Decimal(0),
        max_digits=14,
        decimal_places=3,
        widget=forms.NumberInput(attrs={"step": "0.001", "inputmode": "decimal"}),
        **kwargs,
    )


def to_wh(kwh: Decimal) -> int:
    return int(kwh * 1000)


class DeviceRegisterForm(forms.Form):
    protocol = forms.ChoiceField(
        label="Kind of device",
        choices=[
            (Protocol.NATIVE, "Submeter device (native protocol)"),
            (Protocol.SHELLY, "Shelly Gen2+ relay with energy meter"),
        ],
        initial=Protocol.NATIVE,
        widget=forms.RadioSelect,
    )
    ident = forms.CharField(
        label="Device id",
        max_length=64,
        help_text="Native: the id on the device's label. Shelly: its device id, e.g. "
        "shellyplus1pm-a8032ab12345 (Settings → Device information).",
    )
    serial = forms.CharField(
        label="Meter serial (optional)",
        max_length=64,
        required=False,
        help_text="For your records.",
    )


class MeterEventForm(forms.Form):
    kind = forms.ChoiceField(
        label="What happened",
        choices=[
            (MeterEvent.Kind.REPLACEMENT, "The meter was replaced by a new one"),
            (MeterEvent.Kind.RESET, "The meter's register was reset (same meter)"),
        ],
        widget=forms.RadioSelect,
        initial=MeterEvent.Kind.REPLACEMENT,
    )
    at = forms.DateTimeField(
        label="When (local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )
    old_last = kwh_field("Old register's last value (kWh)")
    new_first = kwh_field("New register's first value (kWh)")
    new_serial = forms.CharField(
        label="New meter's serial (replacement)", max_length=64, required=False
    )
    reason = forms.CharField(label="Reason (kept in the audit log)", max_length=300)

    def __init__(self, *args: Any, tz: zoneinfo.ZoneInfo, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz = tz
        if not self.is_bound:
            self.initial.setdefault("at", timezone.localtime(timezone.now(), tz))

    def clean_at(self) -> datetime:
        value: datetime = self.cleaned_data["at"]
        # The landlord means the property's local time, whatever the server's zone.
        at = timezone.make_aware(value.replace(tzinfo=None), self.tz)
        if at > timezone.now():
            raise forms.ValidationError("This time is in the future.")
        return at


class MeterMoveForm(forms.Form):
    to_unit = forms.TypedChoiceField(label="Move to", coerce=int, choices=[])
    at = forms.DateTimeField(
        label="When (local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )
    register = kwh_field(
        "Meter register at the move (kWh)",
        help_text="Energy up to here is billed at the unit the meter leaves; the new unit "
        "is billed from here.",
    )
    reason = forms.CharField(label="Reason (kept in the audit log)", max_length=300)

    def __init__(
        self, *args: Any, tz: zoneinfo.ZoneInfo, units: list[tuple[int, str]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.tz = tz
        to_unit = self.fields["to_unit"]
        assert isinstance(to_unit, forms.TypedChoiceField)
        to_unit.choices = [("", "Choose a unit"), *units]
        if not self.is_bound:
            self.initial.setdefault("at", timezone.localtime(timezone.now(), tz))

    def clean_at(self) -> datetime:
        value: datetime = self.cleaned_data["at"]
        at = timezone.make_aware(value.replace(tzinfo=None), self.tz)
        if at > timezone.now():
            raise forms.ValidationError("This time is in the future.")
        return at


class InviteForm(forms.Form):
    email = forms.EmailField(label="Tenant's email")
    move_in = forms.DateField(
        label="Move-in date",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        initial=timezone.localdate,
    )


def deposit_field(*, required: bool) -> forms.DecimalField:
    return forms.DecimalField(
        label="Deposit to ask for" if required else "Deposit to ask for (optional)",
        required=required,
        min_value=Decimal("0.01"),
        max_value=Decimal("100000"),
        max_digits=8,
        decimal_places=2,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        help_text="The tenant pays it online; it is held apart from their balance and "
        "settled at move-out.",
    )


def to_minor(amount: Decimal | None) -> int | None:
    return None if amount is None else int(amount * 100)


class MoveInForm(forms.Form):
    opening = kwh_field("Meter register at move-in (kWh)")
    deposit = deposit_field(required=False)


class DepositForm(forms.Form):
    deposit = deposit_field(required=True)


class MoveOutForm(forms.Form):
    end_date = forms.DateField(
        label="Last day of the tenancy",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        initial=timezone.localdate,
    )
    closing = kwh_field("Meter register at move-out (kWh)")


class ModeSwitchForm(forms.Form):
    mode = forms.ChoiceField(choices=Unit.BillingMode.choices, widget=forms.HiddenInput)
    confirm = forms.BooleanField(required=False)


class ModeScheduleForm(forms.Form):
    mode = forms.ChoiceField(choices=Unit.BillingMode.choices, widget=forms.HiddenInput)
    at = forms.DateTimeField(
        label="When (the property's local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )
    confirm = forms.BooleanField(required=False)

    def __init__(self, *args: Any, tz: zoneinfo.ZoneInfo, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tz = tz

    def clean_at(self) -> datetime:
        value: datetime = self.cleaned_data["at"]
        # The landlord means the property's local time, whatever the server's zone.
        return timezone.make_aware(value.replace(tzinfo=None), self.tz)


class InviteAcceptForm(forms.Form):
    password1 = forms.CharField(
        label="Choose a password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="The same password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data
