"""Device login, presence, and what a connected device has waiting (commands,
display notices); registering a device to a unit and giving it a new secret,
from the landlord's pages."""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from config import ratelimit
from config.live import broadcast_on_commit, device_group, unit_changed, units_changed
from landlord.audit import audit_record
from landlord.models import Unit
from supply import alerts
from supply.alerts import alert_device_notified, alerts_for_device, units_with_device_alerts
from supply.relay import relay_sendable, relays_resend_now

from .models import (
    Alert,
    Device,
    Meter,
    Protocol,
    RelayCommand,
    RelayState,
)
from .readings import readings_rate
from .simulator import SimDevice

logger = logging.getLogger(__name__)


def device_authenticate(*, ident: str, secret: str) -> Device | None:
    device = Device.objects.filter(ident=ident).first()
    if device is None:
        # Same work as a real check, so timing does not reveal which idents exist.
        Device(secret_hash="sha256$0000$" + "0" * 64).check_secret(secret)
        return None
    return device if device.check_secret(secret) else None


class DeviceLoginLimited(Exception):
    """This device name has failed to log in too often from this address."""


def _login_key(address: str, ident: str) -> str:
    # Per address *and* device name: the meters of a building often share one
    # public address, and one misconfigured meter must not lock the others out
    # (they could not reconnect, nor receive a command to restore supply).
    return f"{address}|{ident}"


def device_login_failed(*, address: str, ident: str) -> None:
    ratelimit.hit(
        scope="device-auth",
        ident=_login_key(address, ident),
        window_seconds=int(settings.SUBMETER["DEVICE_AUTH_WINDOW_SECONDS"]),
    )


@transaction.atomic
def device_presence(*, device_id: int, connected: bool, firmware: str | None = None) -> None:
    fields = {"connected": connected, "last_seen_at": timezone.now()}
    if firmware is not None:
        fields["firmware"] = firmware[:100]
    Device.objects.filter(pk=device_id).update(**fields)
    device = Device.objects.select_related("unit").get(pk=device_id)
    if connected:
        alerts.device_online(device=device)
    unit_changed(device.unit)


@dataclass(frozen=True)
class LoginRequest:
    """One socket's login, for ``devices_login``."""

    address: str
    ident: str
    secret: str | None


def devices_login(*, requests: list[LoginRequest]) -> list[Device | DeviceLoginLimited | None]:
    """A device login for many sockets at once: one rate-limit read and one
    device query. Each answer is the device, None (counted as a failure) or a
    ``DeviceLoginLimited`` to raise, in the order of ``requests``."""
    limit = int(settings.SUBMETER["DEVICE_AUTH_MAX_FAILURES"])
    keys = [_login_key(r.address, r.ident) for r in requests]
    limited = ratelimit.limited_many(scope="device-auth", idents=keys, limit=limit)
    wanted = {r.ident for r, over in zip(requests, limited, strict=True) if not over and r.secret}
    found = {d.ident: d for d in Device.objects.filter(ident__in=wanted)} if wanted else {}
    # Failures counted in this batch, so a repeated address and name is
    # limited within it as it would be one login after another.
    failures: dict[str, int] = {}
    answers: list[Device | DeviceLoginLimited | None] = []
    for request, key, over in zip(requests, keys, limited, strict=True):
        if over or failures.get(key, 0) >= limit:
            answers.append(DeviceLoginLimited())
            continue
        device = None
        if request.secret is not None:
            candidate = found.get(request.ident)
            if candidate is None:
                # Same work as a real check, as in device_authenticate.
                Device(secret_hash="sha256$0000$" + "0" * 64).check_secret(request.secret)
            elif candidate.check_secret(request.secret):
                device = candidate
        if device is None:
            failures[key] = ratelimit.hit(
                scope="device-auth",
                ident=key,
                window_seconds=int(settings.SUBMETER["DEVICE_AUTH_WINDOW_SECONDS"]),
            )
        answers.append(device)
    return answers


@transaction.atomic
def devices_presence_apply(*, attach: list[int], detach: list[int]) -> set[int]:
    """Many sockets' presence changes in set-based statements: for the devices in
    ``attach``, connected with their outstanding command due at once (a new
    connection gets its full attempts again); ``device_presence(connected=False)`` for those
    in ``detach`` (a device in one list only). Returns the attached devices with
    work waiting (a command, or an alert for the display).

    Screens get one ``unit.changed`` per unit of the batch."""
    now = timezone.now()
    if attach:
        Device.objects.filter(pk__in=attach).update(connected=True, last_seen_at=now)
    if detach:
        Device.objects.filter(pk__in=detach).update(connected=False, last_seen_at=now)
    devices = list(Device.objects.filter(pk__in=attach + detach).select_related("unit"))
    attached = set(attach)
    alerts.devices_online(devices=[d for d in devices if d.pk in attached])
    units_changed(d.unit for d in devices)
    with_work = relays_resend_now(device_ids=attach)
    idle = [d for d in devices if d.pk in attached and d.pk not in with_work]
    shown = units_with_device_alerts(unit_ids=sorted({d.unit_id for d in idle}), now=now)
    return with_work | {d.pk for d in idle if d.unit_id in shown}


