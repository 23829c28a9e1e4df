"""Device login, presence, and what a connected device has waiting (commands,
display notices)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config import ratelimit
from config.live import unit_changed, units_changed
from supply import alerts
from supply.alerts import alert_device_notified, alerts_for_device, units_with_device_alerts
from supply.relay import relay_resend_now, relay_sendable, relays_resend_now

from .models import (
    Alert,
    Device,
    Meter,
    RelayCommand,
    RelayState,
)
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


def device_login(*, address: str, ident: str, secret: str | None) -> Device | None:
    """A device's socket login: the device, or None (counted as a failure).

    Raises ``DeviceLoginLimited`` while ``ident`` has failed
    ``DEVICE_AUTH_MAX_FAILURES`` times from ``address`` within the window.
    """
    limit = int(settings.SUBMETER["DEVICE_AUTH_MAX_FAILURES"])
    if ratelimit.is_limited(scope="device-auth", ident=_login_key(address, ident), limit=limit):
        raise DeviceLoginLimited
    device = None
    if secret is not None:
        device = device_authenticate(ident=ident, secret=secret)
    if device is None:
        device_login_failed(address=address, ident=ident)
    return device


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


@transaction.atomic
def device_attach(*, device_id: int) -> bool:
    """A device's socket is up: mark it connected, have its outstanding command
    go out at once, and say whether there is work for it (a command, or an
    alert for its display), all in one call from the socket."""
    device_presence(device_id=device_id, connected=True)
    if relay_resend_now(device_id=device_id, connected=True):
        return True
    return bool(alerts_for_device(device_id=device_id, now=timezone.now()))


@dataclass(frozen=True)
class LoginRequest:
    """One socket's login, for ``devices_login``."""

    address: str
    ident: str
    secret: str | None


def devices_login(*, requests: list[LoginRequest]) -> list[Device | DeviceLoginLimited | None]:
    """``device_login`` for many sockets at once: one rate-limit read and one
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
    """Many sockets' presence changes in set-based statements: ``device_attach``
    for the devices in ``attach``, ``device_presence(connected=False)`` for those
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
