"""The landlord's team page (members, roles, invitations) and the invited person's
page that accepts an invitation. Each view parses, authorises (``access``),
calls one service (``landlord.staff``) and renders."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.htmx import form_error_status

from . import access, staff
from .access import Action
from .forms_people import InviteAcceptForm
from .forms_staff import MemberInviteForm, MemberRoleForm
from .models import Landlord, MemberInvitation, Membership
from .people import INVITATION_MAX_AGE, InvitationInvalid


def _team_page(
    request: HttpRequest,
    landlord: Landlord,
    *,
    form: MemberInviteForm | None = None,
    error: str = "",
    error_member: int | None = None,
    status: int = 200,
) -> HttpResponse:
    members = list(
        Membership.objects.filter(landlord_id=landlord.pk)
        .select_related("user")
        .order_by("role", "user__username")
    )
    invitations = list(
        MemberInvitation.objects.filter(
            landlord_id=landlord.pk, used_at__isnull=True, cancelled_at__isnull=True
        )[:50]
    )
    context = {
        "landlord": landlord,
        "members": members,
        "owners": sum(1 for m in members if m.role == Membership.Role.OWNER),
        "pending": [i for i in invitations if staff.member_invitation_is_open(i)],
        "expired": [i for i in invitations if not staff.member_invitation_is_open(i)],
        "form": form or MemberInviteForm(),
        "roles": Membership.Role.choices,
        "error": error,
        "error_member": error_member,
        "invite_days": INVITATION_MAX_AGE.days,
        "may_manage": access.may(user=request.user, landlord_id=landlord.pk, action=Action.ROLES),
    }
    return render(request, "landlord/staff/team.html", context, status=status)


@login_required
@require_GET
def team(request: HttpRequest) -> HttpResponse:
    landlord = access.landlord_for_user(user=request.user)
    return _team_page(request, landlord)


@login_required
@require_POST
def member_invite(request: HttpRequest) -> HttpResponse:
    landlord = access.landlord_for_user(user=request.user, action=Action.ROLES)
    form = MemberInviteForm(request.POST)
    if not form.is_valid():
        return _team_page(request, landlord, form=form, status=form_error_status(request))
    try:
        invitation = staff.member_invite(
            landlord=landlord,
            email=form.cleaned_data["email"],
            role=form.cleaned_data["role"],
            site_url=request.build_absolute_uri("/"),
            actor_id=request.user.pk,
        )
    except staff.StaffError as exc:
        form.add_error(None, str(exc))
        return _team_page(request, landlord, form=form, status=form_error_status(request))
    messages.success(request, f"Invitation sent to {invitation.email}.")
    return redirect("landlord:staff:team")


@login_required
@require_POST
def member_invitation_cancel(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation = access.access_member_invitation(user=request.user, invitation_id=invitation_id)
    try:
        staff.member_invitation_cancel(invitation=invitation, actor_id=request.user.pk)
    except staff.StaffError as exc:
        landlord = access.landlord_for_user(user=request.user)
        return _team_page(request, landlord, error=str(exc), status=form_error_status(request))
    messages.success(request, f"The invitation to {invitation.email} was withdrawn.")
    return redirect("landlord:staff:team")


@login_required
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = access.access_membership(user=request.user, membership_id=membership_id)
    form = MemberRoleForm(request.POST)
    try:
        if not form.is_valid():
            raise staff.StaffError("Choose owner or staff.")
        changed = staff.member_role_set(
            membership=membership, role=form.cleaned_data["role"], actor_id=request.user.pk
        )
    except staff.StaffError as exc:
        return _team_page(
            request,
            membership.landlord,
            error=str(exc),
            error_member=membership.pk,
            status=form_error_status(request),
        )
    name = changed.user.get_full_name() or changed.user.get_username()
    messages.success(request, f"{name} is now {changed.get_role_display().lower()}.")
    if changed.user_id == request.user.pk and changed.role != Membership.Role.OWNER:
        return redirect("landlord:units")
    return redirect("landlord:staff:team")


@login_required
@require_POST
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = access.access_membership(user=request.user, membership_id=membership_id)
    name = membership.user.get_full_name() or membership.user.get_username()
    try:
        staff.member_remove(membership=membership, actor_id=request.user.pk)
    except staff.StaffError as exc:
        return _team_page(
            request,
            membership.landlord,
            error=str(exc),
            error_member=membership.pk,
            status=form_error_status(request),
        )
    if membership.user_id == request.user.pk:
        return redirect("home")
    messages.success(request, f"{name} was removed from the team.")
    return redirect("landlord:staff:team")


# --- The invited person -------------------------------------------------------------


def _invalid(request: HttpRequest, error: str) -> HttpResponse:
    return render(request, "registration/invite_invalid.html", {"error": error}, status=400)


@require_http_methods(["GET", "POST"])
@never_cache
def member_invite_accept(request: HttpRequest, team_token: str) -> HttpResponse:
    """No sign-in needed for a new person: the signed link is the invitation. A person
    with an account signs in with it first, then accepts."""
    token = team_token
    try:
        invitation = staff.member_invitation_check(token=token)
    except InvitationInvalid as exc:
        return _invalid(request, str(exc))
    has_account = staff.member_has_account(invitation=invitation)
    form = InviteAcceptForm(request.POST or None) if not has_account else None
    error = ""
    user = request.user
    if has_account and not isinstance(user, AbstractBaseUser):
        if request.method == "POST":
            return redirect_to_login(request.get_full_path())
    elif request.method == "POST":
        try:
            if isinstance(user, AbstractBaseUser) and has_account:
                membership = staff.member_invitation_accept_as(token=token, user=user)
            elif form is not None and form.is_valid():
                membership = staff.member_invitation_accept(
                    token=token, password=form.cleaned_data["password1"]
                )
                login(request, membership.user)
            else:
                membership = None
        except InvitationInvalid as exc:
            return _invalid(request, str(exc))
        except staff.StaffError as exc:
            if form is not None:
                form.add_error("password1", str(exc))
            else:
                error = str(exc)
        else:
            if membership is not None:
                messages.success(request, f"Welcome to {invitation.landlord.name}.")
                return redirect("landlord:units")
    context = {
        "invitation": invitation,
        "form": form,
        "has_account": has_account,
        "error": error,
        "role": Membership.Role(invitation.role).label.lower(),
    }
    status = form_error_status(request) if request.method == "POST" else 200
    return render(request, "landlord/staff/join.html", context, status=status)
