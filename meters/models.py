"""Devices, meters, readings and the relay command outbox.

A *device* is what connects to the server (meter + relay, authenticated by a
hashed secret). A *meter* is the register installed at a unit, reported by a
device; replacing a meter keeps the device's history apart from the new
register. Readings are append-only and unique per device and sequence, so a
duplicate or replayed frame changes nothing.

Relay commands are absolute ("off, generation 17"); ``generation`` increases
per device; the row in ``RelayCommand`` is the command (an outbox), and the
channel layer only wakes the socket that should deliver it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Protocol(models.TextChoices):
    NATIVE = "native", "Native v1"
    SHELLY = "shelly", "Shelly Gen2+"


class RelayState(models.TextChoices):
    ON = "on", "On"
    OFF = "off", "Off"
    UNKNOWN = "unknown", "Unknown"


def hash_secret(secret: str) -> str:
    """Device secrets are long random tokens, so one salted SHA-256 is enough and fast."""
    salt = secrets.token_hex(8)
    digest = hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()
    return f"sha256${salt}${digest}"


def check_secret(secret: str, encoded: str) -> bool:
    try:
        algo, salt, digest = encoded.split("$", 2)
    except ValueError:
        return False
    if algo != "sha256":
        return False
    candidate = hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)


class Device(models.Model):
    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="devices"
    )
    unit = models.ForeignKey("landlord.Unit", on_delete=models.PROTECT, related_name="devices")
    ident = models.CharField(max_length=64, unique=True, help_text="Public device identifier.")
    secret_hash = models.CharField(max_length=200, editable=False)
    protocol = models.CharField(max_length=10, choices=Protocol.choices, default=Protocol.NATIVE)
    firmware = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    connected = models.BooleanField(default=False)
    # What the device last told us.
    reported_relay = models.CharField(
        max_length=8, choices=RelayState.choices, default=RelayState.UNKNOWN
    )
    reported_generation = models.BigIntegerField(default=0)
    reported_at = models.DateTimeField(null=True, blank=True)
    # What the server wants; ``desired_generation`` is the newest command's.
    desired_relay = models.CharField(max_length=8, choices=RelayState.choices, default="on")
    desired_generation = models.BigIntegerField(default=0)
    desired_reason = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return self.ident

    def set_secret(self, secret: str) -> None:
        self.secret_hash = hash_secret(secret)

    def check_secret(self, secret: str) -> bool:
        return bool(self.secret_hash) and check_secret(secret, self.secret_hash)

    @property
    def relay_converged(self) -> bool:
        return (
            self.reported_relay == self.desired_relay
            and self.reported_generation >= self.desired_generation
        )


class MeterQuerySet(models.QuerySet["Meter"]):
    def installed(self) -> MeterQuerySet:
        return self.filter(removed_at__isnull=True)


class Meter(models.Model):
    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="meters"
    )
    unit = models.ForeignKey("landlord.Unit", on_delete=models.PROTECT, related_name="meters")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="meters")
    serial = models.CharField(max_length=64)
    installed_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)
    register_max_wh = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Register size: it rolls over to 0 at this value (blank: never rolls over).",
    )
    # Derivation cursor: the latest reading (by time) taken into the intervals.
    rated_seq = models.BigIntegerField(null=True, blank=True)
    rated_register_wh = models.BigIntegerField(null=True, blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    # Rated but not yet posted, in sub-units (payments.rating.SCALE per minor
    # unit): the carried fraction of a minor unit plus the open debit window.
    pending_sub = models.BigIntegerField(default=0)
    pending_since = models.DateTimeField(null=True, blank=True)
    posted_minor = models.BigIntegerField(default=0)
    postings = models.PositiveIntegerField(default=0)
    # Earliest slot that could not be priced; re-tried on every intake.
    held_from = models.DateTimeField(null=True, blank=True)
    # Latest accepted reading, for screens.
    last_register_wh = models.BigIntegerField(null=True, blank=True)
    last_reading_at = models.DateTimeField(null=True, blank=True)
    hold_reason = models.CharField(max_length=200, blank=True)

    objects = MeterQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device"],
                condition=Q(removed_at__isnull=True),
                name="meter_one_installed_per_device",
            ),
        ]

    def __str__(self) -> str:
        return self.serial


class Reading(models.Model):
    class Quality(models.TextChoices):
        ACTUAL = "actual", "Actual"
        FLAGGED = "flagged", "Flagged (not billed)"
        UNUSED = "unused", "Stored, not used for billing"

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="readings"
    )
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="readings")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="readings")
    seq = models.BigIntegerField()
    taken_at = models.DateTimeField()
    register_wh = models.BigIntegerField()
    received_at = models.DateTimeField(default=timezone.now)
    quality = models.CharField(max_length=10, choices=Quality.choices, default=Quality.ACTUAL)
    # The validation rule that set the quality (meters.vee.Rule) and why.
    rule = models.CharField(max_length=30, blank=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "seq"], name="reading_device_seq_unique"),
            models.CheckConstraint(condition=Q(seq__gte=0), name="reading_seq_non_negative"),
            models.CheckConstraint(
                condition=Q(register_wh__gte=0), name="reading_register_non_negative"
            ),
        ]
        indexes = [models.Index(fields=["meter", "taken_at"], name="reading_meter_time")]

    def __str__(self) -> str:
        return f"{self.device_id}#{self.seq} {self.register_wh} Wh"


class IncomingReading(models.Model):
    """A reading its device was told is stored, waiting to be validated and rated.

    Device sockets append readings here in batches (one statement for many
    frames) and answer the device once the batch is committed;
    ``meters.readings.readings_rate`` moves them into ``Reading`` under the
    device lock, deriving intervals and posting usage, in the background.
    The table stays small: rows live only until they are rated.
    """

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="+")
    seq = models.BigIntegerField()
    taken_at = models.DateTimeField()
    register_wh = models.BigIntegerField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["device", "seq"], name="incoming_device_seq_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id}#{self.seq} {self.register_wh} Wh (not yet rated)"


class Interval(models.Model):
    """Energy derived from readings, per fixed slot (or a held gap), and its price.

    Slots are ``payments.rating.SLOT_SECONDS`` long and aligned to UTC. The
    quality says how the energy is known and ``rule`` which validation rule
    set it; ``lines`` are the tariff lines that priced it. Held intervals
    carry the reason and are never priced at zero or dropped.
    """

    class Kind(models.TextChoices):
        SLOT = "slot", "Slot"
        GAP = "gap", "Gap"

    class Quality(models.TextChoices):
        ACTUAL = "actual", "Actual"
        ESTIMATED = "estimated", "Estimated"
        HELD = "held", "Held (not billed)"

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="intervals")
    kind = models.CharField(max_length=4, choices=Kind.choices, default=Kind.SLOT)
    start = models.DateTimeField()
    end = models.DateTimeField()
    energy_wh = models.BigIntegerField(default=0)
    quality = models.CharField(max_length=10, choices=Quality.choices, default=Quality.ACTUAL)
    rule = models.CharField(max_length=30, blank=True)
    note = models.CharField(max_length=200, blank=True)
    held_reason = models.CharField(max_length=200, blank=True)
    tariff_version_id = models.BigIntegerField(null=True, blank=True)
    net_sub = models.BigIntegerField(null=True, blank=True)
    gross_sub = models.BigIntegerField(null=True, blank=True)
    lines = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "kind", "start"], name="interval_unique"),
        ]
        indexes = [
            models.Index(fields=["meter", "start"], name="interval_meter_start"),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.start:%Y-%m-%d %H:%M} {self.energy_wh} Wh"


class MeterEvent(models.Model):
    """A meter reset, replacement or move to another unit, with the old register's last
    and the new one's first value. A replacement and a move close ``meter`` and start
    ``new_meter`` (for a move, at the other unit, on the same device)."""

    class Kind(models.TextChoices):
        RESET = "reset", "Meter reset"
        REPLACEMENT = "replacement", "Meter replaced"
        MOVE = "move", "Meter moved to another unit"

    landlord = models.ForeignKey("landlord.Landlord", on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="events")
    new_meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    at = models.DateTimeField()
    old_last_wh = models.BigIntegerField()
    new_first_wh = models.BigIntegerField()
    reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.meter} at {self.at:%Y-%m-%d %H:%M}"


class RelayCommand(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent, awaiting acknowledgement"
        ACKED = "acked", "Acknowledged"
        SUPERSEDED = "superseded", "Superseded by a newer command"
        REJECTED = "rejected", "Given up: the relay did not switch"

    class Source(models.TextChoices):
        AUTOMATIC = "auto", "Automatic"
        MANUAL = "manual", "Manual"

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="relay_commands"
    )
    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="commands")
    generation = models.BigIntegerField()
    state = models.CharField(max_length=8, choices=RelayState.choices)
    reason = models.CharField(max_length=200)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.AUTOMATIC)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    acked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "generation"], name="relay_command_generation_unique"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["on", "off"]), name="relay_command_absolute"
            ),
        ]
        ordering = ["-generation"]

    def __str__(self) -> str:
        return f"{self.device_id}: {self.state} gen {self.generation} ({self.status})"


class CutoffNotice(models.Model):
    """A scheduled automatic cut-off the tenant has been told about.

    Created when a prepaid balance reaches zero; ``earliest_at`` is the first
    moment inside the property's disconnection window at least the notice
    period later. Any balance above zero cancels it; the relay follows
    ``desired_supply``, which reads the open notice.
    """

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        CANCELLED = "cancelled", "Cancelled"

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="cutoff_notices"
    )
    unit = models.ForeignKey("landlord.Unit", on_delete=models.PROTECT, related_name="+")
    tenancy = models.ForeignKey(
        "landlord.Tenancy", on_delete=models.PROTECT, related_name="cutoff_notices"
    )
    noticed_at = models.DateTimeField(default=timezone.now)
    earliest_at = models.DateTimeField(null=True, blank=True)
    balance_minor = models.BigIntegerField(help_text="Balance when the notice was given.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SCHEDULED)
    # When the cut-off command was issued (the notice stays open until credit returns).
    cut_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenancy"],
                condition=Q(status="scheduled"),
                name="cutoff_notice_one_open_per_tenancy",
            ),
        ]
        ordering = ["-noticed_at"]

    def __str__(self) -> str:
        return f"{self.unit_id}: {self.status} {self.earliest_at}"


class Alert(models.Model):
    """A message to a tenant or landlord, delivered live, by email and to the device.

    A *condition* alert (low credit, low runway, device offline, relay not
    switching) stays open
    until its condition clears past a hysteresis margin, and at most one is
    open per subject and kind, so it is never repeated while nothing changed.
    An *event* alert (disconnection warning, supply restored) is closed when
    created.
    """

    class Kind(models.TextChoices):
        LOW_CREDIT = "low_credit", "Low credit"
        LOW_RUNWAY = "low_runway", "Credit running out soon"
        CUTOFF_WARNING = "cutoff_warning", "Disconnection warning"
        SUPPLY_RESTORED = "supply_restored", "Supply restored"
        DEVICE_OFFLINE = "device_offline", "Meter offline"
        RELAY_NOT_SWITCHING = "relay_not_switching", "Relay not switching"

    class Audience(models.TextChoices):
        TENANT = "tenant", "Tenant"
        LANDLORD = "landlord", "Landlord"

    class EmailSkipped(models.TextChoices):
        SWITCHED_OFF = "switched_off", "Switched off by the tenant"
        NO_ADDRESS = "no_address", "No email address"
        NOT_DUE = "not_due", "No longer true when it could go"
        EXPIRED = "expired", "Not sent within a day"

    landlord = models.ForeignKey(
        "landlord.Landlord", on_delete=models.PROTECT, related_name="alerts"
    )
    unit = models.ForeignKey("landlord.Unit", on_delete=models.PROTECT, related_name="alerts")
    tenancy = models.ForeignKey(
        "landlord.Tenancy", on_delete=models.PROTECT, null=True, blank=True, related_name="alerts"
    )
    device = models.ForeignKey(
        Device, on_delete=models.PROTECT, null=True, blank=True, related_name="alerts"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    audience = models.CharField(max_length=10, choices=Audience.choices)
    subject_key = models.CharField(max_length=40, help_text="tenancy:<id> or device:<id>")
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    # Why the email will never go (the decision is kept so the sweep of owed
    # emails, ``supply.alerts.alert_emails_sweep``, does not take it up again).
    email_skipped = models.CharField(
        max_length=12, choices=EmailSkipped.choices, blank=True, default=""
    )
    # When the email is next tried by a task already queued (end of quiet hours, a
    # retry): the sweep leaves it to that task until then.
    email_next_at = models.DateTimeField(null=True, blank=True)
    # Tenant alerts are shown on the meter too (native Notify); null until sent.
    device_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subject_key", "kind"],
                condition=Q(cleared_at__isnull=True),
                name="alert_one_open_per_subject_kind",
            ),
        ]
        indexes = [
            # Only alerts whose email is still owed: the sweep reads these, however
            # many alerts were emailed.
            models.Index(
                fields=["created_at"],
                condition=Q(emailed_at__isnull=True, email_skipped=""),
                name="alert_email_owed",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject_key}: {self.message}"
