"""A landlord's team: owners invite people by email, give and take roles, and
remove members (docs/roles.md).

An invitation works like a tenant's (``landlord.people``): a row that can be
used once, named by a signed, expiring token in the emailed link. A tampered
token does not verify, an old one has expired, a used or cancelled one finds
its row so, and in each case nothing is created. The invitee sets a password,
or, when an account with that email exists already, signs in and accepts.

A landlord always keeps an owner: the last one can be neither demoted nor
removed. The landlord's row is locked while owners are counted, so two owners
cannot demote each other at once.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from .audit import audit_record
from .models import Landlord, MemberInvitation, Membership
from .people import INVITATION_MAX_AGE, InvitationInvalid, PeopleError, invitation_token_pk

MEMBER_INVITATION_SALT = "landlord.member_invitation"

Role = Membership.Role


class StaffError(PeopleError):
    """The team change cannot be made; the message is for the person who asked."""


def _user_with_email(email: str) -> AbstractBaseUser | None:
    return (
        get_user_model()
        .objects.filter(Q(username__iexact=email) | Q(email__iexact=email))
        .order_by("pk")
        .first()
    )


def _lock_landlord(landlord_id: int) -> Landlord:
    return Landlord.objects.select_for_update().get(pk=landlord_id)


# --- Invitations ------------------------------------------------------------------


def member_invitation_token(invitation: MemberInvitation) -> str:
    return signing.dumps({"member_invitation": invitation.pk}, salt=MEMBER_INVITATION_SALT)


def member_invitation_is_open(invitation: MemberInvitation) -> bool:
    """Neither used, cancelled nor expired."""
    return (
        invitation.used_at is None
        and invitation.cancelled_at is None
        and invitation.created_at >= timezone.now() - INVITATION_MAX_AGE
    )


@transaction.atomic
def member_invite(
    *, landlord: Landlord, email: str, role: str, site_url: str, actor_id: int | None
) -> MemberInvitation:
    """Invite a person by email to the landlord's team; the link goes out on commit."""
    email = email.strip().lower()
    if role not in Role.values:
        raise StaffError("Choose owner or staff.")
    landlord = _lock_landlord(landlord.pk)
    existing = _user_with_email(email)
    if (
        existing is not None
        and Membership.objects.filter(landlord_id=landlord.pk, user_id=existing.pk).exists()
    ):
        raise StaffError(f"{email} is a member of {landlord.name} already.")
    invitation = MemberInvitation.objects.create(
        landlord=landlord, email=email, role=role, created_by_id=actor_id
    )
    link = site_url.rstrip("/") + reverse(
        "member_invite", kwargs={"team_token": member_invitation_token(invitation)}
    )
    how = "sign in with your account and accept" if existing is not None else "choose your password"
    body = (
        f"You are invited to join {landlord.name} on Submeter as "
        f"{Role(role).label.lower()}.\n\n"
        f"Open this link within {INVITATION_MAX_AGE.days} days to {how}:\n{link}\n\n"
        "The link works once. If you did not expect this email, ignore it."
    )
    # As with a tenant's invitation: a mail server that fails does not undo it;
    # the owner sees it pending and can invite again.
    transaction.on_commit(
        lambda: send_mail(
            subject=f"Join {landlord.name} on Submeter",
            message=body,
            from_email=None,
            recipient_list=[email],
        ),
        robust=True,
    )
    audit_record(
        landlord_id=landlord.pk,
        actor_id=actor_id,
        action="member.invited",
        subject=email,
        data={"invitation": invitation.pk, "email": email, "role": role},
    )
    return invitation


def member_invitation_check(*, token: str) -> MemberInvitation:
    """The invitation a link names, if it may still be accepted."""
    pk = invitation_token_pk(
        token=token, salt=MEMBER_INVITATION_SALT, key="member_invitation", ask="the owner"
    )
    invitation = (
        MemberInvitation.objects.select_related("landlord").filter(pk=pk).first()
        if pk is not None
        else None
    )
    if invitation is None:
        raise InvitationInvalid("This invitation no longer exists. Ask the owner.")
    if invitation.used_at is not None:
        raise InvitationInvalid(
            "This invitation was already used. Sign in with the password you chose."
        )
    if invitation.cancelled_at is not None:
        raise InvitationInvalid("This invitation was withdrawn. Ask the owner.")
    return invitation


def member_has_account(*, invitation: MemberInvitation) -> bool:
    """Whether the invited email has an account already (then they sign in to accept)."""
    return _user_with_email(invitation.email) is not None


