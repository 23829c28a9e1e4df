from __future__ import annotations

import builtins
import zoneinfo
from datetime import date, time
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone.")


def validate_days(value: str) -> None:
    if not value or any(ch not in "1234567" for ch in value) or len(set(value)) != len(value):
        raise ValidationError("Use each ISO weekday digit at most once: 1 (Monday) to 7 (Sunday).")


def validate_holidays(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError('Holidays must be a list of dates, e.g. ["2026-12-25"].')
    for item in value:
        try:
            date.fromisoformat(str(item))
        except ValueError as exc:
            raise ValidationError(f"{item!r} is not a date like 2026-12-25.") from exc


class Landlord(models.Model):
    """An organisation that rents out units; several staff users may belong to it."""

    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        STAFF = "staff", "Staff"

    landlord = models.ForeignKey(Landlord, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )

    class Action(models.TextChoices):
        """What a member may do (docs/roles.md): staff run the day-to-day work; money
        going out, the payment account, roles and cutting a supply are for owners."""

        VIEW = "view", "See units, readings, payments and bills"
        SUPPLY_ON = "supply_on", "Force a supply on, or release a manual override"
        REVIEW = "review", "Bill held energy after review"
        SUPPLY_OFF = "supply_off", "Force a supply off"
        REFUND = "refund", "Refund a payment"
        CONNECT = "connect", "Set up the payment account"
        ROLES = "roles", "Give and take roles"
        DEVICES = "devices", "Register devices, rotate their secrets, replace meters"
        TENANTS = "tenants", "Invite tenants, record move-ins and move-outs"
        BILLING_MODE = "billing_mode", "Switch a unit between prepaid and postpaid"
        SETUP = "setup", "Set up properties, units and tariffs"

    STAFF_ACTIONS = frozenset(
        {Action.VIEW, Action.SUPPLY_ON, Action.REVIEW, Action.DEVICES, Action.TENANTS}
    )

    role = models.CharField(max_length=10, choices=Role.choices, default=Role.STAFF)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["landlord", "user"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.landlord}"

    def may(self, action: str) -> bool:
        """Owners may do everything; staff only the day-to-day; any other role nothing."""
        if self.role == self.Role.OWNER:
            return True
        if self.role == self.Role.STAFF:
            return action in self.STAFF_ACTIONS
        return False


class Property(models.Model):
    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="properties")
    name = models.CharField(max_length=200)
    address = models.TextField(blank=True)
    timezone = models.CharField(
        max_length=64, default="Europe/London", validators=[validate_timezone]
    )
    currency = models.CharField(max_length=3, default="GBP")
    # Protections (supply/protections.py): automatic disconnection happens only
    # inside this window, in the property's local time, never on a holiday.
    cutoff_days = models.CharField(
        "disconnection days",
        max_length=7,
        default="12345",
        validators=[validate_days],
        help_text="ISO weekdays on which automatic disconnection may happen: 1 = Monday … 7 = Sunday.",
    )
    cutoff_start = models.TimeField(
        "disconnection window opens", default=time(9, 0), help_text="Local time."
    )
    cutoff_end = models.TimeField(
        "disconnection window closes",
        default=time(15, 0),
        help_text="Local time. The same time as the opening means all day.",
    )
    cutoff_holidays = models.JSONField(
        "no-disconnection holidays",
        default=list,
        blank=True,
        validators=[validate_holidays],
        help_text='Dates as a list, e.g. ["2026-12-25", "2026-12-28"].',
    )
    cutoff_notice_minutes = models.PositiveIntegerField(
        "notice before disconnection (minutes)",
        default=24 * 60,
        help_text="The tenant is told this long before the earliest automatic cut-off.",
    )
    landlord_may_disconnect = models.BooleanField(
        "landlord may disconnect",
        default=True,
        help_text="Switch off where the law forbids landlords to disconnect a supply.",
    )

    # Postpaid billing cycle (payments.billing.cycle_bounds): a bill covers the
    # local days from this day of one month to the same day of the next, so 1
    # is the calendar month; 28 at most, so every month has the day.
    bill_cycle_day = models.PositiveSmallIntegerField(
        "billing cycle day",
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(28)],
        help_text="Postpaid bills run from this day of the month (1 to 28) to the same day "
        "of the next; 1 is the calendar month.",
    )
    bill_due_days = models.PositiveSmallIntegerField(
        "days to pay a bill",
        default=14,
        validators=[MaxValueValidator(90)],
        help_text="A postpaid bill is due this many days after it is issued.",
    )
    # Late fees on postpaid bills (payments.late_fees): off while both the fixed
    # amount and the percentage are 0.
    late_fee_grace_days = models.PositiveSmallIntegerField(
        "late fee grace days",
        default=5,
        help_text="A late fee is charged only once a bill is this many days past its due date.",
    )
    late_fee_fixed_minor = models.PositiveIntegerField(
        "fixed late fee (minor units)", default=0, help_text="0: no fixed fee."
    )
    late_fee_percent = models.DecimalField(
        "late fee percentage",
        max_digits=5,
        decimal_places=2,
        default=Decimal(0),
        validators=[MaxValueValidator(Decimal(100))],
        help_text="Of the amount still owed on the bill (not of an amount in dispute). 0: none.",
    )
    late_fee_cap_minor = models.PositiveIntegerField(
        "late fee cap (minor units)", default=0, help_text="0: no cap."
    )

    class Meta:
        verbose_name_plural = "properties"

    def __str__(self) -> str:
        return self.name


