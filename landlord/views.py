from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from config.htmx import form_error_status
from meters.meter_events import HeldReleaseError, held_interval_release
from meters.models import Reading, RelayCommand
from payments.forms import TopUpForm
from payments.ledger import tenant_account
from payments.models import Invoice, Payment, Posting
from payments.selectors import tenant_payment_context
from supply.cutoff import protections_for
from supply.overrides import OverrideRefused, supply_override_release, supply_override_set

from . import access, dashboard, selectors, usage
from .access import Action
from .forms import IntervalDayForm, PlanAnswerForm, ReasonForm
from .hardship import PlanRequestError, payment_plan_answer
from .models import AuditEvent, Tenancy, Unit
from .setup_selectors import onboarding_checklist

HISTORY_PAGE_SIZE = 25


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    if access.is_landlord_staff(user=request.user):
        return redirect("landlord:units")
    if request.user.is_superuser:
        # A platform admin belongs to no landlord: their home is the admin.
        return redirect("admin:index")
    tenancies = access.tenancies_for_user(user=request.user)
    ended = access.ended_tenancies_for_user(user=request.user)
    if len(tenancies) == 1 or (not tenancies and len(ended) == 1):
        return redirect("tenant:home", tenancy_id=(tenancies or ended)[0].pk)
    return render(request, "tenant/choose.html", {"tenancies": tenancies, "ended": ended})


