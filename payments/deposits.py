"""Deposits: asked of a tenant, held apart, applied at move-out, the rest returned.

A landlord asks for a deposit when moving a tenant in, or later
(:func:`deposit_request`). The tenant pays it through the payment provider
like any payment (``payments.services.payment_create`` with purpose
``deposit``), and the provider's event credits it, once, to the tenancy's own
**deposit account** (``Account.Kind.DEPOSIT``), never to the tenant's
balance: a deposit is not credit to spend, pays no bill while it is held
(``payments.allocation`` leaves it out until the move-out) and changes nothing about the supply.

At move-out (:func:`deposit_settle`, called by ``landlord.people.tenancy_move_out``
after the closing bill) what is held pays what the tenant still owes on the
final statement, and no more: one ledger transfer, deposit account → tenant
account, which from then on counts as a payment of the bills
(``payments.allocation``: the deposit payments pay them, oldest first, up to
what was applied), so the closing bill shows paid. The rest is refunded through the provider, newest deposit payment
first; its ledger movement (deposit account → clearing) follows the
provider's refund event like every refund. What cannot be refunded that way
(no provider, a refund that failed) stays in the deposit account and is shown
as owed back to the tenant; :func:`deposit_refund_rest` asks again.

Refunds and chargebacks of a deposit payment take the money from what is held
(``payments.services._reversals_settle``), and from the tenant's balance only
for what the move-out already applied; a failed refund or reinstated funds put
it back where it came from. So a deposit account never holds less than
nothing (``ledger_verify`` checks it, and that deposits move only between
clearing and their own tenancy's balance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import stripe
from django.db import transaction
from django.utils import timezone

from config.live import unit_changed_notify
from landlord.audit import audit_record
from landlord.models import Tenancy

from .allocation import bills_allocate, deposit_applied_key
from .ledger import Leg, accounts_lock, deposit_account, ledger_post, tenant_account
from .models import Deposit, LedgerTransaction, Payment, Refund
from .providers import get_provider
from .services import (
    PaymentError,
    deposit_pending_refunds_minor,
    deposit_to_pay_minor,
    refund_create,
    refundable_minor,
)

logger = logging.getLogger(__name__)

# Far above any deposit, below what an integer column and a form can carry.
DEPOSIT_MAX_MINOR = 10_000_000

REFUND_REASON = "Deposit returned at move-out"


class DepositError(Exception):
    """The deposit action cannot be done; the message is for the person who asked."""


@transaction.atomic
def deposit_request(*, tenancy: Tenancy, amount_minor: int, actor_id: int | None) -> Deposit:
    """Ask the tenant for a deposit of ``amount_minor`` (or change what is asked),
    while the tenancy runs and before its move-out settled it."""
    tenancy = (
        Tenancy.objects.select_for_update().select_related("unit__property").get(pk=tenancy.pk)
    )
    if tenancy.end_date is not None and tenancy.end_date < timezone.localdate():
        raise DepositError("This tenancy has ended: no deposit can be asked for now.")
    if amount_minor <= 0 or amount_minor > DEPOSIT_MAX_MINOR:
        raise DepositError(f"Choose a deposit between 0.01 and {DEPOSIT_MAX_MINOR / 100:.2f}.")
    held = deposit_account(tenancy=tenancy).balance_minor
    if amount_minor < held:
        raise DepositError(
            f"{held / 100:.2f} is held already: ask for at least that, or refund part of "
            "the deposit payment first."
        )
    deposit = Deposit.objects.select_for_update().filter(tenancy_id=tenancy.pk).first()
    if deposit is not None and deposit.settled_at is not None:
        raise DepositError("The deposit was settled at the move-out.")
    previous = None if deposit is None else deposit.amount_minor
    if deposit is None:
        deposit = Deposit.objects.create(
            landlord_id=tenancy.landlord_id,
            tenancy=tenancy,
            currency=tenancy.unit.property.currency,
            amount_minor=amount_minor,
            requested_by_id=actor_id,
        )
    else:
        deposit.amount_minor = amount_minor
        deposit.requested_at = timezone.now()
        deposit.requested_by_id = actor_id
        deposit.save(update_fields=["amount_minor", "requested_at", "requested_by"])
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="deposit.requested",
        tenancy=tenancy,
        data={"amount_minor": amount_minor, "previous_minor": previous},
    )
    unit_changed_notify(
        landlord_id=tenancy.landlord_id, unit_id=tenancy.unit_id, tenancy_ids=[tenancy.pk]
    )
    return deposit


def _refund_start_on_commit(refund: Refund) -> None:
    def start() -> None:
        provider = get_provider()
        if provider is None:
            return
        try:
            provider.refund_start(refund=refund)
        except stripe.StripeError:
            # The refund stays pending without a provider reference, on both pages.
            logger.exception("deposit refund %s could not be sent to the provider", refund.uuid)

    transaction.on_commit(start, robust=True)


def _refund_held(*, tenancy: Tenancy, actor_id: int | None) -> int:
    """Ask the provider to refund what is held and not already on its way back,
    from the newest deposit payment first. Returns the amount asked."""
    held = deposit_account(tenancy=tenancy).balance_minor
    rest = held - deposit_pending_refunds_minor(tenancy_id=tenancy.pk)
    provider = get_provider()
    if rest <= 0 or provider is None:
        return 0
    asked = 0
    payments = Payment.objects.filter(
        tenancy_id=tenancy.pk,
        purpose=Payment.Purpose.DEPOSIT,
        status=Payment.Status.SUCCEEDED,
        provider=provider.name,
    ).order_by("-pk")
    for payment in payments:
        amount = min(refundable_minor(payment=payment), rest - asked)
        if amount <= 0:
            continue
        try:
            refund = refund_create(
                payment=payment, amount_minor=amount, reason=REFUND_REASON, created_by_id=actor_id
            )
        except PaymentError:
            continue
        _refund_start_on_commit(refund)
        asked += amount
        if asked >= rest:
            break
    return asked


@transaction.atomic
def deposit_settle(
    *, tenancy: Tenancy, actor_id: int | None, now: datetime | None = None
) -> Deposit | None:
    """At move-out, after the closing bill: what is held pays the tenant's debt (up to
    it), and the rest is refunded through the provider. Once per tenancy."""
    now = now or timezone.now()
    deposit = Deposit.objects.select_for_update().filter(tenancy_id=tenancy.pk).first()
    if deposit is None or deposit.settled_at is not None:
        return deposit
    tenancy = Tenancy.objects.select_related("unit__property", "landlord").get(pk=tenancy.pk)
    held_account = deposit_account(tenancy=tenancy)
    tenant = tenant_account(tenancy=tenancy)
    locked = accounts_lock(account_ids=[held_account.pk, tenant.pk])
    held = locked[held_account.pk].balance_minor - deposit_pending_refunds_minor(
        tenancy_id=tenancy.pk
    )
    debt = max(-locked[tenant.pk].balance_minor, 0)
    applied = min(max(held, 0), debt)
    if applied:
        ledger_post(
            landlord_id=tenancy.landlord_id,
            kind=LedgerTransaction.Kind.DEPOSIT,
            idempotency_key=deposit_applied_key(tenancy_id=tenancy.pk),
            legs=[Leg(debit=held_account, credit=tenant, amount_minor=applied)],
            memo="Deposit applied to what was owed at move-out",
            created_by_id=actor_id,
        )
    deposit.applied_minor = applied
    deposit.refund_asked_minor = _refund_held(tenancy=tenancy, actor_id=actor_id)
    deposit.settled_at = now
    deposit.save(update_fields=["applied_minor", "refund_asked_minor", "settled_at"])
    if applied:
        # What the deposit paid is a payment of the closing bill (payments.allocation).
        bills_allocate(tenancy=tenancy)
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="deposit.settled",
        tenancy=tenancy,
        data={
            "held_minor": max(held, 0),
            "debt_minor": debt,
            "applied_minor": applied,
            "refund_asked_minor": deposit.refund_asked_minor,
        },
    )
    return deposit


@transaction.atomic
def deposit_refund_rest(*, tenancy: Tenancy, actor_id: int | None) -> int:
    """After the move-out, ask again to refund what is still held (a refund that
    failed, or none was possible then). Returns the amount asked."""
    deposit = Deposit.objects.select_for_update().filter(tenancy_id=tenancy.pk).first()
    if deposit is None or deposit.settled_at is None:
        raise DepositError("The deposit is returned at the move-out.")
    tenancy = Tenancy.objects.select_related("unit__property", "landlord").get(pk=tenancy.pk)
    if get_provider() is None:
        raise DepositError("Online payments are not available: return the deposit yourself.")
    asked = _refund_held(tenancy=tenancy, actor_id=actor_id)
    if asked <= 0:
        raise DepositError("Nothing held can be refunded through the payment provider.")
    deposit.refund_asked_minor += asked
    deposit.save(update_fields=["refund_asked_minor"])
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="deposit.refund_requested",
        tenancy=tenancy,
        data={"amount_minor": asked},
    )
    unit_changed_notify(
        landlord_id=tenancy.landlord_id, unit_id=tenancy.unit_id, tenancy_ids=[tenancy.pk]
    )
    return asked


# --- Reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class DepositStatus:
    """A tenancy's deposit as both sides see it (amounts in minor units)."""

    tenancy: Tenancy
    currency: str
    asked_minor: int
    held_minor: int
    to_pay_minor: int
    settled_at: datetime | None
    applied_minor: int
    refunding_minor: int  # asked back, not yet through
    refunded_minor: int  # returned through the provider
    refunds: list[Refund]
    payments: list[Payment]

    @property
    def owed_back_minor(self) -> int:
        """After the move-out: held, and not on its way back: the landlord owes it."""
        if self.settled_at is None:
            return 0
        return max(self.held_minor - self.refunding_minor, 0)


