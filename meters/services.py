"""Device authentication, reading intake and rating, and relay control."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from config.live import broadcast_on_commit, device_group, landlord_group, tenancy_group
from landlord.models import AuditEvent, Tenancy, Unit
from payments.ledger import tenant_account
from payments.services import usage_post, usage_price

from .models import CutoffNotice, Device, Meter, Reading, RelayCommand, RelayState
from .protections import Protections, automatic_supply, earliest_cutoff, next_window_start
from .simulator import SimDevice

logger = logging.getLogger(__name__)

# Registers beyond this (10 TWh) are not a real submeter: a corrupt frame.
MAX_REGISTER_WH = 10**13
MAX_SEQ = 2**62


class ReadingRejected(Exception):
    """The whole frame is refused; nothing of it is stored."""

    def __init__(self, code: str, message: str, seq: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.seq = seq


@dataclass(frozen=True)
class ReadingInput:
    seq: int
    taken_at: datetime
    register_wh: int


@dataclass
class ReadingsResult:
    accepted: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    flagged: list[int] = field(default_factory=list)


def device_authenticate(*, ident: str, secret: str) -> Device | None:
    device = Device.objects.filter(ident=ident).first()
    if device is None:
        # Same work as a real check, so timing does not reveal which idents exist.
        Device(secret_hash="sha256$0000$" + "0" * 64).check_secret(secret)
        return None
    return device if device.check_secret(secret) else None


def _notify_unit(unit: Unit) -> None:
    msg = {"type": "unit.changed", "unit_id": unit.pk}
    broadcast_on_commit(landlord_group(unit.landlord_id), msg)
    for tenancy_id in Tenancy.objects.active().filter(unit=unit).values_list("pk", flat=True):
        broadcast_on_commit(tenancy_group(tenancy_id), msg)


def readings_validate(*, readings: list[ReadingInput], now: datetime) -> None:
    tolerance = timedelta(seconds=settings.SUBMETER["FUTURE_TOLERANCE_SECONDS"])
    if not readings:
        raise ReadingRejected("FormatViolation", "No readings in the frame.")
    if len(readings) > settings.SUBMETER["MAX_READINGS_PER_FRAME"]:
        raise ReadingRejected("FormatViolation", "Too many readings in one frame.")
    for r in readings:
        if not 0 <= r.seq <= MAX_SEQ:
            raise ReadingRejected("PropertyConstraintViolation", "seq out of range.", r.seq)
        if not 0 <= r.register_wh <= MAX_REGISTER_WH:
            raise ReadingRejected("PropertyConstraintViolation", "register_wh out of range.", r.seq)
        if timezone.is_naive(r.taken_at):
            raise ReadingRejected("FormatViolation", "taken_at needs a UTC offset.", r.seq)
        if r.taken_at > now + tolerance:
            raise ReadingRejected(
                "PropertyConstraintViolation", "taken_at is in the future.", r.seq
            )


@transaction.atomic
def readings_record(*, device_id: int, readings: list[ReadingInput]) -> ReadingsResult:
    """Store a device's readings once each and price the new consumption.

    The device row lock serialises intake per device, so a reading identity
    (device, seq) is stored at most once however frames race or repeat.
    """
    now = timezone.now()
    readings_validate(readings=readings, now=now)
    device = Device.objects.select_for_update().select_related("unit__property").get(pk=device_id)
    meter = Meter.objects.installed().select_for_update().filter(device=device).first()
    if meter is None:
        raise ReadingRejected("GenericError", "No meter is installed for this device.")

    result = ReadingsResult()
    by_seq: dict[int, ReadingInput] = {}
    for r in readings:
        if r.seq in by_seq:
            result.duplicates.append(r.seq)
        else:
            by_seq[r.seq] = r
    known = set(
        Reading.objects.filter(device=device, seq__in=list(by_seq)).values_list("seq", flat=True)
    )
    result.duplicates.extend(sorted(known))
    fresh = [by_seq[s] for s in sorted(by_seq) if s not in known]

    max_power_w = settings.SUBMETER["MAX_PLAUSIBLE_POWER_W"]
    tariff = device.unit.tariff
    rows: list[Reading] = []
    energy_wh = 0
    for r in fresh:
        quality, note = Reading.Quality.ACTUAL, ""
        if meter.rated_seq is not None and r.seq < meter.rated_seq:
            note = "arrived after a later reading; stored, not re-rated"
        elif tariff is None:
            note = "held: the unit has no tariff"
        elif meter.rated_register_wh is None or meter.rated_at is None:
            meter.rated_seq, meter.rated_register_wh, meter.rated_at = (
                r.seq,
                r.register_wh,
                r.taken_at,
            )
            note = "first reading: baseline"
        else:
            delta = r.register_wh - meter.rated_register_wh
            hours = max((r.taken_at - meter.rated_at).total_seconds(), 1.0) / 3600
            if delta < 0:
                quality, note = Reading.Quality.FLAGGED, "register went backwards; not billed"
            elif delta > max_power_w * hours:
                quality, note = Reading.Quality.FLAGGED, "implausible jump; not billed"
            else:
                energy_wh += delta
            meter.rated_seq, meter.rated_register_wh, meter.rated_at = (
                r.seq,
                r.register_wh,
                r.taken_at,
            )
        if quality == Reading.Quality.FLAGGED:
            result.flagged.append(r.seq)
        result.accepted.append(r.seq)
        rows.append(
            Reading(
                landlord_id=device.landlord_id,
                device=device,
                meter=meter,
                seq=r.seq,
                taken_at=r.taken_at,
                register_wh=r.register_wh,
                received_at=now,
                quality=quality,
                note=note,
            )
        )
    Reading.objects.bulk_create(rows)

    if fresh:
        latest = max(fresh, key=lambda x: x.seq)
        if meter.last_reading_at is None or latest.taken_at >= meter.last_reading_at:
            meter.last_register_wh, meter.last_reading_at = latest.register_wh, latest.taken_at
    meter.hold_reason = (
        "The unit has no tariff: readings are kept but not priced."
        if (tariff is None and fresh)
        else ""
    )

    unit = device.unit
    if energy_wh and tariff is not None:
        tenancy = (
            Tenancy.objects.active().filter(unit=unit).select_related("unit__property").first()
        )
        charge = usage_price(energy_wh=energy_wh, tariff=tariff, carry_nano=meter.carry_nano)
        if tenancy is not None:
            meter.carry_nano = charge.carry_nano
            usage_post(
                tenancy=tenancy,
                amount_minor=charge.amount_minor,
                energy_wh=energy_wh,
                idempotency_key=f"usage:{meter.pk}:{meter.rated_seq}",
                memo=f"{energy_wh} Wh at {tariff.price_per_kwh_minor}/kWh",
            )
    meter.save()
    device.last_seen_at = now
    device.save(update_fields=["last_seen_at"])
    if fresh:
        supply_evaluate(unit=unit, reason="usage")
        _notify_unit(unit)
    return result


# --- Relay control -----------------------------------------------------------


def desired_supply(
    *,
    billing_mode: str,
    balance_minor: int | None,
    protections: Protections | None = None,
    noticed_at: datetime | None = None,
    now: datetime | None = None,
    override: str = "",
) -> tuple[str, str]:
    """The supply a unit should have, from its state alone (pure).

    Billing decides whether the supply *may* go off; the protections
    (meters/protections.py) can then only keep it on, never delay
    reconnection. Without ``protections`` the billing decision is returned
    as it is (a notice is taken as given). A landlord's manual override wins,
    except that "off" is refused where landlord disconnection is forbidden.
    """
    if override == RelayState.ON:
        return RelayState.ON, "manual override: on"
    if override == RelayState.OFF:
        if protections is not None and not protections.landlord_may_disconnect:
            return RelayState.ON, "manual off refused: landlord disconnection is not allowed"
        return RelayState.OFF, "manual override: off"
    if billing_mode == Unit.BillingMode.PREPAID:
        if balance_minor is None:
            return RelayState.ON, "no tenant: left on"
        wants_off = balance_minor <= 0
        on_reason = "prepaid credit available"
    else:
        wants_off, on_reason = False, "postpaid"
    if protections is None:
        return (
            (RelayState.OFF, "prepaid credit used up") if wants_off else (RelayState.ON, on_reason)
        )
    state, why = automatic_supply(
        wants_off=wants_off,
        wants_off_reason="prepaid credit used up",
        on_reason=on_reason,
        protections=protections,
        noticed_at=noticed_at,
        now=now or timezone.now(),
    )
    return (RelayState.ON if state == "on" else RelayState.OFF), why


def unit_balance(unit: Unit) -> int | None:
    tenancy = Tenancy.objects.active().filter(unit=unit).first()
    if tenancy is None:
        return None
    return tenant_account(tenancy=tenancy).balance_minor


def protections_for(*, unit: Unit, tenancy: Tenancy | None) -> Protections:
    """Read a unit's protections from its property and tenancy (and the freeze hooks)."""
    prop = unit.property
    holidays = set()
    for item in prop.cutoff_holidays or []:
        try:
            holidays.add(date.fromisoformat(str(item)))
        except ValueError:
            logger.warning("property %s: ignoring bad holiday %r", prop.pk, item)
    freeze = ""
    if tenancy is not None:
        for path in settings.SUBMETER.get("DISCONNECTION_FREEZE_HOOKS", []):
            freeze = import_string(path)(tenancy=tenancy) or ""
            if freeze:
                break
    return Protections(
        tz=prop.timezone,
        days=prop.cutoff_days,
        start=prop.cutoff_start,
        end=prop.cutoff_end,
        holidays=frozenset(holidays),
        notice=timedelta(minutes=prop.cutoff_notice_minutes),
        landlord_may_disconnect=prop.landlord_may_disconnect,
        vulnerable=bool(tenancy and tenancy.vulnerable),
        freeze_reason=freeze,
    )