class Unit(models.Model):
    class BillingMode(models.TextChoices):
        PREPAID = "prepaid", "Prepaid"
        POSTPAID = "postpaid", "Postpaid"

    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="units")
    property = models.ForeignKey(Property, on_delete=models.PROTECT, related_name="units")
    name = models.CharField(max_length=100)
    billing_mode = models.CharField(
        max_length=10, choices=BillingMode.choices, default=BillingMode.PREPAID
    )
    low_credit_threshold_minor = models.PositiveIntegerField(
        default=500, help_text="Warn the tenant when a prepaid balance falls below this."
    )
    tariff = models.ForeignKey(
        "payments.Tariff", on_delete=models.PROTECT, related_name="units", null=True, blank=True
    )
    emergency_credit_minor = models.PositiveIntegerField(
        default=0,
        help_text="Prepaid: emergency credit a tenant may take once when low (0: not offered).",
    )
    # A landlord's manual relay override (supply.overrides.supply_override_set);
    # empty when the supply follows the automatic rules.
    override_state = models.CharField(
        max_length=3, choices=[("on", "On"), ("off", "Off")], blank=True, editable=False
    )
    override_reason = models.CharField(max_length=300, blank=True, editable=False)
    override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    override_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when the landlord no longer lets the unit (landlord.setup.unit_archive):
    # it leaves the lists, its history stays.
    archived_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["property_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["property", "name"], name="unit_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.property.name} / {self.name}"

    def clean(self) -> None:
        if self.property_id and self.landlord_id and self.property.landlord_id != self.landlord_id:
            raise ValidationError("The unit's property belongs to another landlord.")

    @builtins.property
    def is_prepaid(self) -> bool:
        return self.billing_mode == self.BillingMode.PREPAID

    @builtins.property
    def currency(self) -> str:
        return self.property.currency


class TenancyQuerySet(models.QuerySet["Tenancy"]):
    def active(self, on: date | None = None) -> TenancyQuerySet:
        day = on or timezone.localdate()
        return self.filter(start_date__lte=day).filter(
            Q(end_date__isnull=True) | Q(end_date__gte=day)
        )

    def ended(self, on: date | None = None) -> TenancyQuerySet:
        return self.filter(end_date__lt=on or timezone.localdate())


class Tenancy(models.Model):
    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="tenancies")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="tenancies")
    tenant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tenancies"
    )
    start_date = models.DateField(default=timezone.localdate)
    end_date = models.DateField(null=True, blank=True)
    vulnerable = models.BooleanField(
        "vulnerable or medical needs",
        default=False,
        help_text="Never disconnect this household automatically (medical equipment, "
        "vulnerability).",
    )
    # The unit's meter register when the tenant moved in and out, as the landlord
    # read it (landlord.people): a record for the final statement.
    opening_wh = models.BigIntegerField(null=True, blank=True)
    closing_wh = models.BigIntegerField(null=True, blank=True)

    objects = TenancyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "tenancies"
        constraints = [
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(end_date__gte=models.F("start_date")),
                name="tenancy_end_after_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant} in {self.unit}"

    def is_active_on(self, day: date) -> bool:
        return self.start_date <= day and (self.end_date is None or self.end_date >= day)

    def is_current(self) -> bool:
        """Running today: its tenant may see the unit live and top up. Before it starts
        and after it ends, the unit's live data belong to someone else."""
        return self.is_active_on(timezone.localdate())


class Invitation(models.Model):
    """A tenant invited by email to a unit. The link carries a signed, expiring
    token naming this row; accepting it once sets ``used_at`` and ``tenancy``."""

    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="invitations")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="invitations")
    email = models.EmailField()
    move_in = models.DateField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)
    tenancy = models.OneToOneField(
        Tenancy, on_delete=models.PROTECT, null=True, blank=True, related_name="invitation"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.unit_id} from {self.move_in}"


