"""Tariffs, the ledger and payments.

Ledger shape: a :class:`LedgerTransaction` groups one or more
:class:`Posting` rows, and each posting moves a positive amount from one
account (debit) to another (credit). Every posting is therefore a pair of
equal and opposite entries, so every transaction sums to zero by
construction on every database, not by a check that could be skipped.
Postings and transactions are append-only: database triggers (see the
``0002`` migration) make updates and deletes fail. Corrections are new,
reversing transactions.

An account's balance is (sum of postings crediting it) - (sum of postings
debiting it). The cached ``Account.balance_minor`` is changed only by
``payments.services.ledger_post`` under a row lock, in the same transaction
as the postings; ``manage.py ledger_verify`` proves it equals the sum.

Amounts are integer minor units (pence, cents). Energy is integer Wh.
Exact prices carry fractions of a minor unit as integer sub-units (see
``payments.rating``).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


def new_revision() -> int:
    return secrets.randbits(62)


class TariffManager(models.Manager["Tariff"]):
    def create_flat(
        self,
        *,
        price_per_kwh_minor: Decimal | str,
        standing_charge_per_day_minor: Decimal | str = "0",
        valid_from: date = date(2000, 1, 1),
        **kwargs: Any,
    ) -> Tariff:
        """A tariff with one flat version (the common case, and the demo's)."""
        tariff = super().create(**kwargs)
        version = TariffVersion.objects.create(
            tariff=tariff,
            landlord_id=tariff.landlord_id,
            valid_from=valid_from,
            standing_charge_per_day_minor=Decimal(standing_charge_per_day_minor),
        )
        TariffRate.objects.create(version=version, price_per_kwh_minor=Decimal(price_per_kwh_minor))
        tariff.bump_revision()
        return tariff

    def create(self, **kwargs: Any) -> Tariff:
        """As ``create_flat`` when given a price, so older callers keep working."""
        if "price_per_kwh_minor" in kwargs:
            return self.create_flat(**kwargs)
        return super().create(**kwargs)


class Tariff(models.Model):
    """A named tariff of a landlord. Prices live in its versions.

    Consumption is always priced with the version in force (in the unit's
    property time zone) when it was used; see ``payments.rating``.
    """

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="tariffs"
    )
    name = models.CharField(max_length=100)
    currency = models.CharField(max_length=3, default="GBP")
    # A new random value whenever a version, rate or window changes, so rating
    # can cache a tariff's versions per process (payments.billing.unit_schedule).
    # Random rather than a counter: a reused primary key never matches a stale entry.
    revision = models.BigIntegerField(default=new_revision, editable=False)

    objects = TariffManager()

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    def bump_revision(self) -> None:
        self.revision = new_revision()
        Tariff.objects.filter(pk=self.pk).update(revision=self.revision)


class TariffVersion(models.Model):
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="versions")
    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    valid_from = models.DateField(
        help_text="In force from local midnight of this day (the property's time zone)."
    )
    standing_charge_per_day_minor = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Fixed charge per day in minor units, up to 4 decimals.",
    )
    tax_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal("0"))],
    )
    tax_inclusive = models.BooleanField(
        default=True, help_text="Prices already include the tax (otherwise it is added)."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tariff_id", "valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "valid_from"], name="tariff_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.tariff.name} from {self.valid_from:%Y-%m-%d}"


class TariffRate(models.Model):
    """An energy price for a time-of-use band (blank: any time) from a tier upwards."""

    version = models.ForeignKey(TariffVersion, on_delete=models.CASCADE, related_name="rates")
    band = models.CharField(max_length=30, blank=True, help_text="Blank: any time.")
    tier_from_wh = models.BigIntegerField(
        default=0,
        validators=[MinValueValidator(0)],
        help_text="This price applies once this much energy (Wh) was used in the month.",
    )
    price_per_kwh_minor = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Energy price in minor units (e.g. pence) per kWh, up to 4 decimals.",
    )

    class Meta:
        ordering = ["band", "tier_from_wh"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "band", "tier_from_wh"], name="tariff_rate_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.band or 'any time'} from {self.tier_from_wh} Wh: {self.price_per_kwh_minor}"