def cutoff_expected_at(
    *, notice: CutoffNotice, protections: Protections, now: datetime
) -> datetime | None:
    """When the scheduled cut-off will happen if nothing changes (for screens)."""
    if notice.earliest_at is None or protections.blocking_reason():
        return None
    return next_window_start(protections, max(notice.earliest_at, now))


def cutoff_amount_to_cancel(balance_minor: int) -> int:
    """What a tenant must add to cancel a scheduled cut-off: above zero, at least a top-up."""
    return max(-balance_minor + 1, settings.SUBMETER["TOPUP_MIN_MINOR"])


@dataclass(frozen=True)
class ScheduledCutoff:
    """A scheduled cut-off as the tenant is shown it: "off Mon 11:00 unless £1.00 is added"."""

    at: datetime | None
    amount_minor: int
    text: str


def cutoff_schedule(*, tenancy: Tenancy, balance_minor: int | None) -> ScheduledCutoff | None:
    """The open cut-off notice of a tenancy, as it stands now (read-only)."""
    from .alerts import clock

    notice = (
        CutoffNotice.objects.filter(tenancy=tenancy, status=CutoffNotice.Status.SCHEDULED)
        .select_related("unit__property")
        .first()
    )
    if notice is None or notice.cut_at is not None or balance_minor is None:
        return None
    unit = notice.unit
    protections = protections_for(unit=unit, tenancy=tenancy)
    at = cutoff_expected_at(notice=notice, protections=protections, now=timezone.now())
    if at is None:
        return None
    amount = cutoff_amount_to_cancel(balance_minor)
    from payments.templatetags.money import money

    text = (
        f"off {clock(at, protections.tz)} unless {money(amount, unit.property.currency)} is added"
    )
    return ScheduledCutoff(at=at, amount_minor=amount, text=text)


