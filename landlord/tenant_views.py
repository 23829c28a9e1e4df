"""The tenant's pages beside the home: history, usage, and the top-up preview."""

from __future__ import annotations

import zoneinfo
from datetime import date

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from payments.forms import TopUpForm

from . import access, selectors, usage
from .views import tenancy_history


@login_required
@require_GET
def tenant_history(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Payments, credits, bills and adjustments, paginated; also a former tenant's."""
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    return tenancy_history(request, tenancy)


@login_required
@require_GET
def topup_preview(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Where a top-up of the typed amount would go (htmx partial; empty on a bad amount)."""
    tenancy = access.access_current_tenancy(user=request.user, tenancy_id=tenancy_id)
    form = TopUpForm(request.GET, currency=tenancy.unit.property.currency)
    preview = None
    if tenancy.unit.is_prepaid and form.is_valid():
        view = selectors.tenancy_view(tenancy=tenancy)
        preview = selectors.view_topup_preview(view, form.cleaned_data["amount"])
    return render(request, "tenant/_topup_preview.html", {"preview": preview})


def _usage_params(request: HttpRequest, tenancy_tz: str) -> tuple[str, date, str]:
    """(period, day, error): a bad period or date falls back to today's day view,
    with the error to say."""
    today = timezone.localdate(timezone=zoneinfo.ZoneInfo(tenancy_tz))
    period = request.GET.get("period", "day")
    raw = request.GET.get("date", "")
    if period not in usage.PERIODS:
        return "day", today, f"There is no “{period[:20]}” view; showing today."
    if not raw:
        return period, today, ""
    try:
        return period, date.fromisoformat(raw), ""
    except ValueError:
        return period, today, f"“{raw[:20]}” is not a date (YYYY-MM-DD); showing today."


@login_required
@require_GET
def tenant_usage(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Usage by half hour, day or month, in kWh or money, beside the previous period."""
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    period, day, error = _usage_params(request, tenancy.unit.property.timezone)
    data = usage.tenancy_usage(tenancy=tenancy, period=period, day=day)
    return render(
        request,
        "tenant/usage.html",
        {
            "tenancy": tenancy,
            "u": data,
            "rows": list(
                zip(
                    data.current.labels,
                    data.current.wh,
                    data.current.minor,
                    data.previous.wh + [None] * len(data.current.wh),
                    strict=False,
                )
            ),
            "periods": usage.PERIODS,
            "earlier": usage.previous_day(period, day),
            "later": usage.period_bounds(period, day)[1],
            "error": error,
        },
    )


@login_required
@require_GET
def tenant_usage_data(request: HttpRequest, tenancy_id: int) -> JsonResponse:
    """The chart's data (see landlord.usage): a bad period or date is a 400 that says why."""
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    period, day, error = _usage_params(request, tenancy.unit.property.timezone)
    if error:
        return JsonResponse({"error": error}, status=400)
    return JsonResponse(usage.tenancy_usage(tenancy=tenancy, period=period, day=day).as_json())