class TariffWindow(models.Model):
    """Local hours in which a time-of-use band applies; other hours use the blank band."""

    class Days(models.TextChoices):
        ALL = "all", "Every day"
        WEEKDAYS = "weekdays", "Monday to Friday"
        WEEKENDS = "weekends", "Saturday and Sunday"

    version = models.ForeignKey(TariffVersion, on_delete=models.CASCADE, related_name="windows")
    band = models.CharField(max_length=30)
    days = models.CharField(max_length=10, choices=Days.choices, default=Days.ALL)
    start_hour = models.PositiveSmallIntegerField(validators=[MaxValueValidator(23)])
    end_hour = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(24)]
    )

    class Meta:
        ordering = ["start_hour"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_hour__gt=models.F("start_hour")) & Q(end_hour__lte=24),
                name="tariff_window_hours",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.band}: {self.get_days_display()} {self.start_hour:02d}-{self.end_hour:02d}"


class Account(models.Model):
    class Kind(models.TextChoices):
        TENANT = "tenant", "Tenant balance"
        REVENUE = "revenue", "Landlord energy revenue"
        CLEARING = "clearing", "Payments received (clearing)"
        ADVANCE = "advance", "Emergency credit advanced"
        VACANT = "vacant", "Energy of vacant units (landlord's own)"
        DEPOSIT = "deposit", "Deposit held"

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="accounts"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    currency = models.CharField(max_length=3)
    tenancy = models.OneToOneField(
        "landlord.Tenancy",
        on_delete=models.PROTECT,
        related_name="account",
        null=True,
        blank=True,
    )
    # A deposit held for a tenancy (kind "deposit"): the landlord holds it apart
    # from the tenant's balance until the move-out settles it (payments.deposits).
    deposit_tenancy = models.OneToOneField(
        "landlord.Tenancy",
        on_delete=models.PROTECT,
        related_name="deposit_account",
        null=True,
        blank=True,
    )
    balance_minor = models.BigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="tenant") & Q(tenancy__isnull=False))
                | (~Q(kind="tenant") & Q(tenancy__isnull=True)),
                name="account_tenant_has_tenancy",
            ),
            models.CheckConstraint(
                condition=(Q(kind="deposit") & Q(deposit_tenancy__isnull=False))
                | (~Q(kind="deposit") & Q(deposit_tenancy__isnull=True)),
                name="account_deposit_has_tenancy",
            ),
            models.UniqueConstraint(
                fields=["landlord", "kind", "currency"],
                condition=~Q(kind__in=["tenant", "deposit"]),
                name="account_one_landlord_account_per_kind",
            ),
        ]

    def __str__(self) -> str:
        tenancy_id = self.tenancy_id or self.deposit_tenancy_id
        owner = f"tenancy {tenancy_id}" if tenancy_id else f"landlord {self.landlord_id}"
        return f"{self.get_kind_display()} ({owner}, {self.currency})"


class LedgerTransaction(models.Model):
    class Kind(models.TextChoices):
        USAGE = "usage", "Energy used"
        PAYMENT = "payment", "Payment received"
        ADJUSTMENT = "adjustment", "Adjustment"
        CORRECTION = "correction", "Usage correction (re-rated)"
        STANDING = "standing", "Standing charge"
        EMERGENCY = "emergency", "Emergency credit"
        RECOVERY = "recovery", "Emergency credit repaid"
        REVERSAL = "reversal", "Reversal"
        REFUND = "refund", "Refund"
        CHARGEBACK = "chargeback", "Chargeback"
        LATE_FEE = "late_fee", "Late fee"
        DEPOSIT = "deposit", "Deposit applied"

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="ledger_transactions"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    idempotency_key = models.CharField(max_length=200)
    memo = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    reverses = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversed_by"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["landlord", "idempotency_key"], name="ledger_txn_idempotent"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.idempotency_key})"


class Posting(models.Model):
    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="postings"
    )
    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="postings"
    )
    debit = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="debits")
    credit = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    amount_minor = models.BigIntegerField()
    # Energy behind a usage posting, for explaining a charge line by line.
    energy_wh = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="posting_positive"),
            models.CheckConstraint(
                condition=~Q(debit=models.F("credit")), name="posting_two_accounts"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount_minor} from {self.debit_id} to {self.credit_id}"


