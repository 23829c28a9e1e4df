"""May this person see this object, and may they do this with it?

Each helper returns the object or raises: 404 for an object that is not the
person's (another landlord's or tenant's object is indistinguishable from a
missing one: never a 403 that reveals it exists), then 403 when the person
is a member of the object's landlord whose role does not allow the action
(``Membership.may``; docs/roles.md).

A tenant keeps their tenancy after it ends, but only its history: their
bills, payments and what they owe. The unit's live data, top-ups, emergency
credit and automatic payments are for the tenancy running today
(``Tenancy.is_current``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404

from meters.models import Device, Interval, Meter
from payments.models import Invoice, Payment, Tariff

from .models import (
    Landlord,
    MemberInvitation,
    Membership,
    ModeSwitchSchedule,
    PaymentPlanRequest,
    Property,
    Tenancy,
    Unit,
)

User = AbstractBaseUser | AnonymousUser
Action = Membership.Action


def _require(*, membership: Membership, action: str) -> None:
    if not membership.may(action):
        raise PermissionDenied(
            f"Only an owner of {membership.landlord.name} may do this. Ask an owner."
        )


def _membership(*, user: User, landlord_id: int) -> Membership:
    if not user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("landlord")
        .filter(user_id=user.pk, landlord_id=landlord_id)
        .first()
    )
    if membership is None:
        raise Http404
    return membership


def landlord_for_user(*, user: User, action: str = Action.VIEW) -> Landlord:
    """The landlord organisation a member works for (their first membership)."""
    if not user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("landlord").filter(user_id=user.pk).order_by("pk")
    )
    first = membership.first()
    if first is None:
        raise Http404
    _require(membership=first, action=action)
    return first.landlord


def may(*, user: User, landlord_id: int, action: str) -> bool:
    """For templates: offer only what the member's role allows."""
    if not user.is_authenticated:
        return False
    membership = Membership.objects.filter(user_id=user.pk, landlord_id=landlord_id).first()
    return membership is not None and membership.may(action)


def access_unit(*, user: User, unit_id: int, action: str = Action.VIEW) -> Unit:
    if not user.is_authenticated:
        raise Http404
    unit = (
        Unit.objects.select_related("property")
        .filter(pk=unit_id, landlord__memberships__user_id=user.pk)
        .first()
    )
    if unit is None:
        raise Http404
    _require(membership=_membership(user=user, landlord_id=unit.landlord_id), action=action)
    return unit


def access_landlord_payment(
    *, user: User, payment_uuid: uuid.UUID, action: str = Action.VIEW
) -> Payment:
    """A payment to the member's landlord."""
    if not user.is_authenticated:
        raise Http404
    payment = (
        Payment.objects.select_related("tenancy__unit")
        .filter(uuid=payment_uuid, landlord__memberships__user_id=user.pk)
        .first()
    )
    if payment is None:
        raise Http404
    _require(membership=_membership(user=user, landlord_id=payment.landlord_id), action=action)
    return payment


def access_tenancy(
    *, user: User, tenancy_id: int, load: Callable[..., Tenancy | None] | None = None
) -> Tenancy:
    """One of the user's own tenancies, running or ended: its history and bills.
    ``load(tenancy_id=, tenant_id=)``: the tenancy with what the page reads with it."""
    if not user.is_authenticated:
        raise Http404
    if load is not None:
        tenancy = load(tenancy_id=tenancy_id, tenant_id=user.pk)
    else:
        tenancy = (
            Tenancy.objects.select_related("unit__property", "landlord")
            .filter(pk=tenancy_id, tenant_id=user.pk)
            .first()
        )
    if tenancy is None:
        raise Http404
    return tenancy


def access_current_tenancy(*, user: User, tenancy_id: int) -> Tenancy:
    """One of the user's own tenancies that runs today: the unit live, top-ups,
    emergency credit, automatic payments and saved cards."""
    tenancy = access_tenancy(user=user, tenancy_id=tenancy_id)
    if not tenancy.is_current():
        raise Http404
    return tenancy


def access_tenancy_to_pay(
    *, user: User, tenancy_id: int, invoice_id: str
) -> tuple[Tenancy, Invoice | None]:
    """Where a tenant's payment goes: one of the tenancy's bills, or (while the
    tenancy runs) its balance. After a tenancy ends only its bills can be paid."""
    tenancy = access_tenancy(user=user, tenancy_id=tenancy_id)
    if invoice_id:
        return tenancy, access_tenancy_invoice(tenancy=tenancy, invoice_id=invoice_id)
    if not tenancy.is_current():
        raise Http404
    return tenancy, None


def access_payment(*, user: User, payment_uuid: uuid.UUID, to_pay: bool = False) -> Payment:
    """One of the tenant's own payments; ``to_pay``: one they may still go on to pay
    (after the tenancy ends, only a bill's)."""
    if not user.is_authenticated:
        raise Http404
    payment = (
        Payment.objects.select_related("tenancy__unit__property", "tenancy__tenant")
        .filter(uuid=payment_uuid, tenancy__tenant_id=user.pk)
        .first()
    )
    if payment is None:
        raise Http404
    if to_pay and not payment.tenancy.is_current() and not payment.is_bill_payment():
        raise Http404
    return payment


