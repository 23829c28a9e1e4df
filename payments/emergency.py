"""Emergency credit on prepaid units: advanced once when credit is low, repaid
from later top-ups (at most ``DEBT_RECOVERY_PERCENT`` of each)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce

from config.live import unit_changed
from landlord.audit import audit_record
from landlord.models import Tenancy
from supply.decision import supply_evaluate

from .errors import BillingError
from .ledger import Leg, landlord_account, ledger_post, tenant_account
from .models import Account, LedgerTransaction, Posting


def _debt_postings(*, landlord_id: int | OuterRef, tenancy_id: int | OuterRef) -> tuple[Q, Sum]:
    """Postings between the tenancy's account and its landlord's advance account,
    and their sum: lent (advance -> tenant) counts up, repaid (tenant -> advance) down.

    Matched on the posting's own ``debit_id``/``credit_id`` against the accounts'
    ids (one-row subqueries through the unique ``tenancy_id`` and the landlord's
    accounts), so the database finds them through those columns' indexes among
    the tenancy's own postings, never by reading the landlord's (or every advance
    account's) posting history, and joins no account to each posting.
    """
    tenant = Subquery(Account.objects.filter(tenancy_id=tenancy_id).values("pk")[:1])
    advance = Account.objects.filter(landlord_id=landlord_id, kind=Account.Kind.ADVANCE).values(
        "pk"
    )
    between = Q(credit_id=tenant, debit_id__in=advance) | Q(debit_id=tenant, credit_id__in=advance)
    lent_minus_repaid = Sum(
        Case(When(credit_id=tenant, then=F("amount_minor")), default=-F("amount_minor"))
    )
    return between, lent_minus_repaid


def emergency_debt_expression() -> Coalesce:
    """``emergency_debt`` as an annotation on a Tenancy queryset, so a page reads it
    with the tenancy in one query."""
    between, lent_minus_repaid = _debt_postings(
        landlord_id=OuterRef(OuterRef("landlord_id")), tenancy_id=OuterRef(OuterRef("pk"))
    )
    debt = (
        Posting.objects.filter(between)
        .order_by()
        .values("landlord_id")
        .annotate(debt=lent_minus_repaid)
        .values("debt")
    )
    return Coalesce(Subquery(debt), Value(0))


def emergency_debt(*, tenancy: Tenancy) -> int:
    """Emergency credit advanced to the tenancy and not yet repaid, in minor units."""
    between, lent_minus_repaid = _debt_postings(
        landlord_id=tenancy.landlord_id, tenancy_id=tenancy.pk
    )
    debt = Posting.objects.filter(between).aggregate(debt=lent_minus_repaid)["debt"]
    return int(debt or 0)


def emergency_credit_available(
    *, tenancy: Tenancy, balance_minor: int | None = None, debt_minor: int | None = None
) -> bool:
    """Whether the tenant may take emergency credit now (``debt_minor``: the debt, if
    already read)."""
    unit = tenancy.unit
    if not unit.is_prepaid or unit.emergency_credit_minor <= 0:
        return False
    if debt_minor is None:
        debt_minor = emergency_debt(tenancy=tenancy)
    if debt_minor > 0:
        return False
    if balance_minor is None:
        balance_minor = tenant_account(tenancy=tenancy).balance_minor
    return balance_minor < unit.low_credit_threshold_minor


@transaction.atomic
def emergency_credit_take(*, tenancy: Tenancy, actor_id: int | None) -> LedgerTransaction:
    """Advance the unit's emergency credit once; it is repaid from later top-ups.

    The tenant may then use energy until the advance is spent, i.e. go
    negative by the allowance in terms of their own money. Allowed only on a
    prepaid unit that offers it, below the low-credit threshold, and when no
    earlier advance is still owed.
    """
    tenancy = Tenancy.objects.select_related("unit__property", "landlord").get(pk=tenancy.pk)
    if not tenancy.is_current():
        raise BillingError("This tenancy has ended.")
    unit = tenancy.unit
    tenant = tenant_account(tenancy=tenancy)
    # The tenant account's row lock serialises two presses of the button.
    Account.objects.select_for_update().filter(pk=tenant.pk).first()
    if not unit.is_prepaid or unit.emergency_credit_minor <= 0:
        raise BillingError("Emergency credit is not offered for this unit.")
    if emergency_debt(tenancy=tenancy) > 0:
        raise BillingError(
            "Emergency credit was already taken; it is repaid from your next top-ups."
        )
    balance = Account.objects.get(pk=tenant.pk).balance_minor
    if balance >= unit.low_credit_threshold_minor:
        raise BillingError("Emergency credit is available once your credit is low.")
    advance = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.ADVANCE, currency=tenant.currency
    )
    taken = LedgerTransaction.objects.filter(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.EMERGENCY,
        postings__credit=tenant,
    ).count()
    txn, _ = ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.EMERGENCY,
        idempotency_key=f"emergency:{tenancy.pk}:{taken + 1}",
        legs=[Leg(debit=advance, credit=tenant, amount_minor=unit.emergency_credit_minor)],
        memo="Emergency credit",
        created_by_id=actor_id,
    )
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="emergency_credit.taken",
        tenancy=tenancy,
        data={"amount_minor": unit.emergency_credit_minor},
    )
    supply_evaluate(unit=unit, reason="emergency credit")
    unit_changed(unit)
    return txn


def recovery_percent() -> int:
    return int(settings.SUBMETER["DEBT_RECOVERY_PERCENT"])


def debt_recovery_share(*, debt_minor: int, topup_minor: int) -> int:
    """The part of a top-up that repays emergency credit (the rest is credit): at most
    DEBT_RECOVERY_PERCENT of it, never more than is owed. Pages preview a top-up with it."""
    if debt_minor <= 0:
        return 0
    return max(min(debt_minor, topup_minor * recovery_percent() // 100), 0)


def debt_recover(*, tenancy: Tenancy, topup_minor: int, idempotency_key: str) -> int:
    """Repay emergency credit from a top-up: at most DEBT_RECOVERY_PERCENT of it."""
    debt = emergency_debt(tenancy=tenancy)
    if debt <= 0:
        return 0
    share = recovery_percent()
    amount = debt_recovery_share(debt_minor=debt, topup_minor=topup_minor)
    if amount <= 0:
        return 0
    tenant = tenant_account(tenancy=tenancy)
    advance = landlord_account(
        landlord=tenancy.landlord, kind=Account.Kind.ADVANCE, currency=tenant.currency
    )
    _, created = ledger_post(
        landlord_id=tenancy.landlord_id,
        kind=LedgerTransaction.Kind.RECOVERY,
        idempotency_key=idempotency_key,
        legs=[Leg(debit=tenant, credit=advance, amount_minor=amount)],
        memo=f"Emergency credit repaid ({share}% of the top-up)",
    )
    return amount if created else 0
