from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from meters.models import Reading, RelayCommand
from meters.services import HeldReleaseError, held_interval_release
from payments.forms import TopUpForm
from payments.models import Posting

from . import access, selectors


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    if access.is_landlord_staff(user=request.user):
        return redirect("landlord:units")
    tenancies = access.tenancies_for_user(user=request.user)
    if len(tenancies) == 1:
        return redirect("tenant:home", tenancy_id=tenancies[0].pk)
    return render(request, "tenant/choose.html", {"tenancies": tenancies})


@login_required
@require_GET
def tenant_home(request: HtmxHttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_tenancy(user=request.user, tenancy_id=tenancy_id)
    view = selectors.tenancy_view(tenancy=tenancy)
    context = {"v": view, "tenancy": tenancy, "form": TopUpForm(currency=view.currency)}
    template = "tenant/home.html#panel" if request.htmx else "tenant/home.html"
    return render(request, template, context)


@login_required
@require_GET
def landlord_units(request: HtmxHttpRequest) -> HttpResponse:
    landlord = access.landlord_for_user(user=request.user)
    rows = selectors.landlord_unit_views(landlord_id=landlord.pk)
    template = "landlord/units.html#table" if request.htmx else "landlord/units.html"
    return render(request, template, {"rows": rows, "landlord": landlord})


@login_required
@require_GET
def landlord_unit_detail(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id)
    view = selectors.landlord_unit_view(landlord_id=unit.landlord_id, unit_id=unit.pk)
    if view is None:
        raise Http404
    readings = Reading.objects.filter(meter__unit=unit).order_by("-seq")[:50]
    commands = RelayCommand.objects.filter(device__unit=unit).order_by("-created_at")[:20]
    postings = (
        Posting.objects.filter(landlord_id=unit.landlord_id)
        .filter(Q(debit__tenancy__unit=unit) | Q(credit__tenancy__unit=unit))
        .select_related("transaction", "debit", "credit")
        .order_by("-id")[:30]
    )
    return render(
        request,
        "landlord/unit_detail.html",
        {
            "v": view,
            "unit": unit,
            "readings": readings,
            "commands": commands,
            "postings": list(postings),
            **selectors.unit_billing(unit=unit, day=_day(request.GET.get("day"))),
        },
    )


def _day(value: str | None) -> date | None:
    """A ``YYYY-MM-DD`` query value; anything else shows the latest intervals."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@login_required
@require_GET
def landlord_flagged(request: HttpRequest) -> HttpResponse:
    """Readings the validation rules flagged, and energy held from billing, with why."""
    landlord = access.landlord_for_user(user=request.user)
    return render(
        request,
        "landlord/flagged.html",
        {"landlord": landlord, **selectors.flagged_for_landlord(landlord_id=landlord.pk)},
    )


@login_required
@require_POST
def landlord_held_release(request: HttpRequest, interval_id: int) -> HttpResponse:
    """Bill held energy after review (spread evenly over the time it covers)."""
    landlord = access.landlord_for_user(user=request.user)
    interval = access.access_held_interval(landlord=landlord, interval_id=interval_id)
    try:
        held_interval_release(
            interval_id=interval.pk,
            actor_id=request.user.pk,
            reason=request.POST.get("reason", ""),
        )
    except HeldReleaseError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The held energy was priced and charged.")
    return redirect("landlord:flagged")
