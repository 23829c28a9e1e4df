"""Tenants come and go, and units change how they are billed: invitations,
move-in and move-out with their register readings, and the switch between
prepaid and postpaid.

An invitation is a row (so it can be used once: ``used_at``) named by a
signed, expiring token in the emailed link (``django.core.signing`` with a
``max_age``): a tampered token does not verify, an old one has expired, a
used one finds its row used, and in each case nothing is created.

Money stays in the ledger: a move-out or a switch posts what is still
pending and, where the unit is postpaid, issues the closing bill
(``invoice_issue(final=True)``); a deposit held pays what is owed then and
the rest is refunded (``payments.deposits.deposit_settle``); the balance that
remains is the tenant's (credit owed back, or debt), shown on the final
statement, never moved here.
"""

from __future__ import annotations

import contextlib
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from config.live import unit_changed
from meters.devices import meter_baseline_record
from meters.models import Meter
from payments import rating
from payments.billing import (
    cycle_bounds,
    invoice_issue,
    postpaid_start,
    standing_charges_post,
    usage_settle_meter,
)
from payments.deposits import DepositError, deposit_request, deposit_settle
from payments.errors import BillingError
from payments.ledger import tenant_account
from payments.models import Invoice
from supply.decision import supply_evaluate

from .audit import audit_record
from .hardship import plan_requests_close
from .models import Invitation, Tenancy, Unit

INVITATION_SALT = "landlord.invitation"
INVITATION_MAX_AGE = timedelta(days=7)


class PeopleError(Exception):
    """The action cannot be done; the message is for the person who asked."""


class InvitationInvalid(PeopleError):
    """The invitation link is tampered with, expired or already used."""


def _overlapping(*, unit_id: int, start: date) -> Tenancy | None:
    """A tenancy of the unit still running on or after ``start``."""
    return (
        Tenancy.objects.filter(unit_id=unit_id)
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=start))
        .order_by("start_date")
        .first()
    )


# --- Invitations ------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"invitation": invitation.pk}, salt=INVITATION_SALT)


@transaction.atomic
def invitation_create(
    *, unit: Unit, email: str, move_in: date, site_url: str, actor_id: int | None
) -> Invitation:
    """Invite a tenant by email to ``unit`` from ``move_in``; the link goes out on commit."""
    email = email.strip().lower()
    unit = Unit.objects.select_for_update(of=("self",)).select_related("property").get(pk=unit.pk)
    if move_in < timezone.localdate() - timedelta(days=31):
        raise PeopleError("The move-in date is more than a month ago.")
    other = _overlapping(unit_id=unit.pk, start=move_in)
    if other is not None:
        raise PeopleError(
            f"{unit.name} is let to {other.tenant} on {move_in:%d %b %Y}. Record their "
            "move-out first, or choose a move-in date after it."
        )
    invitation = Invitation.objects.create(
        landlord_id=unit.landlord_id,
        unit=unit,
        email=email,
        move_in=move_in,
        created_by_id=actor_id,
    )
    link = site_url.rstrip("/") + reverse("invite", kwargs={"token": invitation_token(invitation)})
    days = INVITATION_MAX_AGE.days
    body = (
        f"You are invited to see and pay for the electricity of {unit.property.name}, "
        f"{unit.name}, from {move_in:%d %B %Y}.\n\n"
        f"Open this link within {days} days to set your password:\n{link}\n\n"
        "The link works once. If you did not expect this email, ignore it."
    )
    # On commit, and a mail server that fails does not undo the invitation: the
    # landlord sees it pending and can invite again.
    transaction.on_commit(
        lambda: send_mail(
            subject=f"Your electricity account for {unit.name}",
            message=body,
            from_email=None,
            recipient_list=[email],
        ),
        robust=True,
    )
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="tenancy.invited",
        unit=unit,
        data={"invitation": invitation.pk, "email": email, "move_in": move_in.isoformat()},
    )
    return invitation


def invitation_token_pk(*, token: str, salt: str, key: str, ask: str) -> int | None:
    """The row id a signed invitation link names, or a clear refusal when the link
    is expired or not one of ours; ``ask`` says whom to ask for a new one."""
    try:
        data = signing.loads(token, salt=salt, max_age=INVITATION_MAX_AGE)
    except signing.SignatureExpired:
        raise InvitationInvalid(
            f"This invitation has expired. Ask {ask} to send a new one."
        ) from None
    except signing.BadSignature:
        raise InvitationInvalid(
            "This link is not a valid invitation. Check that you copied all of it."
        ) from None
    pk = data.get(key) if isinstance(data, dict) else None
    return pk if isinstance(pk, int) else None