@transaction.atomic
def supply_evaluate(*, unit: Unit, reason: str, now: datetime | None = None) -> list[RelayCommand]:
    """Bring a unit's desired relay state, cut-off notice and alerts up to date.

    Called after every posting that changes a balance (readings, payments),
    by the periodic reconciliation (so a scheduled cut-off happens on time
    without a new reading), and after any change to protections or overrides.
    """
    from . import alerts

    now = now or timezone.now()
    unit = Unit.objects.select_related("property").get(pk=unit.pk)
    tenancy = Tenancy.objects.active().filter(unit=unit).first()
    balance = tenant_account(tenancy=tenancy).balance_minor if tenancy is not None else None
    protections = protections_for(unit=unit, tenancy=tenancy)
    notice = None
    if tenancy is not None:
        notice = (
            CutoffNotice.objects.select_for_update()
            .filter(tenancy=tenancy, status=CutoffNotice.Status.SCHEDULED)
            .first()
        )
    wants_off = unit.is_prepaid and balance is not None and balance <= 0
    if notice is not None and not wants_off:
        notice.status = CutoffNotice.Status.CANCELLED
        notice.closed_at = now
        notice.close_reason = f"balance above zero ({reason})"[:200]
        notice.save(update_fields=["status", "closed_at", "close_reason"])
        notice = None
    if (
        notice is None
        and wants_off
        and tenancy is not None
        and balance is not None
        and not protections.blocking_reason()
    ):
        notice = CutoffNotice.objects.create(
            landlord_id=unit.landlord_id,
            unit=unit,
            tenancy=tenancy,
            noticed_at=now,
            earliest_at=earliest_cutoff(protections, now),
            balance_minor=balance,
        )
        alerts.cutoff_warning_raise(notice=notice, protections=protections, now=now)
    state, why = desired_supply(
        billing_mode=unit.billing_mode,
        balance_minor=balance,
        protections=protections,
        noticed_at=notice.noticed_at if notice else None,
        now=now,
        override=unit.override_state,
    )
    issued = []
    for device in Device.objects.select_for_update().filter(unit=unit).order_by("pk"):
        if device.desired_relay != state:
            issued.append(
                relay_command_issue(device=device, state=state, reason=f"{why} ({reason})")
            )
        elif device.desired_reason != why[:200] and not issued:
            # Same state, new reason (e.g. "scheduled" became "protected"): keep screens true.
            Device.objects.filter(pk=device.pk).update(desired_reason=why[:200])
    if notice is not None and state == RelayState.OFF and notice.cut_at is None and issued:
        notice.cut_at = now
        notice.save(update_fields=["cut_at"])
    if tenancy is not None and balance is not None:
        alerts.tenancy_alerts_evaluate(
            tenancy=tenancy, unit=unit, balance_minor=balance, protections=protections, now=now
        )
    if issued or notice is not None:
        _notify_unit(unit)
    return issued


