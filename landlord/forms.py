"""Input checks for the landlord's pages: what a browser sends is parsed here, not in a service."""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.utils import timezone

# Intervals before this cannot exist (the product is newer); beyond a year
# ahead nothing is recorded either. The bounds also keep day arithmetic
# (the day after, the local midnight in UTC) far from date.max and date.min.
FIRST_DAY = date(2000, 1, 1)
DAYS_AHEAD = 366


class ReasonForm(forms.Form):
    """A free-text reason kept in the audit log (forms reject NUL bytes, which
    PostgreSQL cannot store)."""

    reason = forms.CharField(max_length=300, required=False)


class IntervalDayForm(forms.Form):
    day = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    def clean_day(self) -> date | None:
        day: date | None = self.cleaned_data.get("day")
        last = timezone.localdate() + timedelta(days=DAYS_AHEAD)
        if day is not None and not FIRST_DAY <= day <= last:
            raise forms.ValidationError(
                f"Pick a day between {FIRST_DAY:%d %b %Y} and {last:%d %b %Y}."
            )
        return day


class PlanAnswerForm(forms.Form):
    """A landlord's answer to a payment-plan request: accept with the plan's terms,
    or decline saying why; either way the tenant reads the note."""

    decision = forms.ChoiceField(
        choices=[("accept", "Accept"), ("decline", "Decline")],
        error_messages={
            "required": "Choose to accept or to decline.",
            "invalid_choice": "Choose to accept or to decline.",
        },
    )
    note = forms.CharField(
        max_length=1000,
        error_messages={
            "required": "Write the plan's terms, or why you decline: the tenant reads it.",
            "max_length": "Keep the note under 1000 characters.",
        },
    )
