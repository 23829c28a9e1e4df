"""Tenant disputes: a case about a bill, a payment, a usage period or a disconnection.

The status moves only through ``disputes.services`` (a small state machine,
``TRANSITIONS`` below); every step is a ``DisputeMessage`` both parties see
and an ``AuditEvent``. While a dispute is not final, automatic disconnection
of its tenancy is frozen (``disputes.freeze``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class DisputeQuerySet(models.QuerySet["Dispute"]):
    def unresolved(self) -> DisputeQuerySet:
        return self.exclude(status__in=Dispute.FINAL)


class Dispute(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Waiting for the landlord"
        LANDLORD_RESPONDED = "responded", "Landlord responded"
        TENANT_ACCEPTED = "accepted", "Tenant accepted"
        ESCALATED = "escalated", "With an admin"
        AWAITING_APPROVAL = "approval", "Adjustment awaiting a second admin"
        RESOLVED = "resolved", "Resolved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"

    FINAL = frozenset({Status.RESOLVED, Status.REJECTED, Status.WITHDRAWN})

    class Subject(models.TextChoices):
        INVOICE = "invoice", "A bill"
        PAYMENT = "payment", "A payment"
        PERIOD = "period", "Usage in a period"
        DISCONNECTION = "disconnection", "A disconnection"

    class Category(models.TextChoices):
        WRONG_READING = "reading", "Meter reading looks wrong"
        WRONG_PRICE = "price", "Wrong price or tariff"
        NOT_CREDITED = "not_credited", "Payment not credited"
        DOUBLE_CHARGE = "double_charge", "Charged twice"
        WRONGFUL_CUTOFF = "cutoff", "Disconnected wrongly"
        OTHER = "other", "Something else"

    class Response(models.TextChoices):
        ACCEPT = "accept", "Accepted"
        # Accepted, and the landlord returns money to the tenant's card (``proposed_payment``).
        REFUND = "refund", "Accepted with a refund"
        PARTIAL = "partial", "Proposed a partial adjustment"
        CONTEST = "contest", "Contested"

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="tenant_disputes"
    )
    tenancy = models.ForeignKey(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="disputes"
    )
    unit = models.ForeignKey("landlord.Unit", on_delete=models.PROTECT, related_name="disputes")
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    subject = models.CharField(max_length=14, choices=Subject.choices)
    invoice = models.ForeignKey(
        "payments.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    cutoff_notice = models.ForeignKey(
        "meters.CutoffNotice", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True, help_text="Inclusive.")
    category = models.CharField(max_length=14, choices=Category.choices)
    currency = models.CharField(max_length=3)
    # What the tenant disputes, in money, where there is an amount.
    amount_minor = models.BigIntegerField(null=True, blank=True)
    # Why the disputed amount is more than the item's own amount (required then).
    amount_explanation = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # The deadline of whoever must act next (the landlord, then the admins).
    due_at = models.DateTimeField(null=True, blank=True)
    # The deadline (a ``due_at``) a reminder before it, and a notice after it
    # passed, were sent for: once each per deadline (disputes.services deadlines).
    reminded_for = models.DateTimeField(null=True, blank=True)
    overdue_for = models.DateTimeField(null=True, blank=True)
    response = models.CharField(max_length=8, choices=Response.choices, blank=True)
    proposed_minor = models.BigIntegerField(null=True, blank=True)
    # A landlord's offer of a refund to the card: ``proposed_minor`` of this payment,
    # asked of the provider when the tenant accepts (or the tenant's window passes);
    # with ``proposed_credit`` the amount is credited to the balance first.
    proposed_payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    proposed_credit = models.BooleanField(default=False)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # An admin's adjustment waiting for a second admin (four eyes).
    approval_minor = models.BigIntegerField(null=True, blank=True)
    approval_reason = models.CharField(max_length=300, blank=True)
    approval_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # An admin's refund waiting for a second admin: of which payment, and whether
    # the balance is credited with the amount first (see ``refund``).
    approval_payment = models.ForeignKey(
        "payments.Payment", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approval_credit = models.BooleanField(default=False)
    adjustment_minor = models.BigIntegerField(default=0)
    # A refund to the tenant's card asked of the payment provider at resolution;
    # the ledger follows the provider's refund event (payments.services).
    refund = models.OneToOneField(
        "payments.Refund", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    ledger_transaction = models.OneToOneField(
        "payments.LedgerTransaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    outcome = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    objects = DisputeQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_minor__isnull=True) | Q(amount_minor__gt=0),
                name="dispute_amount_positive",
            ),
            models.CheckConstraint(condition=Q(adjustment_minor__gte=0), name="dispute_adj_gte0"),
        ]
        indexes = [models.Index(fields=["tenancy", "status"], name="dispute_tenancy_status")]

    def __str__(self) -> str:
        return f"Dispute #{self.pk} ({self.get_status_display()})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class DisputeMessage(models.Model):
    """One step of a case or a message in it, as both parties and the admins see it."""

    class Role(models.TextChoices):
        TENANT = "tenant", "Tenant"
        LANDLORD = "landlord", "Landlord"
        ADMIN = "admin", "Admin"
        # A step taken by the deadlines (no author): an automatic escalation, say.
        SYSTEM = "system", "Submeter"

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="messages")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    role = models.CharField(max_length=8, choices=Role.choices)
    step = models.CharField(max_length=20, help_text="raised, responded, message, resolved…")
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.role} {self.step} on {self.dispute_id}"


def attachment_path(instance: DisputeAttachment, filename: str) -> str:
    # Never under a public URL: MEDIA_URL is not routed; served by an access-checked view.
    return f"private/disputes/{instance.landlord_id}/{instance.dispute_id}/{instance.uuid.hex}"


class DisputeAttachment(models.Model):
    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    dispute = models.ForeignKey(Dispute, on_delete=models.PROTECT, related_name="attachments")
    message = models.ForeignKey(
        DisputeMessage, on_delete=models.PROTECT, related_name="attachments"
    )
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    file = models.FileField(upload_to=attachment_path, max_length=200)
    name = models.CharField(max_length=150)
    content_type = models.CharField(max_length=40)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name