def invitation_check(*, token: str) -> Invitation:
    """The invitation a link names, if it may still be accepted."""
    pk = invitation_token_pk(
        token=token, salt=INVITATION_SALT, key="invitation", ask="your landlord"
    )
    invitation = (
        Invitation.objects.select_related("unit__property").filter(pk=pk).first()
        if pk is not None
        else None
    )
    if invitation is None:
        raise InvitationInvalid("This invitation no longer exists. Ask your landlord.")
    if invitation.used_at is not None:
        raise InvitationInvalid(
            "This invitation was already used. Sign in with the password you chose."
        )
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, password: str) -> Tenancy:
    """The invited tenant sets a password: their user and their tenancy from the
    move-in date. Works once; nothing is created when it is refused."""
    invitation = invitation_check(token=token)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.used_at is not None:
        raise InvitationInvalid("This invitation was already used.")
    user_model = get_user_model()
    if user_model.objects.filter(
        Q(username__iexact=invitation.email) | Q(email__iexact=invitation.email)
    ).exists():
        raise PeopleError(
            "An account with this email address exists already. Ask your landlord to "
            "add the tenancy to it."
        )
    try:
        validate_password(
            password, user=user_model(username=invitation.email, email=invitation.email)
        )
    except ValidationError as exc:
        raise PeopleError(" ".join(exc.messages)) from None
    other = _overlapping(unit_id=invitation.unit_id, start=invitation.move_in)
    if other is not None:
        raise PeopleError(
            "The unit is let to someone else on your move-in date. Ask your landlord."
        )
    user = user_model.objects.create_user(
        username=invitation.email, email=invitation.email, password=password
    )
    tenancy = Tenancy.objects.create(
        landlord_id=invitation.landlord_id,
        unit_id=invitation.unit_id,
        tenant=user,
        start_date=invitation.move_in,
    )
    invitation.used_at = timezone.now()
    invitation.tenancy = tenancy
    invitation.save(update_fields=["used_at", "tenancy"])
    audit_record(
        landlord_id=invitation.landlord_id,
        actor_id=user.pk,
        action="tenancy.invitation_accepted",
        tenancy=tenancy,
        data={"invitation": invitation.pk, "tenancy": tenancy.pk},
    )
    unit_changed(invitation.unit)
    return tenancy


# --- Move-in and move-out -----------------------------------------------------------


@dataclass(frozen=True)
class MoveIn:
    tenancy: Tenancy
    baseline: bool  # the opening reading became the meter's first reading
    latest_wh: int | None  # else the meter's latest reading, for comparison
    latest_at: datetime | None


def _installed_meter(unit: Unit) -> Meter | None:
    return Meter.objects.installed().filter(unit_id=unit.pk).order_by("pk").first()


@transaction.atomic
def tenancy_move_in(
    *,
    tenancy: Tenancy,
    opening_wh: int,
    actor_id: int | None,
    deposit_minor: int | None = None,
    now: datetime | None = None,
) -> MoveIn:
    """Record the register at move-in. A meter with no reading yet takes it as its
    billing baseline; otherwise the meter's own latest reading stands (shown to compare).
    ``deposit_minor``: ask the tenant for a deposit (``payments.deposits``)."""
    now = now or timezone.now()
    if opening_wh < 0:
        raise PeopleError("A register reading cannot be negative.")
    tenancy = Tenancy.objects.select_for_update().get(pk=tenancy.pk)
    if tenancy.end_date is not None and tenancy.end_date < timezone.localdate(now):
        raise PeopleError("This tenancy has ended.")
    unit = Unit.objects.select_related("property").get(pk=tenancy.unit_id)
    meter = _installed_meter(unit)
    baseline = False
    if meter is not None:
        baseline = meter_baseline_record(
            meter=meter, register_wh=opening_wh, at=now, actor_id=actor_id
        )
        meter.refresh_from_db()
    tenancy.opening_wh = opening_wh
    tenancy.save(update_fields=["opening_wh"])
    if deposit_minor:
        try:
            deposit_request(tenancy=tenancy, amount_minor=deposit_minor, actor_id=actor_id)
        except DepositError as exc:
            raise PeopleError(str(exc)) from None
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="tenancy.moved_in",
        tenancy=tenancy,
        data={"tenancy": tenancy.pk, "opening_wh": opening_wh, "baseline": baseline},
    )
    supply_evaluate(unit=unit, reason="tenant moved in", now=now)
    unit_changed(unit)
    return MoveIn(
        tenancy=tenancy,
        baseline=baseline,
        latest_wh=None if meter is None else meter.last_register_wh,
        latest_at=None if meter is None else meter.last_reading_at,
    )