class OverrideRefused(Exception):
    pass


@transaction.atomic
def supply_override_set(*, unit: Unit, state: str, reason: str, actor_id: int | None) -> Unit:
    """A landlord forces the supply on or off, with a reason; audit-logged."""
    reason = reason.strip()
    if state not in (RelayState.ON, RelayState.OFF):
        raise OverrideRefused("Choose on or off.")
    if not reason:
        raise OverrideRefused("Give a reason for the manual override.")
    unit = Unit.objects.select_for_update().select_related("property").get(pk=unit.pk)
    if state == RelayState.OFF and not unit.property.landlord_may_disconnect:
        raise OverrideRefused(
            "Landlord disconnection is switched off for this property; the supply cannot be "
            "turned off by hand."
        )
    unit.override_state, unit.override_reason = state, reason[:300]
    unit.override_by_id, unit.override_at = actor_id, timezone.now()
    unit.save(update_fields=["override_state", "override_reason", "override_by", "override_at"])
    AuditEvent.objects.create(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action=f"supply.override.{state}",
        subject=f"unit {unit.pk} {unit.name}",
        reason=reason[:300],
    )
    supply_evaluate(unit=unit, reason=f"manual override {state}: {reason}"[:120])
    return unit


@transaction.atomic
def supply_override_release(*, unit: Unit, actor_id: int | None, reason: str = "") -> Unit:
    """Back to the automatic rules (and their protections); audit-logged."""
    unit = Unit.objects.select_for_update().get(pk=unit.pk)
    if not unit.override_state:
        return unit
    previous = unit.override_state
    unit.override_state, unit.override_reason = "", ""
    unit.override_by_id, unit.override_at = None, None
    unit.save(update_fields=["override_state", "override_reason", "override_by", "override_at"])
    AuditEvent.objects.create(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="supply.override.release",
        subject=f"unit {unit.pk} {unit.name}",
        reason=(reason.strip() or f"released manual {previous}")[:300],
    )
    supply_evaluate(unit=unit, reason="manual override released")
    return unit


def supply_reconcile(*, now: datetime | None = None) -> int:
    """Periodic: re-evaluate units whose scheduled cut-off is due and check device silence.

    Each unit is evaluated in its own transaction; evaluation is idempotent,
    so running this on several consumers at once is harmless.
    """
    from . import alerts

    now = now or timezone.now()
    unit_ids = set(
        CutoffNotice.objects.filter(
            status=CutoffNotice.Status.SCHEDULED, cut_at__isnull=True, earliest_at__lte=now
        ).values_list("unit_id", flat=True)
    )
    # Supplies that are off: a protection switched on since (or credit posted
    # outside the payment path) brings them back within a minute.
    unit_ids |= set(
        Device.objects.filter(desired_relay=RelayState.OFF).values_list("unit_id", flat=True)
    )
    for unit in Unit.objects.filter(pk__in=unit_ids).order_by("pk"):
        supply_evaluate(unit=unit, reason="scheduled check", now=now)
    alerts.device_offline_check(now=now)
    return len(unit_ids)


