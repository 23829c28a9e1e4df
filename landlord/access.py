"""May this person see this object? Each helper returns it or raises 404.

Another landlord's or tenant's object is indistinguishable from a missing
one: never a 403 that reveals it exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q
from django.http import Http404

from .models import Landlord, Membership, Tenancy, Unit

if TYPE_CHECKING:
    from meters.models import Interval
    from payments.models import Invoice

User = AbstractBaseUser | AnonymousUser


def landlord_for_user(*, user: User) -> Landlord:
    """The landlord organisation a staff user works for (their first membership)."""
    if not user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("landlord").filter(user_id=user.pk).order_by("pk")
    )
    first = membership.first()
    if first is None:
        raise Http404
    return first.landlord


def access_unit(*, user: User, unit_id: int) -> Unit:
    if not user.is_authenticated:
        raise Http404
    unit = (
        Unit.objects.select_related("property")
        .filter(pk=unit_id, landlord__memberships__user_id=user.pk)
        .first()
    )
    if unit is None:
        raise Http404
    return unit


def access_tenancy(*, user: User, tenancy_id: int) -> Tenancy:
    if not user.is_authenticated:
        raise Http404
    tenancy = (
        Tenancy.objects.select_related("unit__property", "landlord")
        .filter(pk=tenancy_id, tenant_id=user.pk)
        .first()
    )
    if tenancy is None:
        raise Http404
    return tenancy


def tenancies_for_user(*, user: User) -> list[Tenancy]:
    if not user.is_authenticated:
        return []
    return list(
        Tenancy.objects.active()
        .filter(tenant_id=user.pk)
        .select_related("unit__property")
        .order_by("pk")
    )


def is_landlord_staff(*, user: User) -> bool:
    return user.is_authenticated and Membership.objects.filter(user_id=user.pk).exists()


def access_invoice(*, user: User, invoice_id: int) -> Invoice:
    """An invoice: its tenant, or staff of its landlord."""
    from payments.models import Invoice

    if not user.is_authenticated:
        raise Http404
    invoice = (
        Invoice.objects.select_related("tenancy__unit__property", "tenancy__tenant")
        .filter(pk=invoice_id)
        .filter(Q(tenancy__tenant_id=user.pk) | Q(landlord__memberships__user_id=user.pk))
        .first()
    )
    if invoice is None:
        raise Http404
    return invoice


def access_tenancy_invoice(*, tenancy: Tenancy, invoice_id: str | int) -> Invoice:
    """One of this tenancy's own bills (the tenancy was already checked)."""
    from payments.models import Invoice

    try:
        pk = int(invoice_id)
    except (TypeError, ValueError):
        raise Http404 from None
    invoice = Invoice.objects.filter(pk=pk, tenancy_id=tenancy.pk).first()
    if invoice is None:
        raise Http404
    return invoice


def access_held_interval(*, landlord: Landlord, interval_id: int) -> Interval:
    """Held energy on one of the landlord's meters."""
    from meters.models import Interval

    interval = Interval.objects.filter(pk=interval_id, landlord_id=landlord.pk).first()
    if interval is None:
        raise Http404
    return interval
