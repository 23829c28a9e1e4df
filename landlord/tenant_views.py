"""The tenant's pages beside the home: history, and the top-up preview."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from payments.forms import TopUpForm

from . import access, selectors
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
