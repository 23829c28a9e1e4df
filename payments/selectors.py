"""What payment pages show, read-only."""

from __future__ import annotations

from django.db.models import Q

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
        **_recent_and_to_confirm(tenancy=tenancy),
    }


def _recent_and_to_confirm(*, tenancy: Tenancy) -> dict[str, list[Payment]]:
    """The last five payments and those the bank asks the tenant to confirm, in one
    query: the five newest rows are the recent ones (any other row is older)."""
    order = ("-created_at", "-pk")
    live = Payment.objects.filter(tenancy=tenancy).exclude(status=Payment.Status.CANCELED)
    recent = live.order_by(*order).values("pk")[:5]
    to_confirm = Q(status=Payment.Status.PENDING, off_session=True) & ~Q(action_url="")
    rows = list(live.filter(Q(pk__in=recent) | to_confirm).order_by(*order))
    return {
        "recent_payments": rows[:5],
        "payments_to_confirm": [
            p for p in rows if p.status == Payment.Status.PENDING and p.off_session and p.action_url
        ][:3],
    }
