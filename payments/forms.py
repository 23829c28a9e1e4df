from __future__ import annotations

from typing import Any

from django import forms

from config.formats import AmountError, parse_amount

from .refunds import refund_request
from .services import PaymentError, topup_limits

PRESETS_MINOR = (500, 1000, 2000)


def amount_minor(raw: str) -> int:
    """A typed amount (``12.50``, ``£1,000``) in minor units, or a form error."""
    try:
        return parse_amount(raw)
    except AmountError as exc:
        if exc.places or not exc.finite:
            raise forms.ValidationError("Use at most two decimal places.") from None
        raise forms.ValidationError("Enter an amount such as 10 or 12.50.") from None


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
        minor = amount_minor(self.cleaned_data["amount"])
        low, high = topup_limits()
        if minor < low or minor > high:
            raise forms.ValidationError(
                f"Choose an amount between {low / 100:.2f} and {high / 100:.2f}."
            )
        return minor


class RefundForm(forms.Form):
    amount = forms.CharField(label="Amount to refund", max_length=20)
    reason = forms.CharField(label="Reason", max_length=300)

    def __init__(self, *args: Any, available_minor: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.available_minor = available_minor
        if not self.is_bound:
            self.initial["amount"] = f"{available_minor / 100:.2f}"

    def clean_amount(self) -> int:
        minor = amount_minor(self.cleaned_data["amount"])
        if minor <= 0 or minor > self.available_minor:
            raise forms.ValidationError(
                f"Refund between 0.01 and {self.available_minor / 100:.2f}."
            )
        return minor

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason for the refund.")
        return reason

    def submit(self, *, payment: Any, actor_id: int | None) -> bool:
        """Request the refund this form describes; False, with the reason on the
        form, when the input is invalid or the refund is refused."""
        if not self.is_valid():
            return False
        try:
            refund_request(
                payment=payment,
                amount_minor=self.cleaned_data["amount"],
                reason=self.cleaned_data["reason"],
                created_by_id=actor_id,
            )
        except PaymentError as exc:
            self.add_error(None, str(exc))
            return False
        return True


class AutomaticPaymentsForm(forms.Form):
    auto_topup_enabled = forms.BooleanField(label="Top up automatically", required=False)
    threshold = forms.CharField(label="When my credit falls below", max_length=20)
    amount = forms.CharField(label="Top up by", max_length=20)
    monthly_cap = forms.CharField(label="At most this much a month", max_length=20)
    autopay_enabled = forms.BooleanField(label="Pay my bills automatically", required=False)

    def __init__(self, *args: Any, currency: str = "GBP", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency

    @classmethod
    def from_settings(cls, cfg: Any, *, currency: str) -> AutomaticPaymentsForm:
        return cls(
            initial={
                "auto_topup_enabled": cfg.auto_topup_enabled,
                "threshold": f"{cfg.auto_topup_threshold_minor / 100:.2f}",
                "amount": f"{cfg.auto_topup_amount_minor / 100:.2f}",
                "monthly_cap": f"{cfg.auto_topup_monthly_cap_minor / 100:.2f}",
                "autopay_enabled": cfg.autopay_enabled,
            },
            currency=currency,
        )

    @property
    def wants_automatic(self) -> bool:
        data = getattr(self, "cleaned_data", {})
        return bool(data.get("auto_topup_enabled") or data.get("autopay_enabled"))

    def clean_threshold(self) -> int:
        minor = amount_minor(self.cleaned_data["threshold"])
        if minor < 0 or minor > 100_000:
            raise forms.ValidationError("Choose a threshold between 0 and 1000.00.")
        return minor

    def clean_amount(self) -> int:
        minor = amount_minor(self.cleaned_data["amount"])
        low, high = topup_limits()
        if minor < low or minor > high:
            raise forms.ValidationError(
                f"Choose an amount between {low / 100:.2f} and {high / 100:.2f}."
            )
        return minor

    def clean_monthly_cap(self) -> int:
        minor = amount_minor(self.cleaned_data["monthly_cap"])
        if minor < 0 or minor > 1_000_000:
            raise forms.ValidationError("Choose a monthly cap between 0 and 10000.00.")
        return minor

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (
            data.get("auto_topup_enabled")
            and "amount" in data
            and "monthly_cap" in data
            and data["amount"] > data["monthly_cap"]
        ):
            self.add_error("monthly_cap", "The monthly cap must allow at least one top-up.")
        return {
            "auto_topup_enabled": bool(data.get("auto_topup_enabled")),
            "threshold_minor": data.get("threshold"),
            "amount_minor": data.get("amount"),
            "monthly_cap_minor": data.get("monthly_cap"),
            "autopay_enabled": bool(data.get("autopay_enabled")),
        }