class MemberInvitation(models.Model):
    """A person invited by email to join a landlord's team with a role. As with a
    tenant's ``Invitation``, the emailed link carries a signed, expiring token
    naming this row; accepting it once sets ``used_at`` and ``membership``."""

    landlord = models.ForeignKey(
        Landlord, on_delete=models.PROTECT, related_name="member_invitations"
    )
    email = models.EmailField()
    role = models.CharField(
        max_length=10, choices=Membership.Role.choices, default=Membership.Role.STAFF
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    membership = models.OneToOneField(
        Membership, on_delete=models.SET_NULL, null=True, blank=True, related_name="invitation"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} as {self.role} of {self.landlord_id}"


class ModeSwitchSchedule(models.Model):
    """A unit's switch between prepaid and postpaid, to happen at ``at``.

    A periodic task (landlord/tasks.py) makes the switch through
    ``landlord.people.unit_billing_mode_switch`` once ``at`` has passed; until
    then the landlord may cancel it. At most one is pending per unit."""

    class Status(models.TextChoices):
        PENDING = "pending", "Scheduled"
        DONE = "done", "Done"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Could not be made"

    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="+")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="mode_switches")
    mode = models.CharField(max_length=10, choices=Unit.BillingMode.choices)
    at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    finished_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["unit"],
                condition=Q(status="pending"),
                name="mode_switch_one_pending_per_unit",
            ),
        ]
        indexes = [models.Index(fields=["status", "at"], name="mode_switch_due")]

    def __str__(self) -> str:
        return f"{self.unit_id} to {self.mode} at {self.at:%Y-%m-%d %H:%M}"


class AuditEvent(models.Model):
    """Who did what to money or supply, and why. Append-only.

    ``subject`` is the human text; the keys say what the row is about. At most
    one of ``device``, ``tenancy`` and ``meter`` is set (the row's own
    subject); ``unit`` is the unit it concerns, the subject itself or the
    unit of the device, tenancy or meter when the row was written. Rows are
    written through ``landlord.audit.audit_record``, which fills both.
    """

    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True
    )
    action = models.CharField(max_length=60)
    subject = models.CharField(max_length=200)
    # The log is append-only (a database trigger refuses UPDATE and DELETE),
    # so a key can be neither cleared nor made to block a deletion: these are
    # plain keys without a database constraint, and a row may outlive what it
    # names. The subject text still says what that was. The composite indexes
    # below serve the unit and device lookups too.
    unit = models.ForeignKey(
        Unit,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    device = models.ForeignKey(
        "meters.Device",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    tenancy = models.ForeignKey(
        Tenancy,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    meter = models.ForeignKey(
        "meters.Meter",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    reason = models.CharField(max_length=300, blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]
        indexes = [
            # "audit rows of this unit (or device), newest first"
            models.Index(fields=["unit", "-at"], name="auditevent_unit_at"),
            models.Index(fields=["device", "-at"], name="auditevent_device_at"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.subject}"


class TenantNotifications(models.Model):
    """A tenant's choices about the alerts of one tenancy.

    A disconnection warning is always emailed, at once: neither a switch nor
    quiet hours hold it back (``supply.alerts.alert_email_send``).
    """

    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="+")
    tenancy = models.OneToOneField(Tenancy, on_delete=models.PROTECT, related_name="notifications")
    # Warn below this balance (minor units) instead of the unit's own threshold, if higher.
    low_credit_threshold_minor = models.PositiveIntegerField(null=True, blank=True)
    email_low_credit = models.BooleanField(default=True)
    email_supply_restored = models.BooleanField(default=True)
    # Local times in the property's time zone; start after end spans midnight.
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"notifications of tenancy {self.tenancy_id}"


class PushSubscription(models.Model):
    """One browser's Web Push subscription to a tenancy's alerts: one row per phone
    or browser that turned notifications on (``landlord.push``).

    The push service's endpoint is the browser's address; a 404 or 410 from it
    means the browser dropped the subscription, and the row is deleted.
    """

    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="+")
    # A subscription means nothing without its tenancy or its user: it goes with them.
    tenancy = models.ForeignKey(
        Tenancy, on_delete=models.CASCADE, related_name="push_subscriptions"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    endpoint = models.URLField(max_length=1000)
    # The browser's keys for encrypting messages to it (base64url).
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_failure = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenancy", "endpoint"], name="push_subscription_one_per_endpoint"
            ),
        ]

    def __str__(self) -> str:
        return f"push subscription {self.pk} of tenancy {self.tenancy_id}"


class PaymentPlanRequest(models.Model):
    """A tenant's request to pay what they owe over time; the landlord sees it on
    their home until they answer it: accepted with its terms, or declined, with a
    note the tenant reads; closed, unanswered, if the tenancy ends first
    (``landlord.hardship``). One open request per tenancy."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"

    landlord = models.ForeignKey(Landlord, on_delete=models.PROTECT, related_name="+")
    tenancy = models.ForeignKey(Tenancy, on_delete=models.PROTECT, related_name="plan_requests")
    weekly_minor = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField(max_length=1000)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The landlord's answer: the plan's terms when accepted, why not when declined.
    answer = models.TextField(max_length=1000, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenancy"],
                condition=Q(status="open"),
                name="plan_request_one_open_per_tenancy",
            ),
        ]

    def __str__(self) -> str:
        return f"plan request of tenancy {self.tenancy_id} ({self.status})"