def devices_with_work(*, device_ids: list[int]) -> set[int]:
    """Of these devices, those with a command due or an alert not yet on their display."""
    now = timezone.now()
    due: set[int] = set()
    for start in range(0, len(device_ids), 5000):
        chunk = device_ids[start : start + 5000]
        due.update(
            RelayCommand.objects.filter(
                relay_sendable(), device_id__in=chunk, next_attempt_at__lte=now
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


# --- Registering devices (landlord pages) -----------------------------------------


class DeviceRegistrationError(Exception):
    """The device cannot be registered or changed; the message is for the landlord."""


# What a device can send as its name: in a Basic credential (no ':') and in a
# Shelly's address (no '/'); Shelly ids are letters, digits and dashes.
IDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _new_secret() -> str:
    return secrets.token_urlsafe(24)


@transaction.atomic
def device_register(
    *, unit: Unit, ident: str, protocol: str, serial: str = "", actor_id: int | None
) -> tuple[Device, str]:
    """A new device and its meter at ``unit``; returns the device and its secret,
    which is stored only hashed (the caller shows it once)."""
    ident = ident.strip()
    if not IDENT_RE.match(ident):
        raise DeviceRegistrationError(
            "The device id may have up to 64 letters, digits, dots, dashes and underscores, "
            "starting with a letter or digit."
        )
    if protocol not in Protocol.values:
        raise DeviceRegistrationError("Choose the device's protocol.")
    serial = serial.strip() or f"M-{ident}"
    if len(serial) > 64:
        raise DeviceRegistrationError("The meter serial may have up to 64 characters.")
    # One registration per unit at a time: the unit's row is the lock.
    unit = Unit.objects.select_for_update().get(pk=unit.pk)
    installed = Meter.objects.installed().filter(unit_id=unit.pk).select_related("device").first()
    if installed is not None:
        raise DeviceRegistrationError(
            f"This unit already has meter {installed.serial} on device {installed.device.ident}. "
            "Replace that meter instead, or use another unit."
        )
    if Device.objects.filter(ident=ident).exists():
        raise DeviceRegistrationError(
            f"A device with the id {ident} is already registered. Each device is registered once; "
            "check the id on the device's label."
        )
    secret = _new_secret()
    device = Device(landlord_id=unit.landlord_id, unit=unit, ident=ident, protocol=protocol)
    device.set_secret(secret)
    try:
        with transaction.atomic():
            device.save()
    except IntegrityError:
        raise DeviceRegistrationError(
            f"A device with the id {ident} is already registered."
        ) from None
    Meter.objects.create(landlord_id=unit.landlord_id, unit=unit, device=device, serial=serial)
    audit_record(
        landlord_id=unit.landlord_id,
        actor_id=actor_id,
        action="device.registered",
        device=device,
        data={"unit": unit.pk, "protocol": protocol, "serial": serial},
    )
    unit_changed(unit)
    return device, secret


@transaction.atomic
def device_secret_rotate(*, device: Device, actor_id: int | None) -> str:
    """A new secret for the device; the old one stops working at once: its open
    socket is closed and a connect with it is refused."""
    device = Device.objects.select_for_update().get(pk=device.pk)
    secret = _new_secret()
    device.set_secret(secret)
    device.save(update_fields=["secret_hash"])
    # A socket still open with the old secret is closed (4401) once this commits.
    broadcast_on_commit(device_group(device.pk), {"type": "device.secret_changed"})
    audit_record(
        landlord_id=device.landlord_id,
        actor_id=actor_id,
        action="device.secret_rotated",
        device=device,
        data={},
    )
    return secret


@transaction.atomic
def meter_baseline_record(
    *, meter: Meter, register_wh: int, at: datetime, actor_id: int | None
) -> bool:
    """Take a register value read by hand as a meter's first reading (its billing
    baseline), when the meter has none yet; returns whether it was recorded."""
    if register_wh < 0:
        raise DeviceRegistrationError("A register reading cannot be negative.")
    # Readings the device already sent count first.
    readings_rate(device_id=meter.device_id)
    meter = Meter.objects.select_for_update().get(pk=meter.pk)
    if meter.rated_at is not None or meter.last_reading_at is not None:
        return False
    meter.rated_at, meter.rated_register_wh = at, register_wh
    meter.last_reading_at, meter.last_register_wh = at, register_wh
    meter.save(
        update_fields=["rated_at", "rated_register_wh", "last_reading_at", "last_register_wh"]
    )
    audit_record(
        landlord_id=meter.landlord_id,
        actor_id=actor_id,
        action="meter.baseline",
        meter=meter,
        data={"register_wh": register_wh, "at": at.isoformat()},
    )
    return True
