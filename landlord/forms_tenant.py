"""Forms of the tenant's settings page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from payments.forms import amount_minor

# A tenant may ask to be warned earlier than the unit's threshold, up to this.
THRESHOLD_MAX_MINOR = 100_00


class NotificationsForm(forms.Form):
    low_credit_threshold = forms.CharField(
        required=False,
        label="Warn me when my credit falls below",
        help_text="Leave empty for your landlord's setting. A higher amount warns you earlier.",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "e.g. 10"}),
    )
    email_low_credit = forms.BooleanField(required=False, label="Email me when credit is low")
    email_supply_restored = forms.BooleanField(
        required=False, label="Email me when my supply is back on"
    )
    quiet_start = forms.TimeField(
        required=False, label="Quiet hours from", widget=forms.TimeInput(attrs={"type": "time"})
    )
    quiet_end = forms.TimeField(
        required=False, label="until", widget=forms.TimeInput(attrs={"type": "time"})
    )

    def clean_low_credit_threshold(self) -> int | None:
        raw = self.cleaned_data["low_credit_threshold"]
        if not raw.strip():
            return None
        minor = amount_minor(raw)
        if minor < 0 or minor > THRESHOLD_MAX_MINOR:
            raise forms.ValidationError(
                f"Choose an amount between 0 and {THRESHOLD_MAX_MINOR // 100}."
            )
        return minor

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (data.get("quiet_start") is None) != (data.get("quiet_end") is None):
            raise forms.ValidationError("Give both ends of your quiet hours, or neither.")
        return data


class EmailForm(forms.Form):
    email = forms.EmailField(label="New email address")
    password = forms.CharField(
        label="Your password",
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password

    def clean_email(self) -> str:
        email = get_user_model().objects.normalize_email(self.cleaned_data["email"])
        taken = get_user_model().objects.filter(email__iexact=email).exclude(pk=self.user.pk)
        if taken.exists():
            raise forms.ValidationError("Another account uses that address.")
        return email


class PlanRequestForm(forms.Form):
    weekly = forms.CharField(
        required=False,
        label="What I could pay each week (optional)",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "placeholder": "e.g. 10"}),
    )
    message = forms.CharField(
        label="Message to your landlord",
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 4}),
    )

    def clean_weekly(self) -> int | None:
        raw = self.cleaned_data["weekly"]
        if not raw.strip():
            return None
        minor = amount_minor(raw)
        if minor <= 0:
            raise forms.ValidationError("Enter an amount above zero, or leave it empty.")
        return minor