def _join(*, invitation: MemberInvitation, user: AbstractBaseUser) -> Membership:
    if Membership.objects.filter(landlord_id=invitation.landlord_id, user_id=user.pk).exists():
        raise StaffError(f"You are a member of {invitation.landlord.name} already.")
    if Membership.objects.filter(user_id=user.pk).exists():
        # The landlord pages show one landlord per account.
        raise StaffError(
            "This account works for another landlord already. Ask the owner to invite "
            "another email address."
        )
    membership = Membership.objects.create(
        landlord_id=invitation.landlord_id, user_id=user.pk, role=invitation.role
    )
    invitation.used_at = timezone.now()
    invitation.membership = membership
    invitation.save(update_fields=["used_at", "membership"])
    audit_record(
        landlord_id=invitation.landlord_id,
        actor_id=user.pk,
        action="member.joined",
        subject=invitation.email,
        data={"invitation": invitation.pk, "membership": membership.pk, "role": invitation.role},
    )
    return membership


def _locked_open(token: str) -> MemberInvitation:
    invitation = member_invitation_check(token=token)
    _lock_landlord(invitation.landlord_id)
    invitation = (
        MemberInvitation.objects.select_for_update(of=("self",))
        .select_related("landlord")
        .get(pk=invitation.pk)
    )
    if invitation.used_at is not None or invitation.cancelled_at is not None:
        raise InvitationInvalid("This invitation was already used or withdrawn.")
    return invitation


@transaction.atomic
def member_invitation_accept(*, token: str, password: str) -> Membership:
    """A new person sets a password: their user and their membership. Works once;
    nothing is created when it is refused."""
    invitation = _locked_open(token)
    if _user_with_email(invitation.email) is not None:
        raise StaffError(
            "An account with this email address exists already: sign in with it, then "
            "open the link again to accept."
        )
    user_model = get_user_model()
    try:
        validate_password(
            password, user=user_model(username=invitation.email, email=invitation.email)
        )
    except ValidationError as exc:
        raise StaffError(" ".join(exc.messages)) from None
    user = user_model.objects.create_user(
        username=invitation.email, email=invitation.email, password=password
    )
    return _join(invitation=invitation, user=user)


@transaction.atomic
def member_invitation_accept_as(*, token: str, user: AbstractBaseUser) -> Membership:
    """A person who has an account accepts while signed in with it; the invitation's
    email must be that account's."""
    invitation = _locked_open(token)
    emails = {
        str(getattr(user, "email", "") or "").lower(),
        str(user.get_username()).lower(),
    }
    if invitation.email not in emails:
        raise StaffError(
            f"This invitation is for {invitation.email}. Sign in with that account to accept it."
        )
    return _join(invitation=invitation, user=user)


@transaction.atomic
def member_invitation_cancel(*, invitation: MemberInvitation, actor_id: int | None) -> None:
    _lock_landlord(invitation.landlord_id)
    invitation = MemberInvitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.used_at is not None:
        raise StaffError(f"{invitation.email} accepted this invitation already.")
    if invitation.cancelled_at is not None:
        return
    invitation.cancelled_at = timezone.now()
    invitation.save(update_fields=["cancelled_at"])
    audit_record(
        landlord_id=invitation.landlord_id,
        actor_id=actor_id,
        action="member.invitation_cancelled",
        subject=invitation.email,
        data={"invitation": invitation.pk},
    )


# --- Roles ---------------------------------------------------------------------------


def _other_owners(membership: Membership) -> bool:
    return (
        Membership.objects.filter(landlord_id=membership.landlord_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


def _name(membership: Membership) -> str:
    user = membership.user
    return str(user.get_full_name() or user.get_username())


@transaction.atomic
def member_role_set(*, membership: Membership, role: str, actor_id: int | None) -> Membership:
    """Give a member another role; the last owner stays an owner."""
    if role not in Role.values:
        raise StaffError("Choose owner or staff.")
    _lock_landlord(membership.landlord_id)
    membership = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .get(pk=membership.pk)
    )
    if membership.role == role:
        return membership
    if membership.role == Role.OWNER and not _other_owners(membership):
        raise StaffError(
            f"{_name(membership)} is the only owner. Make another member an owner first."
        )
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        landlord_id=membership.landlord_id,
        actor_id=actor_id,
        action="member.role_changed",
        subject=_name(membership),
        data={"membership": membership.pk, "from": previous, "to": role},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor_id: int | None) -> None:
    """Take a member off the team (their account stays); never the last owner."""
    _lock_landlord(membership.landlord_id)
    membership = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .get(pk=membership.pk)
    )
    if membership.role == Role.OWNER and not _other_owners(membership):
        raise StaffError(
            f"{_name(membership)} is the only owner and cannot be removed. Make another "
            "member an owner first."
        )
    data = {"membership": membership.pk, "user": membership.user_id, "role": membership.role}
    name = _name(membership)
    membership.delete()
    audit_record(
        landlord_id=membership.landlord_id,
        actor_id=actor_id,
        action="member.removed",
        subject=name,
        data=data,
    )
