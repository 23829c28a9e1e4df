"""Landlord pages for a unit's meter and device, its tenants, and its billing mode;
the invited tenant's page that accepts an invitation.

Each view parses, authorises (``access``), calls one service and renders.
A device secret exists in clear only in the response that shows it: the page
is not cached and the secret is never stored or logged.
"""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.htmx import form_error_status
from meters.devices import DeviceRegistrationError, device_register, device_secret_rotate
from meters.meter_events import MeterMoveError, meter_event_record, meter_move
from meters.models import Device, Meter, MeterEvent, Protocol
from meters.readings import ReadingRejected
from payments import deposits
from payments.selectors import tenancy_advice

from . import access, mode_switches, people, selectors
from .access import Action
from .forms_people import (
    DepositForm,
    DeviceRegisterForm,
    InviteAcceptForm,
    InviteForm,
    MeterEventForm,
    MeterMoveForm,
    ModeScheduleForm,
    ModeSwitchForm,
    MoveInForm,
    MoveOutForm,
    to_minor,
    to_wh,
)
from .models import Invitation, Tenancy, Unit


def _tz(unit: Unit) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(unit.property.timezone)


# --- Meter and device -----------------------------------------------------------------


def _devices_page(
    request: HttpRequest, unit: Unit, form: DeviceRegisterForm | None = None, status: int = 200
) -> HttpResponse:
    row = selectors.landlord_unit_view(landlord_id=unit.landlord_id, unit_id=unit.pk)
    devices = list(Device.objects.filter(unit_id=unit.pk).order_by("pk"))
    meters = list(Meter.objects.filter(unit_id=unit.pk).select_related("device").order_by("-pk"))
    installed = [m for m in meters if m.removed_at is None]
    events = list(
        MeterEvent.objects.filter(Q(meter__unit_id=unit.pk) | Q(new_meter__unit_id=unit.pk))
        .select_related("meter__unit", "new_meter__unit")
        .order_by("-at")[:10]
    )
    context = {
        "unit": unit,
        "row": row,
        "devices": devices,
        "meters": meters,
        "installed": installed,
        "events": events,
        "form": form if form is not None else (None if installed else DeviceRegisterForm()),
        "may_manage": access.may(
            user=request.user, landlord_id=unit.landlord_id, action=Action.DEVICES
        ),
    }
    return render(request, "landlord/people/devices.html", context, status=status)


@login_required
@require_GET
def unit_devices(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id)
    return _devices_page(request, unit)


def _socket_base(request: HttpRequest) -> str:
    return f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"