class Payment(models.Model):
    """A tenant's payment through a provider. Credits the ledger only once it succeeded."""

    class Purpose(models.TextChoices):
        TOPUP = "topup", "Top-up"
        BILL = "bill", "Bill payment"
        AUTO_TOPUP = "auto_topup", "Automatic top-up"
        AUTOPAY = "autopay", "Autopay"
        DEPOSIT = "deposit", "Deposit"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Cancelled"

    # Allowed forward moves; a late event never moves a payment backwards.
    # Money actually received is always credited, so a failed or cancelled
    # payment may still succeed (a retried card, a checkout opened again).
    TRANSITIONS: dict[str, set[str]] = {
        "pending": {"processing", "succeeded", "failed", "canceled"},
        "processing": {"succeeded", "failed", "canceled"},
        "failed": {"succeeded"},
        "canceled": {"succeeded"},
        "succeeded": set(),
    }

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="payments"
    )
    tenancy = models.ForeignKey(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="payments"
    )
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    provider = models.CharField(max_length=20)
    # NULL until the provider names it; unique among the named ones.
    provider_ref = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    ledger_transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True
    )
    # What the money is for: a prepaid top-up, or a postpaid payment with our reference.
    purpose = models.CharField(max_length=12, choices=Purpose.choices, default=Purpose.TOPUP)
    reference = models.CharField(max_length=100, blank=True)
    # Stripe: the landlord's connected account charged (direct charge), the
    # platform's fee on it and the Checkout Session that collects it.
    stripe_account = models.CharField(max_length=100, blank=True)
    application_fee_minor = models.BigIntegerField(default=0)
    checkout_session_id = models.CharField(max_length=200, blank=True)
    # Charged off-session with a saved method (auto top-up, autopay).
    off_session = models.BooleanField(default=False)
    # The tenant asked at checkout to keep the card for automatic payments.
    save_method = models.BooleanField(default=False)
    # Set when the bank asked for authentication: the tenant finishes on-session here.
    action_url = models.URLField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payment_positive"),
            models.UniqueConstraint(
                fields=["provider", "provider_ref"], name="payment_provider_ref_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"Payment {self.uuid} {self.amount_minor} {self.currency} {self.status}"

    # The reference of a payment towards one of the tenancy's bills.
    BILL_REFERENCE = "invoice:"

    @classmethod
    def bill_reference(cls, invoice: Invoice) -> str:
        return f"{cls.BILL_REFERENCE}{invoice.number}"

    def is_bill_payment(self) -> bool:
        return self.reference.startswith(self.BILL_REFERENCE)

    @property
    def receipt_number(self) -> str:
        """A short number for people, stable for the payment's life: R-000123."""
        return f"R-{self.pk:06d}"


class PaymentEvent(models.Model):
    """A provider event (a Stripe webhook, or the development provider's equivalent).

    Stored once under its provider id before processing, so duplicates are
    recognised by a unique constraint and processing can be retried.
    """

    provider = models.CharField(max_length=20)
    event_id = models.CharField(max_length=200)
    type = models.CharField(max_length=100)
    # The connected account a Connect event came from ("" for platform events).
    account = models.CharField(max_length=100, blank=True)
    # The payment intent the event is about, so an event that arrives before
    # its payment is known (a chargeback before the success event) can wait.
    object_ref = models.CharField(max_length=200, blank=True, db_index=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=300, blank=True)
    # When it was reported as unresolved for too long (payment_events_redrive).
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="payment_event_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id} {self.type}"


class Deposit(models.Model):
    """The deposit a landlord asks of a tenancy, and how the move-out settled it.

    The money itself is in the ledger: what is held is the balance of the
    tenancy's deposit account (``Account.Kind.DEPOSIT``), credited by the
    tenant's deposit payments. At move-out (``payments.deposits.deposit_settle``)
    it pays what the tenant still owes, and the rest is refunded.
    """

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    tenancy = models.OneToOneField(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="deposit"
    )
    currency = models.CharField(max_length=3)
    amount_minor = models.BigIntegerField(help_text="What the landlord asks the tenant to pay.")
    requested_at = models.DateTimeField(default=timezone.now)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Set by the move-out: what the held deposit paid of the tenant's debt, and
    # what was asked back through the payment provider.
    settled_at = models.DateTimeField(null=True, blank=True)
    applied_minor = models.BigIntegerField(default=0)
    refund_asked_minor = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="deposit_positive"),
        ]

    def __str__(self) -> str:
        return f"Deposit of tenancy {self.tenancy_id}: {self.amount_minor} {self.currency}"