def relay_command_issue(
    *,
    device: Device,
    state: str,
    reason: str,
    source: str = RelayCommand.Source.AUTOMATIC,
    actor_id: int | None = None,
) -> RelayCommand:
    """Issue an absolute command with the next generation. ``device`` must be locked."""
    now = timezone.now()
    RelayCommand.objects.filter(
        device=device, status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT]
    ).update(status=RelayCommand.Status.SUPERSEDED)
    generation = max(device.desired_generation, device.reported_generation) + 1
    command = RelayCommand.objects.create(
        landlord_id=device.landlord_id,
        device=device,
        generation=generation,
        state=state,
        reason=reason[:200],
        source=source,
        next_attempt_at=now,
    )
    device.desired_relay, device.desired_generation = state, generation
    device.desired_reason = reason[:200]
    device.save(update_fields=["desired_relay", "desired_generation", "desired_reason"])
    AuditEvent.objects.create(
        landlord_id=device.landlord_id,
        actor_id=actor_id,
        action=f"relay.{state}",
        subject=f"device {device.ident}",
        reason=reason[:300],
        data={"generation": generation, "source": source},
    )
    broadcast_on_commit(device_group(device.pk), {"type": "relay.wake"})
    return command


def relay_command_due(*, device_id: int, now: datetime | None = None) -> RelayCommand | None:
    """The one outstanding command to (re)send now, if any."""
    now = now or timezone.now()
    return (
        RelayCommand.objects.filter(
            device_id=device_id,
            status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
            next_attempt_at__lte=now,
        )
        .order_by("-generation")
        .first()
    )


def relay_next_attempt_at(*, device_id: int) -> datetime | None:
    cmd = (
        RelayCommand.objects.filter(
            device_id=device_id,
            status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
        )
        .order_by("-generation")
        .first()
    )
    return cmd.next_attempt_at if cmd else None


@transaction.atomic
def relay_command_mark_sent(*, command_id: int) -> RelayCommand:
    cmd = RelayCommand.objects.select_for_update().get(pk=command_id)
    now = timezone.now()
    cfg = settings.SUBMETER
    delay = min(cfg["RELAY_RETRY_SECONDS"] * (2**cmd.attempts), cfg["RELAY_RETRY_MAX_SECONDS"])
    cmd.attempts += 1
    cmd.last_sent_at = now
    cmd.next_attempt_at = now + timedelta(seconds=delay)
    if cmd.status == RelayCommand.Status.PENDING:
        cmd.status = RelayCommand.Status.SENT
    cmd.save(update_fields=["attempts", "last_sent_at", "next_attempt_at", "status"])
    return cmd


@transaction.atomic
def relay_resend_now(*, device_id: int) -> None:
    """After a (re)connect or boot: the outstanding command goes out at once."""
    RelayCommand.objects.filter(
        device_id=device_id,
        status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
    ).update(next_attempt_at=timezone.now())


@transaction.atomic
def relay_report(*, device_id: int, state: str, generation: int) -> Device:
    """Record the relay state a device reports and reconcile it with the desired state."""
    device = Device.objects.select_for_update().select_related("unit").get(pk=device_id)
    now = timezone.now()
    if device.reported_relay == RelayState.OFF and state == RelayState.ON:
        from . import alerts

        alerts.supply_restored_raise(device=device, now=now)
    device.reported_relay = state
    device.reported_generation = generation
    device.reported_at = now
    device.last_seen_at = now
    device.save(
        update_fields=["reported_relay", "reported_generation", "reported_at", "last_seen_at"]
    )
    if device.desired_generation == 0:
        # Nothing was ever commanded: derive the first command from the unit's state.
        supply_evaluate(unit=device.unit, reason="device first seen")
        device.refresh_from_db()
    if state == device.desired_relay and generation >= device.desired_generation:
        RelayCommand.objects.filter(
            device=device,
            generation__lte=device.desired_generation,
            status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
        ).update(status=RelayCommand.Status.ACKED, acked_at=now)
    elif generation >= device.desired_generation:
        # The device is not where it should be although it has seen the newest
        # generation (rebooted, switched by hand, or never commanded): a new
        # command with a higher generation, which it cannot ignore as stale.
        relay_command_issue(
            device=device,
            state=device.desired_relay,
            reason=f"device reported {state}; restoring {device.desired_relay}",
        )
    else:
        # The device has not applied the newest command yet: send it again now.
        RelayCommand.objects.filter(device=device, generation=device.desired_generation).update(
            status=RelayCommand.Status.PENDING, next_attempt_at=now, acked_at=None
        )
        broadcast_on_commit(device_group(device.pk), {"type": "relay.wake"})
    _notify_unit(device.unit)
    return device