def tenancies_for_user(*, user: User) -> list[Tenancy]:
    if not user.is_authenticated:
        return []
    return list(
        Tenancy.objects.active()
        .filter(tenant_id=user.pk)
        .select_related("unit__property")
        .order_by("pk")
    )


def ended_tenancies_for_user(*, user: User) -> list[Tenancy]:
    if not user.is_authenticated:
        return []
    return list(
        Tenancy.objects.ended()
        .filter(tenant_id=user.pk)
        .select_related("unit__property")
        .order_by("-end_date", "-pk")
    )


def is_landlord_staff(*, user: User) -> bool:
    return user.is_authenticated and Membership.objects.filter(user_id=user.pk).exists()


def access_invoice(*, user: User, invoice_id: int) -> Invoice:
    """An invoice: its tenant (also after the tenancy ended), members of its landlord,
    or platform admins (a bill is evidence in a dispute)."""
    if not user.is_authenticated:
        raise Http404
    invoices = Invoice.objects.select_related("tenancy__unit__property", "tenancy__tenant").filter(
        pk=invoice_id
    )
    if not getattr(user, "is_staff", False):
        invoices = invoices.filter(
            Q(tenancy__tenant_id=user.pk) | Q(landlord__memberships__user_id=user.pk)
        )
    invoice = invoices.first()
    if invoice is None:
        raise Http404
    return invoice


def access_tenancy_invoice(*, tenancy: Tenancy, invoice_id: str | int) -> Invoice:
    """One of this tenancy's own bills (the tenancy was already checked)."""
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
    interval = Interval.objects.filter(pk=interval_id, landlord_id=landlord.pk).first()
    if interval is None:
        raise Http404
    return interval


def access_landlord_tenancy(*, user: User, tenancy_id: int, action: str = Action.VIEW) -> Tenancy:
    """A tenancy of one of the member's landlord's units (running, future or ended)."""
    if not user.is_authenticated:
        raise Http404
    tenancy = (
        Tenancy.objects.select_related("unit__property", "tenant")
        .filter(pk=tenancy_id, landlord__memberships__user_id=user.pk)
        .first()
    )
    if tenancy is None:
        raise Http404
    _require(membership=_membership(user=user, landlord_id=tenancy.landlord_id), action=action)
    return tenancy


def access_unit_device(*, unit: Unit, device_id: int) -> Device:
    """One of this unit's devices (the unit was already checked)."""
    device = Device.objects.filter(pk=device_id, unit_id=unit.pk).first()
    if device is None:
        raise Http404
    return device


def access_unit_meter(*, unit: Unit, meter_id: int) -> Meter:
    """This unit's installed meter (the unit was already checked)."""
    meter = Meter.objects.installed().filter(pk=meter_id, unit_id=unit.pk).first()
    if meter is None:
        raise Http404
    return meter


def access_property(*, user: User, property_id: int, action: str = Action.VIEW) -> Property:
    if not user.is_authenticated:
        raise Http404
    prop = Property.objects.filter(pk=property_id, landlord__memberships__user_id=user.pk).first()
    if prop is None:
        raise Http404
    _require(membership=_membership(user=user, landlord_id=prop.landlord_id), action=action)
    return prop


def access_tariff(*, user: User, tariff_id: int, action: str = Action.VIEW) -> Tariff:
    if not user.is_authenticated:
        raise Http404
    tariff = Tariff.objects.filter(pk=tariff_id, landlord__memberships__user_id=user.pk).first()
    if tariff is None:
        raise Http404
    _require(membership=_membership(user=user, landlord_id=tariff.landlord_id), action=action)
    return tariff


def access_membership(*, user: User, membership_id: int, action: str = Action.ROLES) -> Membership:
    """A member of the person's landlord's team (the person's own membership included)."""
    if not user.is_authenticated:
        raise Http404
    membership = (
        Membership.objects.select_related("user", "landlord")
        .filter(pk=membership_id, landlord__memberships__user_id=user.pk)
        .first()
    )
    if membership is None:
        raise Http404
    _require(membership=_membership(user=user, landlord_id=membership.landlord_id), action=action)
    return membership


def access_member_invitation(
    *, user: User, invitation_id: int, action: str = Action.ROLES
) -> MemberInvitation:
    """An invitation to the person's landlord's team."""
    if not user.is_authenticated:
        raise Http404
    invitation = MemberInvitation.objects.filter(
        pk=invitation_id, landlord__memberships__user_id=user.pk
    ).first()
    if invitation is None:
        raise Http404
    _require(membership=_membership(user=user, landlord_id=invitation.landlord_id), action=action)
    return invitation


def access_unit_mode_switch(*, unit: Unit, switch_id: int) -> ModeSwitchSchedule:
    """One of this unit's scheduled mode switches (the unit was already checked)."""
    switch = ModeSwitchSchedule.objects.filter(pk=switch_id, unit_id=unit.pk).first()
    if switch is None:
        raise Http404
    return switch


def access_unit_plan_request(*, unit: Unit, request_id: int) -> PaymentPlanRequest:
    """A payment-plan request of one of this unit's tenancies (the unit was already
    checked)."""
    found = (
        PaymentPlanRequest.objects.filter(
            pk=request_id, landlord_id=unit.landlord_id, tenancy__unit_id=unit.pk
        )
        .select_related("tenancy")
        .first()
    )
    if found is None:
        raise Http404
    return found