class BillingState(models.Model):
    """Per-tenancy billing bookkeeping that is not a ledger balance."""

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    tenancy = models.OneToOneField(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="billing_state"
    )
    # Standing charges are posted per local day, up to and including this day.
    standing_through = models.DateField(null=True, blank=True)
    standing_pending_sub = models.BigIntegerField(default=0)
    # The tenancy's latest switch from prepaid to postpaid (landlord.people), as
    # payments.billing.postpaid_start recorded it: bills start at that instant,
    # and payments.allocation applies only the credit left then (and later
    # payments) to the bills issued since.
    postpaid_from = models.DateTimeField(null=True, blank=True)
    # The last ledger transaction and the last bill of the tenancy before it.
    postpaid_after_transaction = models.BigIntegerField(null=True, blank=True)
    postpaid_after_invoice = models.BigIntegerField(null=True, blank=True)
    # The balance then (negative: owed from the prepaid time) and what its
    # payments then came to, net of refunds and chargebacks.
    postpaid_opening_minor = models.BigIntegerField(default=0)
    postpaid_opening_funds_minor = models.BigIntegerField(default=0)
    # Per meter (id as a string), what was priced by then: the first bill
    # after the switch charges from here.
    postpaid_priced = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"billing state of tenancy {self.tenancy_id}"


class Invoice(models.Model):
    """A postpaid bill for a closed period (a local calendar month): a statement of
    what was accrued to the tenant's account, line by line."""

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    tenancy = models.ForeignKey(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="invoices"
    )
    period_start = models.DateField()
    period_end = models.DateField(help_text="Exclusive.")
    currency = models.CharField(max_length=3)
    issued_at = models.DateTimeField(default=timezone.now)
    energy_wh = models.BigIntegerField(default=0)
    net_minor = models.BigIntegerField(default=0)
    tax_minor = models.BigIntegerField(default=0)
    total_minor = models.BigIntegerField(default=0)
    tax_inclusive = models.BooleanField(default=True)
    held_wh = models.BigIntegerField(
        default=0, help_text="Energy in the period that could not be priced (not billed)."
    )
    held_reason = models.CharField(max_length=300, blank=True)
    # Per meter, its priced slots before the period's end when the bill was
    # issued: {meter id: [gross sub-units, net sub-units, Wh]}. The next bill
    # charges from here, so energy priced later reaches it as an adjustment.
    billed_through = models.JSONField(default=dict, blank=True)
    # The local day the bill must be paid by: its issue day plus the property's
    # ``bill_due_days``. Bills issued before due dates existed have none.
    due_date = models.DateField(null=True, blank=True)
    # Postpaid autopay charged what was owed on the due date (or found nothing
    # to charge): once per bill (payments.automatic.autopays_run_due).
    autopay_tried_at = models.DateTimeField(null=True, blank=True)
    # Reminders sent, at most once each (payments.reminders).
    reminded_due_at = models.DateTimeField(null=True, blank=True)
    reminded_overdue_at = models.DateTimeField(null=True, blank=True)
    # The bill's email (with its PDF) went to the tenant, or there was no address
    # to send it to: at most once (payments.bill_emails).
    emailed_at = models.DateTimeField(null=True, blank=True)
    # The late fee charged because this bill was not paid in time (at most
    # once, payments.late_fees), and the later bill that shows it.
    late_fee_minor = models.BigIntegerField(default=0)
    late_fee_at = models.DateTimeField(null=True, blank=True)
    late_fee_billed_on = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="fees_billed"
    )

    class Meta:
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(fields=["tenancy", "period_start"], name="invoice_unique"),
        ]
        indexes = [
            # The bills still to email: few at a time, whatever the number of bills.
            models.Index(
                fields=["issued_at"],
                condition=Q(emailed_at__isnull=True),
                name="invoice_to_email",
            ),
        ]

    def __str__(self) -> str:
        return f"Invoice {self.pk} {self.period_start:%b %Y}"

    @property
    def number(self) -> str:
        return f"{self.landlord_id}-{self.tenancy_id}-{self.period_start:%Y%m}"


