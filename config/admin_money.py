"""Money in the Django admin in currency units, not minor units.

Every integer model field named ``*_minor`` is money in minor units (pence,
cents). :class:`MoneyAdminMixin` shows such fields as "£1.23" in lists and on
read-only pages, and edits them in a form field that takes "1.23" (a currency
symbol and thousands commas are allowed) and stores 123. The currency is the
row's own (``currency``, or its payment's, unit's or tenancy's), else pounds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from .formats import AmountError, format_money, parse_amount


def to_minor(text: str) -> int:
    """'£1,234.5' -> 123450; ValueError with a reason when it is not an amount."""
    try:
        return parse_amount(text)
    except AmountError as exc:
        raise ValueError(
            "Give at most two decimal places (12.34)."
            if exc.places
            else "Enter an amount like 12.34."
        ) from None


def to_major(minor: int | None) -> str:
    """123450 -> '1234.50' (what the form field shows)."""
    if minor is None:
        return ""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(int(minor)), 100)
    return f"{sign}{whole}.{cents:02d}"


class MoneyField(forms.Field):
    """An amount in currency units, cleaned to integer minor units."""

    widget = forms.TextInput(attrs={"inputmode": "decimal", "size": 12})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, int):
            return to_major(value)
        return value

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        if isinstance(value, int):
            return value
        try:
            return to_minor(str(value))
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid") from None


def row_currency(obj: Any) -> str:
    """The currency of a row's money: its own, its payment's, its unit's or its tenancy's."""
    for path in ("currency", "payment.currency", "unit.currency", "tenancy.unit.currency"):
        value: Any = obj
        for part in path.split("."):
            value = getattr(value, part, None)
            if value is None:
                break
        if isinstance(value, str) and value:
            return value
    return "GBP"


def money_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [
        f
        for f in model._meta.get_fields()
        if isinstance(f, models.IntegerField) and f.name.endswith("_minor")
    ]


def _label(field: models.Field[Any, Any]) -> str:
    text = str(field.verbose_name).replace("(minor units)", "").replace(" minor", "")
    return text.strip().capitalize()


def money_display(field: models.Field[Any, Any]) -> Callable[[Any], str]:
    def show(obj: Any) -> str:
        return format_money(getattr(obj, field.name), row_currency(obj))

    show.short_description = _label(field)  # type: ignore[attr-defined]
    show.admin_order_field = field.name  # type: ignore[attr-defined]
    return show


def _swap(names: Sequence[Any], money: set[str]) -> list[Any]:
    return [f"{n}_money" if isinstance(n, str) and n in money else n for n in names]


class MoneyAdminMixin:
    """For a ``ModelAdmin`` or an inline: ``*_minor`` fields in currency units."""

    _money: set[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        admin: Any = self  # the ModelAdmin or inline this is mixed into
        fields = money_fields(admin.model)
        self._money = {f.name for f in fields}
        for field in fields:
            setattr(self, f"{field.name}_money", money_display(field))
        if hasattr(admin, "list_display"):
            admin.list_display = _swap(admin.list_display, self._money)
        shown_as_text = [n for n in admin.readonly_fields if n in self._money]
        admin.readonly_fields = _swap(admin.readonly_fields, self._money)
        if shown_as_text:
            # Read-only money is shown by its display; the raw field stays out of the form.
            admin.exclude = [*(admin.exclude or []), *shown_as_text]

    def formfield_for_dbfield(self, db_field: Any, request: Any, **kwargs: Any) -> Any:
        if db_field.name in self._money and db_field.editable:
            return MoneyField(
                label=_label(db_field),
                required=not db_field.blank and not db_field.has_default(),
                help_text="In currency units, e.g. 12.34. " + str(db_field.help_text),
                validators=db_field.validators,
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]

    def get_fields(self, request: Any, obj: Any = None) -> Any:
        admin: Any = self
        fields = super().get_fields(request, obj)  # type: ignore[misc]
        if not admin.has_change_permission(request, obj):
            # Read-only: every field is shown as text, money as money.
            return _swap(fields, self._money)
        return fields
