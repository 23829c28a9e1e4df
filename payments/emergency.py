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


def _debt_postings(*, landlord_id: object, tenancy_id: object) -> Q:
    """Postings between the tenancy's account and its landlord's advance account."""
    advance = Account.Kind.ADVANCE
    return Q(landlord_id=landlord_id) & (
        Q(debit__kind=advance, credit__tenancy_id=tenancy_id)
        | Q(credit__kind=advance, debit__tenancy_id=tenancy_id)
    )


# Lent (advance -> tenant) counts up, repaid (tenant -> advance) counts down.
_LENT_MINUS_REPAID = Sum(
    Case(
        When(debit__kind=Account.Kind.ADVANCE, then=F("amount_minor")),
        default=-F("amount_minor"),
    )
)


def emergency_debt_expression() -> Coalesce:
    """``emergency_debt`` as an annotation on a Tenancy queryset, so a page reads it
    with the tenancy in one query."""
    debt = (
        Posting.objects.filter(
            _debt_postings(landlord_id=OuterRef("landlord_id"), tenancy_id=OuterRef("pk"))
        )
        .order_by()
        .values("landlord_id")
        .annotate(debt=_LENT_MINUS_REPAID)
        .values("debt")
    )
    return Coalesce(Subquery(debt), Value(0))


def emergency_debt(*, tenancy: Tenancy) -> int:
    """Emergency credit advanced to the tenancy and not yet repaid, in minor units."""
    debt = Posting.objects.filter(
        _debt_postings(landlord_id=tenancy.landlord_id, tenancy_id=tenancy.pk)
    ).aggregate(debt=_LENT_MINUS_REPAID)["debt"]
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
