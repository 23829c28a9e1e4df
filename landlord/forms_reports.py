"""Input checks for the landlord's list pages and CSV exports: a date range, a kind."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from .forms import DAYS_AHEAD, FIRST_DAY

EXPORT_KINDS = {
    "units": "Units (with energy and charges in the range)",
    "payments": "Payments",
    "bills": "Bills",
    "postings": "Ledger postings",
}


class DateRangeForm(forms.Form):
    """``from`` and ``to``: local days, both included. Optional on list pages;
    ``required`` for an export."""

    def __init__(self, *args: Any, required: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword: the fields are added by name.
        for name, label in (("from", "From"), ("to", "To (included)")):
            self.fields[name] = forms.DateField(
                label=label,
                required=required,
                input_formats=["%Y-%m-%d"],
                widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
                error_messages={"invalid": "Enter a date like 2026-01-31."},
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, last = data.get("from"), data.get("to")
        latest = timezone.localdate() + timedelta(days=DAYS_AHEAD)
        for name, day in (("from", first), ("to", last)):
            if day is not None and not FIRST_DAY <= day <= latest:
                self.add_error(
                    name, f"Pick a day between {FIRST_DAY:%d %b %Y} and {latest:%d %b %Y}."
                )
        if first is not None and last is not None and first > last and not self.errors:
            self.add_error("to", "The end of the range is before its start.")
        return data

    def range(self) -> tuple[date | None, date | None]:
        """The valid range (after ``is_valid``); a missing end is open."""
        return self.cleaned_data.get("from"), self.cleaned_data.get("to")


# The longest range one export covers, in days (both ends included): a year,
# leap day and all. Longer ranges are taken a year at a time, so one request
# never holds a database cursor open over years of postings.
EXPORT_MAX_DAYS = 366


class ExportForm(DateRangeForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, required=True, **kwargs)
        self.fields["kind"] = forms.ChoiceField(
            label="What", choices=list(EXPORT_KINDS.items()), widget=forms.RadioSelect
        )
        self.order_fields(["kind", "from", "to"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        first, last = data.get("from"), data.get("to")
        if first is not None and last is not None and not self.errors:
            days = (last - first).days + 1
            if days > EXPORT_MAX_DAYS:
                self.add_error(
                    "to",
                    f"An export covers at most {EXPORT_MAX_DAYS} days; this range has {days}. "
                    "Export it in parts, a year or less at a time.",
                )
        return data
