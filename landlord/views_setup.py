"""Pages where a landlord sets up their business: properties, units, tariffs.

Each view parses its form, authorises the member (``Action.SETUP``: owners),
calls one service of ``landlord.setup`` and renders; a refused request shows
the service's message on the form, with everything typed kept.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from config.htmx import form_error_status, is_htmx
from payments.models import Tariff, TariffVersion

from . import access
from .access import Action
from .forms_setup import PropertyForm, TariffForm, TariffVersionForm, UnitForm, UnitImportForm
from .models import Property, Unit
from .setup import (
    PRICE_UNIT,
    SetupError,
    landlord_today,
    property_create,
    property_update,
    tariff_create,
    tariff_version_schedule,
    unit_archive,
    unit_create,
    unit_update,
    units_import,
    units_import_preview,
)
from .setup_selectors import tariff_version_impact

SETUP = Action.SETUP


def _refused(form: forms.Form, exc: SetupError) -> None:
    form.add_error(exc.field if exc.field in form.fields else None, str(exc))


@login_required
@require_http_methods(["GET"])
def setup_home(request: HttpRequest) -> HttpResponse:
    """Properties, their units and the tariffs, each with its edit link."""
    landlord = access.landlord_for_user(user=request.user, action=SETUP)
    properties = list(Property.objects.filter(landlord=landlord).order_by("name"))
    units = list(
        Unit.objects.filter(landlord=landlord, archived_at__isnull=True)
        .select_related("tariff")
        .order_by("name")
    )
    for prop in properties:
        prop.live_units = [u for u in units if u.property_id == prop.pk]  # type: ignore[attr-defined]
    tariffs = list(Tariff.objects.filter(landlord=landlord).order_by("name"))
    return render(
        request,
        "landlord/setup/home.html",
        {"landlord": landlord, "properties": properties, "tariffs": tariffs},
    )


# --- properties -----------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def property_new(request: HttpRequest) -> HttpResponse:
    landlord = access.landlord_for_user(user=request.user, action=SETUP)
    form = PropertyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            prop = property_create(
                landlord=landlord, actor_id=request.user.pk, values=form.values()
            )
        except SetupError as exc:
            _refused(form, exc)
        else:
            messages.success(request, f"{prop.name} was added. Now add its units.")
            return redirect(f"{reverse('landlord:unit_new')}?property={prop.pk}")
    status = form_error_status(request) if request.method == "POST" else 200
    return render(
        request, "landlord/setup/property_form.html", {"form": form, "prop": None}, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
def property_edit(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = access.access_property(user=request.user, property_id=property_id, action=SETUP)
    form = PropertyForm(request.POST or None, initial=PropertyForm.initial_from(prop))
    if request.method == "POST" and form.is_valid():
        try:
            property_update(prop=prop, actor_id=request.user.pk, values=form.values())
        except SetupError as exc:
            _refused(form, exc)
        else:
            messages.success(request, f"{form.cleaned_data['name']} was saved.")
            return redirect("landlord:setup")
    status = form_error_status(request) if request.method == "POST" else 200
    return render(
        request, "landlord/setup/property_form.html", {"form": form, "prop": prop}, status=status
    )


# --- units ------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def unit_new(request: HttpRequest) -> HttpResponse:
    landlord = access.landlord_for_user(user=request.user, action=SETUP)
    if not Property.objects.filter(landlord=landlord).exists():
        messages.info(request, "Add a property first: units belong to one.")
        return redirect("landlord:property_new")
    initial = {"property": request.GET.get("property")}
    form = UnitForm(request.POST or None, landlord_id=landlord.pk, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            unit = unit_create(
                prop=form.cleaned_data["property"], actor_id=request.user.pk, values=form.values()
            )
        except SetupError as exc:
            _refused(form, exc)
        else:
            messages.success(request, f"{unit.name} was added.")
            return redirect("landlord:setup")
    status = form_error_status(request) if request.method == "POST" else 200
    return render(
        request, "landlord/setup/unit_form.html", {"form": form, "unit": None}, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
def unit_edit(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=SETUP)
    form = UnitForm(
        request.POST or None,
        landlord_id=unit.landlord_id,
        unit=unit,
        initial=UnitForm.initial_from(unit),
    )
    if request.method == "POST" and form.is_valid():
        try:
            unit_update(unit=unit, actor_id=request.user.pk, values=form.values())
        except SetupError as exc:
            _refused(form, exc)
        else:
            messages.success(request, f"{form.cleaned_data['name']} was saved.")
            return redirect("landlord:setup")
    status = form_error_status(request) if request.method == "POST" else 200
    return _unit_page(request, unit, form, status=status)


def _unit_page(
    request: HttpRequest, unit: Unit, form: UnitForm, *, status: int = 200, error: str = ""
) -> HttpResponse:
    occupied = unit.tenancies.active().exists()
    return render(
        request,
        "landlord/setup/unit_form.html",
        {"form": form, "unit": unit, "occupied": occupied, "archive_error": error},
        status=status,
    )


@login_required
@require_POST
def unit_archive_view(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=SETUP)
    try:
        unit_archive(unit=unit, actor_id=request.user.pk)
    except SetupError as exc:
        form = UnitForm(
            landlord_id=unit.landlord_id, unit=unit, initial=UnitForm.initial_from(unit)
        )
        return _unit_page(request, unit, form, status=form_error_status(request), error=str(exc))
    messages.success(request, f"{unit.name} was archived.")
    return redirect("landlord:setup")


@login_required
@require_http_methods(["GET", "POST"])
def unit_import(request: HttpRequest) -> HttpResponse:
    """Many units from a CSV file: a preview with each row's problem, then (only when
    confirmed, and only if no row has one) all of them at once."""
    landlord = access.landlord_for_user(user=request.user, action=SETUP)
    data = request.POST.copy() if request.method == "POST" else None
    form = UnitImportForm(
        data,
        request.FILES or None,
        landlord_id=landlord.pk,
        initial={"property": request.GET.get("property")},
    )
    rows = None
    if request.method == "POST" and form.is_valid():
        prop = form.cleaned_data["property"]
        csv_text = form.cleaned_data["csv_text"]
        try:
            if "confirm" in request.POST:
                created = units_import(prop=prop, actor_id=request.user.pk, csv_text=csv_text)
                messages.success(request, f"{len(created)} units were added to {prop.name}.")
                if is_htmx(request):  # a redirect the browser follows, not the swap
                    return HttpResponseClientRedirect(reverse("landlord:setup"))
                return redirect("landlord:setup")
            rows = units_import_preview(prop=prop, csv_text=csv_text)
        except SetupError as exc:
            _refused(form, exc)
        # The preview's confirm button sends back exactly the rows shown.
        if data is not None:
            data["csv_text"] = csv_text
    refused = request.method == "POST" and (rows is None or any(r.error for r in rows))
    # The refused rows are the answer to show: 422 to htmx, swapped in (config.htmx).
    status = form_error_status(request) if refused else 200
    template = "landlord/setup/unit_import.html"
    return render(
        request,
        template + "#import" if is_htmx(request) else template,
        {
            "form": form,
            "rows": rows,
            "valid": rows is not None and not any(r.error for r in rows),
        },
        status=status,
    )


# --- tariffs ------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def tariff_new(request: HttpRequest) -> HttpResponse:
    landlord = access.landlord_for_user(user=request.user, action=SETUP)
    form = TariffForm(
        request.POST or None, initial={"valid_from": landlord_today(landlord_id=landlord.pk)}
    )
    if request.method == "POST" and form.is_valid():
        try:
            tariff = tariff_create(
                landlord=landlord,
                actor_id=request.user.pk,
                name=form.cleaned_data["name"],
                currency=form.cleaned_data["currency"],
                values=form.values(),
            )
        except SetupError as exc:
            _refused(form, exc)
        else:
            messages.success(request, f"{tariff.name} was created. Choose it on your units.")
            return redirect("landlord:tariff", tariff_id=tariff.pk)
    status = form_error_status(request) if request.method == "POST" else 200
    return render(request, "landlord/setup/tariff_form.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def tariff_detail(request: HttpRequest, tariff_id: int) -> HttpResponse:
    """A tariff's versions, and a new version scheduled from a future day: first its
    impact on the units' last 30 days (nothing written), then, when confirmed, saved."""
    tariff = access.access_tariff(user=request.user, tariff_id=tariff_id, action=SETUP)
    form = TariffVersionForm(request.POST or None, currency=tariff.currency)
    impact = None
    status = 200
    if request.method == "POST":
        status = form_error_status(request)
        if form.is_valid():
            if "confirm" in request.POST:
                try:
                    tariff_version_schedule(
                        tariff=tariff, actor_id=request.user.pk, values=form.values()
                    )
                except SetupError as exc:
                    _refused(form, exc)
                else:
                    messages.success(
                        request,
                        f"The new prices apply from {form.cleaned_data['valid_from']:%d %b %Y}.",
                    )
                    return redirect("landlord:tariff", tariff_id=tariff.pk)
            else:
                impact = tariff_version_impact(tariff=tariff, values=form.values())
                if impact.problem:
                    form.add_error(None, impact.problem[:1].upper() + impact.problem[1:] + ".")
                else:
                    status = 200
    versions = list(
        TariffVersion.objects.filter(tariff=tariff)
        .prefetch_related("rates", "windows")
        .order_by("-valid_from")
    )
    return render(
        request,
        "landlord/setup/tariff_detail.html",
        {
            "tariff": tariff,
            "versions": versions,
            "form": form,
            "impact": impact,
            "price_unit": PRICE_UNIT.get(tariff.currency, "per kWh"),
            "units": list(tariff.units.filter(archived_at__isnull=True).order_by("name")),
        },
        status=status,
    )