def deposit_status(*, tenancy: Tenancy) -> DepositStatus | None:
    """The tenancy's deposit, or None when none was asked for."""
    deposit = Deposit.objects.filter(tenancy_id=tenancy.pk).first()
    if deposit is None:
        # A deposit is paid only once asked for (payment_create): nothing to show.
        return None
    payments = list(
        Payment.objects.filter(tenancy_id=tenancy.pk, purpose=Payment.Purpose.DEPOSIT).order_by(
            "pk"
        )
    )
    refunds = list(
        Refund.objects.filter(payment__in=[p.pk for p in payments])
        .select_related("payment")
        .order_by("pk")
    )
    return DepositStatus(
        tenancy=tenancy,
        currency=tenancy.unit.property.currency,
        asked_minor=deposit.amount_minor,
        held_minor=deposit_account(tenancy=tenancy).balance_minor,
        to_pay_minor=deposit_to_pay_minor(tenancy=tenancy),
        settled_at=deposit.settled_at,
        applied_minor=deposit.applied_minor,
        refunding_minor=deposit_pending_refunds_minor(tenancy_id=tenancy.pk),
        refunded_minor=sum(
            r.amount_minor
            for r in refunds
            if r.ledger_transaction_id is not None and r.status != Refund.Status.FAILED
        ),
        refunds=refunds,
        payments=payments,
    )