def _secret_page(
    request: HttpRequest, unit: Unit, device: Device, secret: str, *, rotated: bool
) -> HttpResponse:
    base = _socket_base(request)
    context = {
        "unit": unit,
        "device": device,
        "secret": secret,
        "rotated": rotated,
        "is_shelly": device.protocol == Protocol.SHELLY,
        "device_url": f"{base}/ws/device/v1",
        "shelly_url": f"{base}/ws/shelly/{device.ident}/{secret}",
        "insecure": not request.is_secure(),
    }
    response = render(request, "landlord/people/device_secret.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
@never_cache
def unit_device_register(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=Action.DEVICES)
    form = DeviceRegisterForm(request.POST)
    if not form.is_valid():
        return _devices_page(request, unit, form, status=form_error_status(request))
    try:
        device, secret = device_register(
            unit=unit,
            ident=form.cleaned_data["ident"],
            protocol=form.cleaned_data["protocol"],
            serial=form.cleaned_data["serial"],
            actor_id=request.user.pk,
        )
    except DeviceRegistrationError as exc:
        form.add_error(None, str(exc))
        return _devices_page(request, unit, form, status=form_error_status(request))
    return _secret_page(request, unit, device, secret, rotated=False)


@login_required
@require_POST
@never_cache
def unit_device_rotate(request: HttpRequest, unit_id: int, device_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=Action.DEVICES)
    device = access.access_unit_device(unit=unit, device_id=device_id)
    secret = device_secret_rotate(device=device, actor_id=request.user.pk)
    return _secret_page(request, unit, device, secret, rotated=True)


@login_required
@require_http_methods(["GET", "POST"])
def unit_meter_event(request: HttpRequest, unit_id: int, meter_id: int) -> HttpResponse:
    """Replace a meter, or record a reset of its register."""
    action = Action.DEVICES if request.method == "POST" else Action.VIEW
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=action)
    meter = access.access_unit_meter(unit=unit, meter_id=meter_id)
    form = MeterEventForm(request.POST or None, tz=_tz(unit))
    status = 200
    if request.method == "POST":
        status = form_error_status(request)
        if form.is_valid():
            data = form.cleaned_data
            try:
                meter_event_record(
                    meter=meter,
                    kind=data["kind"],
                    at=data["at"],
                    old_last_wh=to_wh(data["old_last"]),
                    new_first_wh=to_wh(data["new_first"]),
                    new_serial=data["new_serial"],
                    actor_id=request.user.pk,
                    reason=data["reason"],
                )
            except ReadingRejected as exc:
                form.add_error("at", exc.message)
            else:
                messages.success(request, "Recorded. Billing continues from the new value.")
                return redirect("landlord:people:devices", unit_id=unit.pk)
    context = {"unit": unit, "meter": meter, "form": form}
    return render(request, "landlord/people/meter_event.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def unit_device_move(request: HttpRequest, unit_id: int, device_id: int) -> HttpResponse:
    """Move a device and its meter to another of the landlord's units."""
    action = Action.DEVICES if request.method == "POST" else Action.VIEW
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=action)
    device = access.access_unit_device(unit=unit, device_id=device_id)
    meter = Meter.objects.installed().filter(device_id=device.pk).first()
    units = [
        (u.pk, f"{u.property.name} · {u.name}")
        for u in Unit.objects.filter(landlord_id=unit.landlord_id, archived_at__isnull=True)
        .exclude(pk=unit.pk)
        .select_related("property")
        .order_by("property__name", "name")
    ]
    form = MeterMoveForm(request.POST or None, tz=_tz(unit), units=units)
    status = 200
    if request.method == "POST":
        status = form_error_status(request)
        if form.is_valid():
            data = form.cleaned_data
            target = Unit.objects.filter(pk=data["to_unit"]).first()
            try:
                if target is None:
                    raise MeterMoveError("That unit is not one of yours.")
                meter_move(
                    device=device,
                    to_unit=target,
                    at=data["at"],
                    register_wh=to_wh(data["register"]),
                    actor_id=request.user.pk,
                    reason=data["reason"],
                )
            except MeterMoveError as exc:
                form.add_error(None, str(exc))
            except ReadingRejected as exc:
                form.add_error("at", exc.message)
            else:
                assert target is not None
                messages.success(request, f"Device {device.ident} now meters {target.name}.")
                return redirect("landlord:people:devices", unit_id=target.pk)
    context = {"unit": unit, "device": device, "meter": meter, "form": form}
    return render(request, "landlord/people/device_move.html", context, status=status)


# --- Tenants ---------------------------------------------------------------------------


def _tenants_page(
    request: HttpRequest, unit: Unit, form: InviteForm | None = None, status: int = 200
) -> HttpResponse:
    today = timezone.localdate()
    tenancies = list(
        Tenancy.objects.filter(unit_id=unit.pk).select_related("tenant").order_by("-start_date")
    )
    invitations = list(Invitation.objects.filter(unit_id=unit.pk, used_at__isnull=True)[:20])
    expiry = timezone.now() - people.INVITATION_MAX_AGE
    context = {
        "unit": unit,
        "today": today,
        "current": [t for t in tenancies if t.is_active_on(today)],
        "upcoming": [t for t in tenancies if t.start_date > today],
        "past": [t for t in tenancies if t.end_date is not None and t.end_date < today],
        "pending": [i for i in invitations if i.created_at >= expiry],
        "expired": [i for i in invitations if i.created_at < expiry],
        "form": form or InviteForm(),
        "invite_days": people.INVITATION_MAX_AGE.days,
        "may_manage": access.may(
            user=request.user, landlord_id=unit.landlord_id, action=Action.TENANTS
        ),
    }
    return render(request, "landlord/people/tenants.html", context, status=status)


@login_required
@require_GET
def unit_tenants(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id)
    return _tenants_page(request, unit)


@login_required
@require_POST
def unit_tenant_invite(request: HttpRequest, unit_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=Action.TENANTS)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _tenants_page(request, unit, form, status=form_error_status(request))
    try:
        invitation = people.invitation_create(
            unit=unit,
            email=form.cleaned_data["email"],
            move_in=form.cleaned_data["move_in"],
            site_url=request.build_absolute_uri("/"),
            actor_id=request.user.pk,
        )
    except people.PeopleError as exc:
        form.add_error(None, str(exc))
        return _tenants_page(request, unit, form, status=form_error_status(request))
    messages.success(request, f"Invitation sent to {invitation.email}.")
    return redirect("landlord:people:tenants", unit_id=unit.pk)