@login_required
@require_GET
def tenant_home(request: HtmxHttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_tenancy(
        user=request.user, tenancy_id=tenancy_id, load=selectors.tenant_home_tenancy
    )
    if not tenancy.is_current():
        return tenancy_history(request, tenancy)
    view = selectors.tenancy_view(tenancy=tenancy, loaded=True)
    context = selectors.tenant_panel_context(tenancy=tenancy, view=view)
    if request.htmx and not request.htmx.boosted:
        return render(request, "tenant/home.html#panel", context)
    context["form"] = TopUpForm(currency=view.currency)
    context["previews"] = selectors.preset_previews(view)
    context["pay"] = tenant_payment_context(tenancy=tenancy)
    return render(request, "tenant/home.html", context)


def tenancy_history(
    request: HttpRequest, tenancy: Tenancy, form: TopUpForm | None = None, status: int = 200
) -> HttpResponse:
    """A tenancy's history: its balance, bills, payments not (yet) credited, and every
    payment, credit and adjustment on its balance, a page at a time, with the prices in
    force. Also the whole page of a tenancy that ended (or has not started): nothing of
    the unit as it is now; ``form``: a refused bill payment."""
    balance = tenant_account(tenancy=tenancy).balance_minor
    page = Paginator(selectors.tenancy_history_rows(tenancy=tenancy), HISTORY_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "tenancy": tenancy,
        "current": tenancy.is_current(),
        "balance_minor": balance,
        "owed_minor": max(-balance, 0),
        "currency": tenancy.unit.property.currency,
        "invoices": list(Invoice.objects.filter(tenancy=tenancy).order_by("-period_start")),
        "payments": list(
            Payment.objects.filter(tenancy=tenancy)
            .exclude(status__in=[Payment.Status.CANCELED, Payment.Status.SUCCEEDED])
            .order_by("-created_at")[:20]
        ),
        "page": page,
        "rows": [selectors.history_row(p, tenancy) for p in page.object_list],
        "prices": selectors.prices_in_force(unit=tenancy.unit),
        "form": form,
    }
    return render(request, "tenant/history.html", context, status=status)


@login_required
@require_GET
def landlord_units(request: HtmxHttpRequest) -> HttpResponse:
    """The landlord's home: what needs attention, the numbers, then the units
    (``?show=`` one kind of unit: the rows behind a count)."""
    landlord = access.landlord_for_user(user=request.user)
    rows = selectors.landlord_unit_views(landlord_id=landlord.pk)
    show = request.GET.get("show", "")
    if show not in dashboard.unit_filters():
        show = ""
    shown = [row for row in rows if dashboard.unit_matches(row, show)] if show else rows
    template = "landlord/units.html#table" if request.htmx else "landlord/units.html"
    may_connect = access.may(user=request.user, landlord_id=landlord.pk, action=Action.CONNECT)
    context: dict[str, object] = {
        "rows": shown,
        "landlord": landlord,
        "may_connect": may_connect,
        "show": show,
        "show_label": dashboard.unit_filters().get(show, ""),
    }
    if not request.htmx:
        context["checklist"] = onboarding_checklist(landlord=landlord, rows=rows)
        context["home"] = dashboard.landlord_home(landlord_id=landlord.pk, rows=rows)
    return render(request, template, context)


WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _unit_detail_context(
    request: HttpRequest, unit: Unit, day_form: IntervalDayForm | None = None
) -> dict[str, object]:
    """The unit page: for people up front (tenant, mode, balance, supply and why,
    meter, bills and payments, the usage chart, supply control); the raw records
    (readings, postings, relay commands, audit rows, priced intervals) on the
    "details" tab (``?tab=details``, or a day of intervals asked for)."""
    view = selectors.landlord_unit_detail_view(landlord_id=unit.landlord_id, unit_id=unit.pk)
    if view is None:
        raise Http404
    details = request.GET.get("tab") == "details" or bool(request.GET.get("day"))
    protections = protections_for(unit=unit, tenancy=view.tenancy)
    minutes = int(protections.notice.total_seconds() // 60)
    notice_text = (
        "none"
        if minutes == 0
        else f"{minutes // 60} hours" + (f" {minutes % 60} minutes" if minutes % 60 else "")
        if minutes >= 60
        else f"{minutes} minute{'s' if minutes != 1 else ''}"
    )
    context: dict[str, object] = {
        "v": view,
        "unit": view.unit,
        "tab": "details" if details else "overview",
        "protections": protections,
        "window_days": ", ".join(WEEKDAYS[int(d) - 1] for d in protections.days) or "no days",
        "notice_text": notice_text,
        "day_form": day_form,
        "may_force_off": access.may(
            user=request.user, landlord_id=unit.landlord_id, action=Action.SUPPLY_OFF
        ),
    }
    if details:
        context.update(_unit_details(unit, view, _day(day_form)))
    else:
        context.update(selectors.unit_people_facts(unit=unit, tenancy=view.tenancy))
        period, day, error = usage.usage_params(request.GET, view.unit.property.timezone)
        data = usage.unit_usage(unit=view.unit, period=period, day=day)
        context.update(usage.usage_context(data))
        context.update({"usage_error": error, "usage_series": data.as_json()})
    return context


def _unit_details(unit: Unit, view: selectors.UnitView, day: date | None) -> dict[str, object]:
    readings = list(Reading.objects.filter(meter__unit=unit).order_by("-seq")[:50])
    commands = list(RelayCommand.objects.filter(device__unit=unit).order_by("-created_at")[:20])
    postings = (
        Posting.objects.filter(landlord_id=unit.landlord_id)
        .filter(Q(debit__tenancy__unit=unit) | Q(credit__tenancy__unit=unit))
        .select_related("transaction", "debit", "credit")
        .order_by("-id")[:30]
    )
    # The unit's own rows (overrides) and those of its devices (relay commands).
    audit = (
        AuditEvent.objects.filter(landlord_id=unit.landlord_id)
        .filter(
            Q(unit=unit, device=None, tenancy=None, meter=None)
            | Q(device__in=[device.pk for device in view.unit.devices.all()])
        )
        .select_related("actor")[:20]
    )
    return {
        "readings": readings,
        "commands": commands,
        "postings": list(postings),
        "audit": list(audit),
        **selectors.unit_billing(unit=unit, day=day),
    }


@login_required
@require_GET
def landlord_unit_detail(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id)
    context = _unit_detail_context(request, unit, IntervalDayForm(request.GET))
    return render(request, "landlord/unit_detail.html", context)


def _override_refused(request: HttpRequest, unit: Unit, error: str) -> HttpResponse:
    context = _unit_detail_context(request, unit)
    context["override_error"] = error
    context["override_reason"] = request.POST.get("reason", "").replace("\x00", "")
    return render(request, "landlord/unit_detail.html", context, status=form_error_status(request))


@login_required
@require_POST
def landlord_unit_override(request: HttpRequest, unit_id: int) -> HttpResponse:
    """Force the supply on or off with a reason (audit-logged)."""
    state = request.POST.get("state", "")
    action = Action.SUPPLY_OFF if state == "off" else Action.SUPPLY_ON
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=action)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        return _override_refused(request, unit, str(form.errors["reason"][0]))
    try:
        supply_override_set(
            unit=unit,
            state=state,
            reason=form.cleaned_data["reason"],
            actor_id=request.user.pk,
        )
    except OverrideRefused as exc:
        return _override_refused(request, unit, str(exc))
    return redirect("landlord:unit", unit_id=unit.pk)


@login_required
@require_POST
def landlord_unit_override_release(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=Action.SUPPLY_ON)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        return _override_refused(request, unit, str(form.errors["reason"][0]))
    supply_override_release(unit=unit, actor_id=request.user.pk, reason=form.cleaned_data["reason"])
    return redirect("landlord:unit", unit_id=unit.pk)


@login_required
@require_POST
def landlord_plan_answer(request: HttpRequest, unit_id: int, request_id: int) -> HttpResponse:
    """Accept a tenant's payment-plan request with its terms, or decline it with a
    note (audit-logged; the tenant is emailed and reads it on their page)."""
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=Action.TENANTS)
    plan = access.access_unit_plan_request(unit=unit, request_id=request_id)
    form = PlanAnswerForm(request.POST)
    if form.is_valid():
        accept = form.cleaned_data["decision"] == "accept"
        try:
            payment_plan_answer(
                plan_request=plan,
                actor_id=request.user.pk,
                accept=accept,
                note=form.cleaned_data["note"],
            )
        except PlanRequestError as exc:
            form.add_error(None, str(exc))
        else:
            verdict = "accepted" if accept else "declined"
            messages.success(request, f"Payment plan {verdict}: the tenant has been told.")
            return redirect(reverse("landlord:unit", args=[unit.pk]) + "#plan-request")
    context = _unit_detail_context(request, unit)
    context["plan_form"] = form
    return render(request, "landlord/unit_detail.html", context, status=form_error_status(request))


def _day(form: IntervalDayForm | None) -> date | None:
    """The day asked for; none (the latest intervals) when none or a bad one was asked for."""
    if form is None or not form.is_valid():
        return None
    day: date | None = form.cleaned_data["day"]
    return day


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
    landlord = access.landlord_for_user(user=request.user, action=Action.REVIEW)
    interval = access.access_held_interval(landlord=landlord, interval_id=interval_id)
    form = ReasonForm(request.POST)
    try:
        if not form.is_valid():
            raise HeldReleaseError(str(form.errors["reason"][0]))
        held_interval_release(
            interval_id=interval.pk,
            actor_id=request.user.pk,
            reason=form.cleaned_data["reason"],
        )
    except HeldReleaseError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The held energy was priced and charged.")
    return redirect("landlord:flagged")
