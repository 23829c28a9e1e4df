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
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

NANO = 1_000_000_000


class Tariff(models.Model):
    """A flat energy price and a daily standing charge (versions and tiers come later)."""

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="tariffs"
    )
    name = models.CharField(max_length=100)
    currency = models.CharField(max_length=3, default="GBP")
    price_per_kwh_minor = models.DecimalField(
        max_digits=12,
        decimal_places=4,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Energy price in minor units (e.g. pence) per kWh, up to 4 decimals.",
    )
    standing_charge_per_day_minor = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} ({self.price_per_kwh_minor} {self.currency}/100 per kWh)"

    @property
    def price_nano_per_wh(self) -> int:
        """Exact price of one Wh in billionths of a minor unit."""
        return int(self.price_per_kwh_minor * 1_000_000)


class Account(models.Model):
    class Kind(models.TextChoices):
        TENANT = "tenant", "Tenant balance"
        REVENUE = "revenue", "Landlord energy revenue"
        CLEARING = "clearing", "Payments received (clearing)"

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
    balance_minor = models.BigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="tenant") & Q(tenancy__isnull=False))
                | (~Q(kind="tenant") & Q(tenancy__isnull=True)),
                name="account_tenant_has_tenancy",
            ),
            models.UniqueConstraint(
                fields=["landlord", "kind", "currency"],
                condition=~Q(kind="tenant"),
                name="account_one_landlord_account_per_kind",
            ),
        ]

    def __str__(self) -> str:
        owner = f"tenancy {self.tenancy_id}" if self.tenancy_id else f"landlord {self.landlord_id}"
        return f"{self.get_kind_display()} ({owner}, {self.currency})"


class LedgerTransaction(models.Model):
    class Kind(models.TextChoices):
        USAGE = "usage", "Energy used"
        PAYMENT = "payment", "Payment received"
        ADJUSTMENT = "adjustment", "Adjustment"
        REVERSAL = "reversal", "Reversal"

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

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Cancelled"

    # Allowed forward moves; a late event never moves a payment backwards.
    TRANSITIONS: dict[str, set[str]] = {
        "pending": {"processing", "succeeded", "failed", "canceled"},
        "processing": {"succeeded", "failed", "canceled"},
        "failed": {"succeeded"},
        "canceled": set(),
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

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payment_positive"),
            models.UniqueConstraint(
                fields=["provider", "provider_ref"], name="payment_provider_ref_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"Payment {self.uuid} {self.amount_minor} {self.currency} {self.status}"


class PaymentEvent(models.Model):
    """A provider event (a Stripe webhook, or the development provider's equivalent).

    Stored once under its provider id before processing, so duplicates are
    recognised by a unique constraint and processing can be retried.
    """

    provider = models.CharField(max_length=20)
    event_id = models.CharField(max_length=200)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=300, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="payment_event_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id} {self.type}"