def _settle(*, unit: Unit, now: datetime) -> None:
    """Post every meter's pending usage, so the balance is the final one."""
    for meter_id in unit.meters.order_by("pk").values_list("pk", flat=True):
        usage_settle_meter(meter_id=meter_id, now=now, force=True)


def _closing_bill(*, tenancy: Tenancy, last_day: date, now: datetime) -> Invoice:
    """The bill for the billing cycle up to ``last_day``, after the previous cycle's if
    it is missing."""
    cycle_day = tenancy.unit.property.bill_cycle_day
    month_start, _ = cycle_bounds(last_day, cycle_day)
    previous_start, _ = cycle_bounds(month_start - timedelta(days=1), cycle_day)
    if tenancy.start_date < month_start:
        # Already billed, or unpriceable: the closing bill still goes out.
        with contextlib.suppress(BillingError, rating.Unpriceable):
            invoice_issue(tenancy=tenancy, period_start=previous_start, now=now)
    try:
        return invoice_issue(tenancy=tenancy, period_start=month_start, now=now, final=True)
    except rating.Unpriceable as exc:
        raise PeopleError(f"The closing bill cannot be priced: {exc}") from None
    except BillingError as exc:
        raise PeopleError(str(exc)) from None


@transaction.atomic
def tenancy_move_out(
    *,
    tenancy: Tenancy,
    end_date: date,
    closing_wh: int,
    actor_id: int | None,
    now: datetime | None = None,
) -> Tenancy:
    """End a tenancy on ``end_date`` (its last day) with the closing register reading:
    post what is pending and the standing charges through that day, and for a
    postpaid unit issue the closing bill. What remains on the tenant's account
    (credit owed back, or debt) stays there for the final statement; the tenant
    keeps their history."""
    now = now or timezone.now()
    tenancy = Tenancy.objects.select_for_update().get(pk=tenancy.pk)
    unit = Unit.objects.select_related("property", "landlord").get(pk=tenancy.unit_id)
    today = timezone.localdate(now)
    if tenancy.end_date is not None and tenancy.end_date < today:
        raise PeopleError(f"This tenancy ended on {tenancy.end_date:%d %b %Y} already.")
    if end_date < tenancy.start_date:
        raise PeopleError(
            f"The move-out date is before the move-in date ({tenancy.start_date:%d %b %Y})."
        )
    if end_date > today:
        raise PeopleError("Record a move-out on the day or after it: choose today or earlier.")
    if closing_wh < 0:
        raise PeopleError("A register reading cannot be negative.")
    if tenancy.opening_wh is not None and closing_wh < tenancy.opening_wh:
        raise PeopleError(
            f"The closing reading ({closing_wh} Wh) is below the opening reading "
            f"({tenancy.opening_wh} Wh)."
        )
    meter = _installed_meter(unit)
    latest = None if meter is None else meter.last_register_wh
    if (
        meter is not None
        and latest is not None
        and closing_wh < latest
        and (meter.last_reading_at is None or timezone.localdate(meter.last_reading_at) <= end_date)
    ):
        raise PeopleError(
            f"The closing reading ({closing_wh} Wh) is below the meter's latest reading "
            f"({meter.last_register_wh} Wh)."
        )
    tenancy.end_date = end_date
    tenancy.closing_wh = closing_wh
    tenancy.save(update_fields=["end_date", "closing_wh"])
    plan_requests_close(tenancy=tenancy, actor_id=actor_id, now=now)
    _settle(unit=unit, now=now)
    standing_charges_post(tenancy=tenancy, through=end_date)
    invoice = None
    if not unit.is_prepaid:
        invoice = _closing_bill(tenancy=tenancy, last_day=end_date, now=now)
    # The deposit held pays what is still owed; the rest goes back to the tenant.
    deposit = deposit_settle(tenancy=tenancy, actor_id=actor_id, now=now)
    balance = tenant_account(tenancy=tenancy).balance_minor
    audit_record(
        landlord_id=tenancy.landlord_id,
        actor_id=actor_id,
        action="tenancy.moved_out",
        tenancy=tenancy,
        data={
            "tenancy": tenancy.pk,
            "end_date": end_date.isoformat(),
            "closing_wh": closing_wh,
            "balance_minor": balance,
            "invoice": invoice.pk if invoice else None,
            "deposit_applied_minor": deposit.applied_minor if deposit else 0,
        },
    )
    supply_evaluate(unit=unit, reason="tenant moved out", now=now)
    unit_changed(unit)
    return tenancy


