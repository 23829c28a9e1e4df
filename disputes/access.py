"""Who may see a dispute: its tenant, members of its landlord and platform admins
(``is_staff``). Anyone else gets a 404, exactly like a missing dispute."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q
from django.http import Http404

from landlord.models import Membership

from .models import Dispute, DisputeAttachment, DisputeMessage

User = AbstractBaseUser | AnonymousUser
Role = DisputeMessage.Role


def is_admin(*, user: User) -> bool:
    return bool(user.is_authenticated and getattr(user, "is_staff", False))


def role_for(*, user: User, dispute: Dispute) -> str:
    """The side the user is on in this dispute, or '' when none."""
    if not user.is_authenticated:
        return ""
    if dispute.tenancy.tenant_id == user.pk:
        return Role.TENANT
    if Membership.objects.filter(user_id=user.pk, landlord_id=dispute.landlord_id).exists():
        return Role.LANDLORD
    if is_admin(user=user):
        return Role.ADMIN
    return ""


def access_dispute(*, user: User, dispute_id: int) -> tuple[Dispute, str]:
    """The dispute and the user's role in it, or 404."""
    if not user.is_authenticated:
        raise Http404
    dispute = (
        Dispute.objects.select_related(
            "tenancy__tenant",
            "unit__property",
            "landlord",
            "assigned_to",
            "approval_by",
            "proposed_payment",
        )
        .filter(pk=dispute_id)
        .first()
    )
    if dispute is None:
        raise Http404
    role = role_for(user=user, dispute=dispute)
    if not role:
        raise Http404
    return dispute, role


def access_attachment(*, user: User, dispute_id: int, attachment_id: int) -> DisputeAttachment:
    dispute, _ = access_dispute(user=user, dispute_id=dispute_id)
    attachment = DisputeAttachment.objects.filter(pk=attachment_id, dispute_id=dispute.pk).first()
    if attachment is None:
        raise Http404
    return attachment


def access_admin(*, user: User) -> None:
    """The desk is for platform admins only; to anyone else it does not exist."""
    if not is_admin(user=user):
        raise Http404


def disputes_for_member(*, user: User) -> Q:
    """A filter: the disputes of every landlord the user is a member of."""
    return Q(landlord__memberships__user_id=user.pk)
