"""What payment pages show, read-only."""

from __future__ import annotations

from landlord.models import Tenancy

from . import automatic
from .models import Payment
from .providers import get_provider


def tenant_payment_context(*, tenancy: Tenancy) -> dict[str, object]:
    """What the tenant's page shows about paying: can they, saved card, payments to confirm."""
    provider = get_provider()
    payee = provider.payee_status(landlord=tenancy.landlord) if provider else None
    return {
        "payee_ready": bool(payee and payee.ready),
        "payee_message": (payee.message if payee else "Payments are not available yet."),
        "saved_method": automatic.saved_method_for(tenancy=tenancy),
        "recent_payments": list(
            Payment.objects.filter(tenancy=tenancy)
            .exclude(status=Payment.Status.CANCELED)
            .order_by("-created_at")[:5]
        ),
        "payments_to_confirm": list(
            Payment.objects.filter(
                tenancy=tenancy, status=Payment.Status.PENDING, off_session=True
            ).exclude(action_url="")[:3]
        ),
    }