@dataclass(frozen=True)
class FinalStatement:
    tenancy: Tenancy
    currency: str
    balance_minor: int
    invoices: list[Invoice]

    @property
    def owed_to_tenant_minor(self) -> int:
        return max(self.balance_minor, 0)

    @property
    def owed_by_tenant_minor(self) -> int:
        return max(-self.balance_minor, 0)


def final_statement(*, tenancy: Tenancy) -> FinalStatement:
    """Read-only: what the ledger says the tenant and the landlord owe each other."""
    return FinalStatement(
        tenancy=tenancy,
        currency=tenancy.unit.property.currency,
        balance_minor=tenant_account(tenancy=tenancy).balance_minor,
        invoices=list(Invoice.objects.filter(tenancy=tenancy).order_by("-period_start")),
    )


# --- Prepaid and postpaid ------------------------------------------------------------


@dataclass(frozen=True)
class ModeSwitch:
    unit: Unit
    tenancy: Tenancy | None
    balance_minor: int | None
    invoice: Invoice | None


@transaction.atomic
def unit_billing_mode_switch(
    *,
    unit: Unit,
    mode: str,
    confirmed: bool,
    actor_id: int | None,
    now: datetime | None = None,
) -> ModeSwitch:
    """Switch a unit between prepaid and postpaid, now, with a clean cut-over.

    Pending usage is posted first. To postpaid: the tenant's balance stays on
    their account; bills start at the switch, and credit left pays them (a debt
    left is paid first by later payments: ``payments.allocation``). To prepaid: the open month is
    billed (the closing bill) and an unpaid amount stays as debt, so the
    prepaid supply rules (notice, cut-off) apply at once; hence ``confirmed``.
    """
    now = now or timezone.now()
    if mode not in Unit.BillingMode.values:
        raise PeopleError("Choose prepaid or postpaid.")
    unit = (
        Unit.objects.select_for_update(of=("self",))
        .select_related("property", "landlord", "tariff")
        .get(pk=unit.pk)
    )
    if unit.billing_mode == mode:
        raise PeopleError(f"{unit.name} is {unit.get_billing_mode_display().lower()} already.")
    if mode == Unit.BillingMode.PREPAID and not confirmed:
        raise PeopleError(
            "Confirm the switch: any unpaid amount becomes prepaid debt, and the supply "
            "rules for prepaid units apply to it."
        )
    # The unit's own day: the property's time zone, as its bills and charges use.
    today = timezone.localdate(now, zoneinfo.ZoneInfo(unit.property.timezone))
    tenancy = Tenancy.objects.active(today).filter(unit_id=unit.pk).first()
    _settle(unit=unit, now=now)
    invoice = None
    if tenancy is not None:
        standing_charges_post(tenancy=tenancy, through=today)
        if mode == Unit.BillingMode.PREPAID:
            invoice = _closing_bill(tenancy=tenancy, last_day=today, now=now)
        else:
            # Bills start here; the balance left now is carried to them.
            postpaid_start(tenancy=tenancy, now=now)
    previous = unit.billing_mode
    unit.billing_mode = mode
    unit.save(update_fields=["billing_mode"])
    balance = None if tenancy is None else tenant_account(tenancy=tenancy).balance_minor
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="unit.billing_mode_switched",
        unit=unit,
        data={
            "from": previous,
            "to": mode,
            "tenancy": tenancy.pk if tenancy else None,
            "balance_minor": balance,
            "invoice": invoice.pk if invoice else None,
        },
    )
    supply_evaluate(unit=unit, reason=f"switched to {mode}", now=now)
    unit_changed(unit)
    return ModeSwitch(unit=unit, tenancy=tenancy, balance_minor=balance, invoice=invoice)