@transaction.atomic
def relay_report_unversioned(*, device_id: int, state: str) -> Device:
    """A report from a device without generations (Shelly), at the last confirmed one.

    If a newer command is outstanding, this only says the device has not applied
    it yet, so it is re-sent; if none is, a state that differs from the desired one
    (a button press, a reboot) is corrected with a new generation.
    """
    generation = (
        Device.objects.filter(pk=device_id).values_list("reported_generation", flat=True).get()
    )
    return relay_report(device_id=device_id, state=state, generation=generation)


@transaction.atomic
def device_presence(*, device_id: int, connected: bool, firmware: str | None = None) -> None:
    fields = {"connected": connected, "last_seen_at": timezone.now()}
    if firmware is not None:
        fields["firmware"] = firmware[:100]
    Device.objects.filter(pk=device_id).update(**fields)
    device = Device.objects.select_related("unit").get(pk=device_id)
    if connected:
        from . import alerts

        alerts.device_online(device=device)
    _notify_unit(device.unit)


def devices_with_work(*, device_ids: list[int]) -> set[int]:
    """Of these devices, those with a command due or an alert not yet on their display."""
    from .models import Alert

    now = timezone.now()
    due: set[int] = set()
    for start in range(0, len(device_ids), 5000):
        chunk = device_ids[start : start + 5000]
        due.update(
            RelayCommand.objects.filter(
                device_id__in=chunk,
                status__in=[RelayCommand.Status.PENDING, RelayCommand.Status.SENT],
                next_attempt_at__lte=now,
            ).values_list("device_id", flat=True)
        )
        by_unit: dict[int, list[int]] = {}
        for pk, unit_id in Device.objects.filter(pk__in=chunk).values_list("pk", "unit_id"):
            by_unit.setdefault(unit_id, []).append(pk)
        for unit_id in Alert.objects.filter(
            unit_id__in=list(by_unit),
            audience=Alert.Audience.TENANT,
            device_notified_at__isnull=True,
            created_at__gte=now - timedelta(days=1),
        ).values_list("unit_id", flat=True):
            due.update(by_unit[unit_id])
    return due


NOTIFY_LEVELS = {
    "low_credit": "warning",
    "low_runway": "warning",
    "cutoff_warning": "critical",
    "supply_restored": "info",
}


def device_notifications_due(*, device_id: int) -> list[dict[str, object]]:
    """Tenant alerts this device's display should show, as ``Notify`` payloads."""
    from .alerts import alerts_for_device

    return [
        {
            "id": a.pk,
            "kind": a.kind,
            "level": NOTIFY_LEVELS.get(a.kind, "info"),
            "message": a.message[:160],
            "beep": a.kind in ("low_credit", "cutoff_warning"),
        }
        for a in alerts_for_device(device_id=device_id, now=timezone.now())
    ]


def device_notification_acked(*, device_id: int, alert_id: int) -> None:
    """The device showed an alert; only an alert for its own unit can be marked."""
    from .alerts import alert_device_notified

    unit_id = Device.objects.filter(pk=device_id).values_list("unit_id", flat=True).first()
    if unit_id is not None:
        alert_device_notified(alert_id=alert_id, unit_id=unit_id)


def simulated_device_prepare(
    *, device: Device, power_w: float, speed: float, interval_s: float = 2.0
) -> SimDevice:
    """Give a device a fresh secret and a simulator that continues its register.

    Secrets are stored hashed, so a simulator can only take over a device by
    replacing its secret (a real device with the old one is locked out).
    """
    secret = secrets.token_urlsafe(24)
    device.set_secret(secret)
    device.save(update_fields=["secret_hash"])
    meter = Meter.objects.installed().filter(device=device).first()
    return SimDevice(
        ident=device.ident,
        secret=secret,
        power_w=power_w,
        speed=speed,
        interval_s=interval_s,
        register_wh=float(meter.last_register_wh or 0) if meter else 0.0,
        relay=device.reported_relay if device.reported_relay != RelayState.UNKNOWN else "on",
        generation=device.reported_generation,
        protocol=device.protocol,
    )