class BillAllocation(models.Model):
    """How much of a succeeded payment was applied to a bill (``payments.allocation``).

    Recomputed from the payments and bills whenever either changes, oldest
    payment to oldest bill first; what is left of the payments is the credit
    carried to the next bill.
    """

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="allocations")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="allocations")
    amount_minor = models.BigIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invoice", "payment"], name="bill_allocation_unique"),
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0), name="bill_allocation_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount_minor} of payment {self.payment_id} to invoice {self.invoice_id}"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        ENERGY = "energy", "Energy"
        STANDING = "standing", "Standing charge"
        ADJUSTMENT = "adjustment", "Energy of earlier periods"
        TAX = "tax", "Tax"
        ROUNDING = "rounding", "Rounding"
        FEE = "fee", "Late fee"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    description = models.CharField(max_length=200)
    quantity = models.CharField(max_length=40, blank=True)
    unit_price = models.CharField(max_length=40, blank=True)
    amount_minor = models.BigIntegerField()

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.description


class ConnectAccount(models.Model):
    """A landlord's Stripe Connect account and what Stripe last said about it."""

    landlord = models.OneToOneField(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="connect_account"
    )
    stripe_account_id = models.CharField(max_length=100, unique=True)
    charges_enabled = models.BooleanField(default=False)
    payouts_enabled = models.BooleanField(default=False)
    details_submitted = models.BooleanField(default=False)
    requirements_due = models.JSONField(default=list, blank=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    # When Stripe created the newest account event applied: events arrive out of
    # order, and an older one must not overwrite a newer status.
    status_event_created = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.stripe_account_id} ({self.landlord_id})"

    @property
    def can_take_payments(self) -> bool:
        return self.charges_enabled


class Refund(models.Model):
    """A full or partial refund of a succeeded payment, reversed in the ledger once it succeeds."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        REQUIRES_ACTION = "requires_action", "Requires action"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Cancelled"

    # Stripe documents one move back: a succeeded refund can still fail (the
    # card was closed, say), and the money then stays with the landlord.
    TRANSITIONS: dict[str, set[str]] = {
        "pending": {"requires_action", "succeeded", "failed", "canceled"},
        "requires_action": {"pending", "succeeded", "failed", "canceled"},
        "succeeded": {"failed"},
        "failed": set(),
        "canceled": set(),
    }

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="refunds"
    )
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    reason = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    provider_ref = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    # Set once the provider said the refund succeeded, even if it failed later:
    # such a refund is posted, then reversed, whatever order its events came in.
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    ledger_transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="refund_positive"),
            models.UniqueConstraint(fields=["provider_ref"], name="refund_provider_ref_unique"),
        ]

    def __str__(self) -> str:
        return f"Refund {self.uuid} {self.amount_minor} {self.status}"


class Dispute(models.Model):
    """A chargeback opened by the tenant's bank on a payment (Stripe ``charge.dispute.*``)."""

    # Stripe's statuses after which nothing more happens to a chargeback.
    FINAL = frozenset({"won", "lost", "warning_closed", "prevented"})

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="chargebacks"
    )
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    provider_ref = models.CharField(max_length=200, unique=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=100, blank=True)
    # Stripe's dispute status: warning_needs_response, needs_response, under_review, won, lost...
    status = models.CharField(max_length=40)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    funds_withdrawn = models.BooleanField(default=False)
    funds_reinstated = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Chargeback {self.provider_ref} {self.amount_minor} {self.status}"


class SavedPaymentMethod(models.Model):
    """A tenant's card saved at checkout, living on the landlord's connected account."""

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="saved_payment_methods"
    )
    tenancy = models.ForeignKey(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="saved_payment_methods"
    )
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=200)
    customer_ref = models.CharField(max_length=200, blank=True)
    brand = models.CharField(max_length=30, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_ref"], name="saved_method_provider_ref_unique"
            ),
        ]

    def __str__(self) -> str:
        if not self.last4:
            return "Saved card"
        return f"{self.brand or 'card'} ending {self.last4}"


class PaymentSettings(models.Model):
    """A tenancy's automatic payments: prepaid auto top-up and postpaid autopay."""

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="payment_settings"
    )
    tenancy = models.OneToOneField(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="payment_settings"
    )
    auto_topup_enabled = models.BooleanField(default=False)
    auto_topup_threshold_minor = models.PositiveIntegerField(default=500)
    auto_topup_amount_minor = models.PositiveIntegerField(default=2000)
    auto_topup_period_hours = models.PositiveIntegerField(default=24)
    auto_topup_monthly_cap_minor = models.PositiveIntegerField(default=10000)
    last_auto_topup_at = models.DateTimeField(null=True, blank=True)
    autopay_enabled = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Payment settings of tenancy {self.tenancy_id}"
