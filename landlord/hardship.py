"""When a tenant cannot top up: a payment-plan request that reaches the landlord."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from config.live import unit_changed

from .audit import audit_record
from .models import PaymentPlanRequest, Tenancy


class PlanRequestError(Exception):
    """A request that cannot be made, with the reason to show."""


def open_plan_request(*, tenancy: Tenancy) -> PaymentPlanRequest | None:
    return PaymentPlanRequest.objects.filter(
        tenancy=tenancy, status=PaymentPlanRequest.Status.OPEN
    ).first()


@transaction.atomic
def payment_plan_request(
    *, tenancy: Tenancy, actor_id: int | None, weekly_minor: int | None, message: str
) -> PaymentPlanRequest:
    """Ask the landlord for a payment plan; at most one open request per tenancy."""
    try:
        with transaction.atomic():
            request = PaymentPlanRequest.objects.create(
                landlord_id=tenancy.landlord_id,
                tenancy=tenancy,
                weekly_minor=weekly_minor,
                message=message,
            )
    except IntegrityError as exc:
        raise PlanRequestError(
            "You have already asked for a payment plan; your landlord will answer it."
        ) from exc
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="payment_plan.requested",
        tenancy=tenancy,
        data={"request_id": request.pk, "weekly_minor": weekly_minor},
    )
    unit_changed(tenancy.unit)
    return request
