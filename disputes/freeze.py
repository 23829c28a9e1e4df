"""The disconnection freeze hook (``SUBMETER["DISCONNECTION_FREEZE_HOOKS"]``).

Automatic disconnection of a tenancy's unit is frozen while

* any tenant dispute of the tenancy is not final, or
* a chargeback (``payments.Dispute``) on one of its payments has had its funds
  withdrawn and is not closed yet: the withdrawal put the tenant in debt, and
  whether that debt is real is what the bank is deciding, so the supply waits
  for the outcome instead of being cut for it.

``supply.cutoff.protections_for`` asks this on every evaluation (one query
for both). The dispute services, and the chargeback webhooks
(``payments.services``), re-evaluate the unit whenever a case opens or
closes, so the freeze applies and lifts at once.
"""

from __future__ import annotations

from django.db.models import BigIntegerField, CharField, QuerySet, Value

from config.prepared import Param, Prepared
from landlord.models import Tenancy
from payments.models import Dispute as Chargeback

from .models import Dispute

DISPUTE, CHARGEBACK = "dispute", "chargeback"


def _open_cases() -> QuerySet[Dispute, tuple[int, str]]:
    tenancy_id = Param("tenancy_id", BigIntegerField())
    disputes = (
        Dispute.objects.unresolved()
        .filter(tenancy_id=tenancy_id)
        .order_by()
        .annotate(kind=Value(DISPUTE, output_field=CharField()))
        .values_list("pk", "kind")
    )
    chargebacks = (
        Chargeback.objects.filter(payment__tenancy_id=tenancy_id, funds_withdrawn=True)
        .exclude(status__in=Chargeback.FINAL)
        .order_by()
        .annotate(kind=Value(CHARGEBACK, output_field=CharField()))
        .values_list("pk", "kind")
    )
    return disputes.union(chargebacks, all=True).order_by()


# Asked on every evaluation and tenant page: compiled once (config.prepared).
_OPEN_CASES: Prepared[tuple[int, str]] = Prepared(_open_cases)


def open_dispute_freeze(*, tenancy: Tenancy) -> str:
    rows = sorted(_OPEN_CASES.run(tenancy_id=tenancy.pk), key=lambda row: (row[1] != DISPUTE, row))
    if not rows:
        return ""
    pk, what = rows[0]
    if what == DISPUTE:
        return f"dispute #{pk} open"
    return f"chargeback #{pk} open, funds withdrawn"