@login_required
@require_http_methods(["GET", "POST"])
def tenancy_move_in(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    action = Action.TENANTS if request.method == "POST" else Action.VIEW
    tenancy = access.access_landlord_tenancy(
        user=request.user, tenancy_id=tenancy_id, action=action
    )
    unit = tenancy.unit
    meter = Meter.objects.installed().filter(unit_id=unit.pk).first()
    form = MoveInForm(request.POST or None)
    context: dict[str, Any] = {"tenancy": tenancy, "unit": unit, "meter": meter, "form": form}
    if request.method == "POST":
        if form.is_valid():
            try:
                context["done"] = people.tenancy_move_in(
                    tenancy=tenancy,
                    opening_wh=to_wh(form.cleaned_data["opening"]),
                    deposit_minor=to_minor(form.cleaned_data["deposit"]),
                    actor_id=request.user.pk,
                )
            except people.PeopleError as exc:
                form.add_error(None, str(exc))
        if "done" not in context:
            return render(
                request, "landlord/people/move_in.html", context, status=form_error_status(request)
            )
    return render(request, "landlord/people/move_in.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def tenancy_move_out(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    action = Action.TENANTS if request.method == "POST" else Action.VIEW
    tenancy = access.access_landlord_tenancy(
        user=request.user, tenancy_id=tenancy_id, action=action
    )
    unit = tenancy.unit
    meter = Meter.objects.installed().filter(unit_id=unit.pk).first()
    form = MoveOutForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            try:
                people.tenancy_move_out(
                    tenancy=tenancy,
                    end_date=form.cleaned_data["end_date"],
                    closing_wh=to_wh(form.cleaned_data["closing"]),
                    actor_id=request.user.pk,
                )
            except people.PeopleError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("landlord:people:statement", tenancy_id=tenancy.pk)
        status = form_error_status(request)
    else:
        status = 200
    context = {"tenancy": tenancy, "unit": unit, "meter": meter, "form": form}
    return render(request, "landlord/people/move_out.html", context, status=status)


@login_required
@require_GET
def tenancy_statement(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    tenancy = access.access_landlord_tenancy(user=request.user, tenancy_id=tenancy_id)
    statement = people.final_statement(tenancy=tenancy)
    return render(
        request,
        "landlord/people/statement.html",
        {"s": statement, "tenancy": tenancy, "unit": tenancy.unit},
    )


@login_required
@require_http_methods(["GET", "POST"])
def tenancy_deposit(request: HttpRequest, tenancy_id: int) -> HttpResponse:
    """Ask for a deposit (or change what is asked); after the move-out, ask the
    provider again to refund what is still held."""
    refund = request.POST.get("action") == "refund"
    if request.method != "POST":
        action = Action.VIEW
    else:
        action = Action.REFUND if refund else Action.TENANTS
    tenancy = access.access_landlord_tenancy(
        user=request.user, tenancy_id=tenancy_id, action=action
    )
    form = DepositForm(None if refund or request.method != "POST" else request.POST)
    status, error = 200, ""
    if request.method == "POST":
        try:
            if refund:
                asked = deposits.deposit_refund_rest(tenancy=tenancy, actor_id=request.user.pk)
                messages.success(
                    request, f"Asked the payment provider to refund {asked / 100:.2f}."
                )
                return redirect("landlord:people:deposit", tenancy_id=tenancy.pk)
            if form.is_valid():
                deposits.deposit_request(
                    tenancy=tenancy,
                    amount_minor=to_minor(form.cleaned_data["deposit"]) or 0,
                    actor_id=request.user.pk,
                )
                messages.success(request, "Deposit asked for: the tenant can pay it online.")
                return redirect("landlord:people:deposit", tenancy_id=tenancy.pk)
        except deposits.DepositError as exc:
            error = str(exc)
        status = form_error_status(request)
    return render(
        request,
        "landlord/people/deposit.html",
        {
            "tenancy": tenancy,
            "unit": tenancy.unit,
            "form": form,
            "error": error,
            "may_ask": access.may(
                user=request.user, landlord_id=tenancy.landlord_id, action=Action.TENANTS
            ),
            "may_refund": access.may(
                user=request.user, landlord_id=tenancy.landlord_id, action=Action.REFUND
            ),
        },
        status=status,
    )


# --- Billing mode ---------------------------------------------------------------------


def _mode_target(unit: Unit) -> str:
    return (
        Unit.BillingMode.POSTPAID
        if unit.billing_mode == Unit.BillingMode.PREPAID
        else Unit.BillingMode.PREPAID
    )


def _billing_mode_page(
    request: HttpRequest,
    unit: Unit,
    *,
    form: ModeSwitchForm | None = None,
    error: str = "",
    schedule_form: ModeScheduleForm | None = None,
    schedule_error: str = "",
) -> HttpResponse:
    target = _mode_target(unit)
    tz = _tz(unit)
    row = selectors.landlord_unit_view(landlord_id=unit.landlord_id, unit_id=unit.pk)
    context = {
        "unit": unit,
        "row": row,
        # A suggestion with its reasons, never acted on: the landlord decides.
        "advice": tenancy_advice(tenancy=row.tenancy) if row and row.tenancy else None,
        "target": target,
        "form": form or ModeSwitchForm(initial={"mode": target}),
        "error": error,
        "pending": mode_switches.mode_switch_pending(unit=unit),
        "schedule_form": schedule_form
        or ModeScheduleForm(
            tz=tz,
            initial={
                "mode": target,
                "at": (timezone.localtime(timezone.now(), tz) + timedelta(days=1)).replace(
                    hour=0, minute=0, second=0, microsecond=0
                ),
            },
        ),
        "schedule_error": schedule_error,
        "tz_name": unit.property.timezone,
        "may_switch": access.may(
            user=request.user, landlord_id=unit.landlord_id, action=Action.BILLING_MODE
        ),
    }
    status = form_error_status(request) if error or schedule_error else 200
    return render(request, "landlord/people/billing_mode.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def unit_billing_mode(request: HttpRequest, unit_id: int) -> HttpResponse:
    """Switch prepaid ↔ postpaid now; to prepaid only after confirming what it means."""
    action = Action.BILLING_MODE if request.method == "POST" else Action.VIEW
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=action)
    if request.method != "POST":
        return _billing_mode_page(request, unit)
    form = ModeSwitchForm(request.POST, initial={"mode": _mode_target(unit)})
    if not form.is_valid():
        return _billing_mode_page(request, unit, form=form, error="Choose prepaid or postpaid.")
    try:
        people.unit_billing_mode_switch(
            unit=unit,
            mode=form.cleaned_data["mode"],
            confirmed=form.cleaned_data["confirm"],
            actor_id=request.user.pk,
        )
    except people.PeopleError as exc:
        return _billing_mode_page(request, unit, form=form, error=str(exc))
    messages.success(request, f"{unit.name} is now {form.cleaned_data['mode']}.")
    return redirect("landlord:unit", unit_id=unit.pk)


@login_required
@require_POST
def unit_mode_schedule(request: HttpRequest, unit_id: int) -> HttpResponse:
    """Schedule the switch for a chosen local date and time."""
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=Action.BILLING_MODE)
    form = ModeScheduleForm(request.POST, tz=_tz(unit))
    if not form.is_valid():
        return _billing_mode_page(
            request, unit, schedule_form=form, schedule_error="Choose a date and a time."
        )
    try:
        switch = mode_switches.mode_switch_schedule(
            unit=unit,
            mode=form.cleaned_data["mode"],
            at=form.cleaned_data["at"],
            confirmed=form.cleaned_data["confirm"],
            actor_id=request.user.pk,
        )
    except people.PeopleError as exc:
        return _billing_mode_page(request, unit, schedule_form=form, schedule_error=str(exc))
    when = timezone.localtime(switch.at, _tz(unit))
    messages.success(request, f"{unit.name} switches to {switch.mode} on {when:%d %b %Y at %H:%M}.")
    return redirect("landlord:people:billing_mode", unit_id=unit.pk)


@login_required
@require_POST
def unit_mode_schedule_cancel(request: HttpRequest, unit_id: int, switch_id: int) -> HttpResponse:
    unit = access.access_unit(user=request.user, unit_id=unit_id, action=Action.BILLING_MODE)
    switch = access.access_unit_mode_switch(unit=unit, switch_id=switch_id)
    try:
        mode_switches.mode_switch_cancel(switch=switch, actor_id=request.user.pk)
    except people.PeopleError as exc:
        return _billing_mode_page(request, unit, schedule_error=str(exc))
    messages.success(request, f"The switch to {switch.mode} was cancelled.")
    return redirect("landlord:people:billing_mode", unit_id=unit.pk)


# --- The invited tenant ---------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@never_cache
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    """No sign-in: the signed link is the invitation. Refused links show why."""
    try:
        invitation = people.invitation_check(token=token)
    except people.InvitationInvalid as exc:
        return render(request, "registration/invite_invalid.html", {"error": str(exc)}, status=400)
    form = InviteAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenancy = people.invitation_accept(token=token, password=form.cleaned_data["password1"])
        except people.InvitationInvalid as exc:
            return render(
                request, "registration/invite_invalid.html", {"error": str(exc)}, status=400
            )
        except people.PeopleError as exc:
            form.add_error("password1", str(exc))
        else:
            login(request, tenancy.tenant)
            return redirect("home")
    status = form_error_status(request) if request.method == "POST" else 200
    context = {"invitation": invitation, "form": form}
    return render(request, "registration/invite_accept.html", context, status=status)
