from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms

from .services import topup_limits

PRESETS_MINOR = (500, 1000, 2000)


class TopUpForm(forms.Form):
    amount = forms.CharField(
        label="Amount",
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    )

    def __init__(self, *args: Any, currency: str = "GBP", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.presets = PRESETS_MINOR

    def clean_amount(self) -> int:
        raw = self.cleaned_data["amount"].strip().replace(",", "").lstrip("£$€")
        try:
            value = Decimal(raw)
        except InvalidOperation as exc:
            raise forms.ValidationError("Enter an amount such as 10 or 12.50.") from exc
        if not value.is_finite() or value != value.quantize(Decimal("0.01")):
            raise forms.ValidationError("Use at most two decimal places.")
        minor = int(value * 100)
        low, high = topup_limits()
        if minor < low or minor > high:
            raise forms.ValidationError(
                f"Choose an amount between {low / 100:.2f} and {high / 100:.2f}."
            )
        return minor
