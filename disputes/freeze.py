"""The disconnection freeze hook (``SUBMETER["DISCONNECTION_FREEZE_HOOKS"]``).

While any dispute of a tenancy is not final, automatic disconnection of its
unit is frozen; ``supply.cutoff.protections_for`` asks this on every
evaluation, and the dispute services re-evaluate the unit whenever a
dispute opens or closes.
"""

from __future__ import annotations

from landlord.models import Tenancy

from .models import Dispute


def open_dispute_freeze(*, tenancy: Tenancy) -> str:
    pk = (
        Dispute.objects.unresolved()
        .filter(tenancy_id=tenancy.pk)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    return "" if pk is None else f"dispute #{pk} open"
