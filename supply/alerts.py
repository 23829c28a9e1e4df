"""Alerts to tenants and landlords: low credit, runway, cut-off warning, restored, offline,
relay not switching.

An alert is a row (``meters.models.Alert``). Condition alerts stay open
until the condition clears past a margin (hysteresis), and a unique
constraint allows one open alert per subject and kind, so a balance that
wobbles around a threshold, or a reading every two seconds, never repeats
one. Each new alert is delivered all after commit: the tenant's or
landlord's live page re-renders (pages read open alerts from the database),
an email (a task), and for tenant alerts a Web Push to the tenant's phones (a
task of its own, so a push failure never holds back the email) and a native
``Notify`` call to the unit's meter (the device socket sends alerts whose
``device_notified_at`` is empty, so a lost wake-up only delays it). Email and
push follow the same tenant choices (``tenant_notification_choice``). An email
still owed a while later (its retries used up, its task lost) is queued again
by a periodic sweep (``alert_emails_sweep``); the claim under the alert's row
lock keeps it to one message.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import CharField, DateTimeField, Exists, OuterRef, Q
from django.tasks import task
from django.urls import reverse
from django.utils import timezone

from config.formats import clock
from config.formats import format_money as money
from config.live import (
    broadcast_many_on_commit,
    broadcast_on_commit,
    device_group,
    landlord_group,
    unit_changed_message,
    unit_changed_notify,
)
from config.prepared import Param, Prepared
from landlord.models import Membership, Tenancy, TenantNotifications, Unit
from landlord.push import push_configured, push_payload, tenant_push_send
from meters.models import Alert, CutoffNotice, Device, Meter, Reading, RelayCommand
from payments.models import Account
from payments.tariffs import current_price_per_kwh

from .cutoff import cutoff_amount_to_cancel
from .protections import Protections, next_window_start
from .runway import mean_power_w, quarter_up, runway_forecast

logger = logging.getLogger(__name__)


def _cfg(name: str) -> float:
    return float(settings.SUBMETER[name])


def _open(alert: Alert) -> Alert | None:
    """Store a new alert unless one of its kind is already open for the subject."""
    if (
        alert.cleared_at is None
        and Alert.objects.filter(
            subject_key=alert.subject_key, kind=alert.kind, cleared_at__isnull=True
        ).exists()
    ):
        return None
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:  # a concurrent evaluation opened it first
        return None
    _deliver(alert)
    return alert


def _clear(subject_key: str, kind: str, now: datetime) -> int:
    return Alert.objects.filter(subject_key=subject_key, kind=kind, cleared_at__isnull=True).update(
        cleared_at=now
    )


def _deliver(alert: Alert) -> None:
    unit_changed_notify(
        landlord_id=alert.landlord_id,
        unit_id=alert.unit_id,
        tenancy_ids=[alert.tenancy_id] if alert.tenancy_id else [],
    )
    if alert.audience == Alert.Audience.TENANT:
        for device_id in Device.objects.filter(unit_id=alert.unit_id).values_list("pk", flat=True):
            broadcast_on_commit(device_group(device_id), {"type": "relay.wake"})
    alert_id = alert.pk
    transaction.on_commit(lambda: alert_email_task.enqueue(alert_id), robust=True)
    if alert.audience == Alert.Audience.TENANT and alert.tenancy_id and push_configured():
        transaction.on_commit(lambda: alert_push_task.enqueue(alert_id), robust=True)


def _tenant_key(tenancy: Tenancy) -> str:
    return f"tenancy:{tenancy.pk}"


def _event(*, now: datetime, **fields: Any) -> Alert | None:
    return _open(Alert(created_at=now, cleared_at=now, **fields))


# --- Tenant alerts -------------------------------------------------------


def average_power_w(*, unit: Unit) -> float | None:
    """Average power over the hour before the latest reading, from the register."""
    meter = Meter.objects.installed().filter(unit=unit).first()
    if meter is None or meter.last_reading_at is None or meter.last_register_wh is None:
        return None
    first = (
        Reading.objects.filter(
            meter=meter,
            quality=Reading.Quality.ACTUAL,
            taken_at__gte=meter.last_reading_at - timedelta(hours=1),
        )
        .order_by("taken_at")
        .values_list("taken_at", "register_wh")
        .first()
    )
    if first is None:
        return None
    return mean_power_w(
        start_at=first[0],
        start_wh=first[1],
        end_at=meter.last_reading_at,
        end_wh=meter.last_register_wh,
    )


def tenancy_alerts_evaluate(
    *,
    tenancy: Tenancy,
    unit: Unit,
    balance_minor: int,
    protections: Protections,
    now: datetime,
) -> None:
    """Open or clear the low-credit and low-runway alerts (called by supply_evaluate)."""
    if not unit.is_prepaid:
        return
    key = _tenant_key(tenancy)
    currency = unit.property.currency
    threshold = low_credit_threshold(tenancy=tenancy, unit=unit)
    margin = max(threshold // 4, int(_cfg("LOW_CREDIT_HYSTERESIS_MINOR")))
    if balance_minor < threshold:
        _open(
            Alert(
                landlord_id=unit.landlord_id,
                unit=unit,
                tenancy=tenancy,
                kind=Alert.Kind.LOW_CREDIT,
                audience=Alert.Audience.TENANT,
                subject_key=key,
                created_at=now,
                message=(
                    f"Low credit: {money(balance_minor, currency)} left "
                    f"(below {money(threshold, currency)}). Top up to keep your supply on."
                ),
            )
        )
    elif balance_minor >= threshold + margin:
        _clear(key, Alert.Kind.LOW_CREDIT, now)

    if balance_minor <= 0:
        # Nothing left to forecast: "credit has run out" and the disconnection
        # warning speak now, and a forecast beside them would contradict them.
        _clear(key, Alert.Kind.LOW_RUNWAY, now)
        return
    price = current_price_per_kwh(unit=unit, now=now)
    if price is None:
        return
    runs_out = runway_forecast(
        balance_minor=balance_minor,
        power_w=average_power_w(unit=unit),
        price_per_kwh_minor=float(price),
        now=now,
    )
    limit = timedelta(hours=_cfg("LOW_RUNWAY_HOURS"))
    if runs_out is None:
        if balance_minor >= threshold + margin:
            _clear(key, Alert.Kind.LOW_RUNWAY, now)
        return
    if balance_minor > 0 and runs_out - now < limit:
        _open(
            Alert(
                landlord_id=unit.landlord_id,
                unit=unit,
                tenancy=tenancy,
                kind=Alert.Kind.LOW_RUNWAY,
                audience=Alert.Audience.TENANT,
                subject_key=key,
                created_at=now,
                message=runway_message(runs_out=runs_out, protections=protections),
            )
        )
    elif runs_out - now >= limit * 1.25:
        _clear(key, Alert.Kind.LOW_RUNWAY, now)


def low_credit_threshold(*, tenancy: Tenancy, unit: Unit) -> int:
    """The unit's low-credit threshold, or the tenant's own if higher (a tenant may
    ask to be warned earlier, never later). Read with the tenancy where it is hot."""
    prefs = tenancy_notifications(tenancy)
    chosen = prefs.low_credit_threshold_minor if prefs is not None else None
    return max(unit.low_credit_threshold_minor, chosen or 0)


def runway_message(*, runs_out: datetime, protections: Protections) -> str:
    """'Your credit lasts until Thu ~18:00 …' with the earliest possible cut-off after it."""
    # Rounded up, never to the nearest quarter: a time already past would read wrong.
    until = clock(quarter_up(runs_out, protections.tz), protections.tz, approx=True)
    text = f"At current usage your credit lasts until {until}"
    if protections.blocking_reason():
        return f"{text}; your supply is protected from automatic disconnection."
    earliest = runs_out + protections.notice
    cut = next_window_start(protections, earliest)
    if cut is None:
        return f"{text}."
    if cut == earliest:
        # Inside the window: as much an estimate as the run-out itself.
        cut_text = clock(cut, protections.tz, approx=True)
        if cut_text == until:
            return f"{text}; the supply could be switched off soon after."
        return f"{text}; the supply could be switched off from {cut_text}."
    return f"{text}; the supply could be switched off from {clock(cut, protections.tz)}."


def cutoff_warning_raise(
    *, notice: CutoffNotice, protections: Protections, now: datetime
) -> Alert | None:
    unit = notice.unit
    when = notice.earliest_at
    amount = money(cutoff_amount_to_cancel(notice.balance_minor), unit.property.currency)
    text = (
        f"Your credit has run out: supply off {clock(when, protections.tz)} unless {amount} "
        "is added."
        if when
        else "Your credit has run out. Top up to avoid disconnection."
    )
    return _event(
        landlord_id=unit.landlord_id,
        unit=unit,
        tenancy=notice.tenancy,
        kind=Alert.Kind.CUTOFF_WARNING,
        audience=Alert.Audience.TENANT,
        subject_key=_tenant_key(notice.tenancy),
        message=text,
        now=now,
    )


def supply_restored_raise(*, device: Device, now: datetime) -> Alert | None:
    tenancy = Tenancy.objects.active().filter(unit_id=device.unit_id).first()
    if tenancy is None:
        return None
    return _event(
        landlord_id=device.landlord_id,
        unit_id=device.unit_id,
        tenancy=tenancy,
        kind=Alert.Kind.SUPPLY_RESTORED,
        audience=Alert.Audience.TENANT,
        subject_key=_tenant_key(tenancy),
        message="Your supply is back on.",
        now=now,
    )


# --- Landlord alerts -----------------------------------------------------


def device_offline_check(*, now: datetime) -> int:
    """Open an alert for each device silent longer than the limit (periodic)."""
    limit = timedelta(
        seconds=_cfg("DEVICE_HEARTBEAT_SECONDS") * _cfg("DEVICE_OFFLINE_MISSED_HEARTBEATS")
    )
    opened = 0
    # Devices already alerted are left out: a fleet with many meters offline
    # (uninstalled, or after an outage) costs one query a minute, not one each.
    already = Alert.objects.filter(
        device=OuterRef("pk"), kind=Alert.Kind.DEVICE_OFFLINE, cleared_at__isnull=True
    )
    silent = (
        Device.objects.filter(last_seen_at__lt=now - limit)
        .exclude(Exists(already))
        .select_related("unit__property")
    )
    for device in silent:
        seen = device.last_seen_at
        assert seen is not None
        alert = _open(
            Alert(
                landlord_id=device.landlord_id,
                unit=device.unit,
                device=device,
                kind=Alert.Kind.DEVICE_OFFLINE,
                audience=Alert.Audience.LANDLORD,
                subject_key=f"device:{device.pk}",
                created_at=now,
                message=(
                    f"Meter {device.ident} ({device.unit.name}) has been silent since "
                    f"{clock(seen, device.unit.property.timezone)}."
                ),
            )
        )
        opened += alert is not None
    return opened


def device_online(*, device: Device) -> None:
    if _clear(f"device:{device.pk}", Alert.Kind.DEVICE_OFFLINE, timezone.now()):
        unit_changed_notify(landlord_id=device.landlord_id, unit_id=device.unit_id)


def devices_online(*, devices: list[Device]) -> None:
    """``device_online`` for many devices: one update, one broadcast per unit."""
    if not devices:
        return
    by_key = {f"device:{device.pk}": device for device in devices}
    open_offline = Alert.objects.filter(
        subject_key__in=list(by_key), kind=Alert.Kind.DEVICE_OFFLINE, cleared_at__isnull=True
    )
    cleared = {by_key[key] for key in open_offline.values_list("subject_key", flat=True)}
    if not cleared:
        return
    open_offline.update(cleared_at=timezone.now())
    pairs = sorted({(d.landlord_id, d.unit_id) for d in cleared})
    broadcast_many_on_commit(
        [(landlord_group(ll), unit_changed_message(unit)) for ll, unit in pairs]
    )


def relay_not_switching_raise(
    *, device: Device, command: RelayCommand, reported: str, now: datetime
) -> Alert | None:
    message = (
        f"The relay of meter {device.ident} ({device.unit.name}) does not switch "
        f"{command.state}: it still reports {reported} after {command.attempts} attempts. "
        "Commands to it have stopped until it reconnects; check the relay and its wiring."
    )
    return _open(
        Alert(
            landlord_id=device.landlord_id,
            unit_id=device.unit_id,
            device=device,
            kind=Alert.Kind.RELAY_NOT_SWITCHING,
            audience=Alert.Audience.LANDLORD,
            subject_key=f"device:{device.pk}",
            created_at=now,
            message=message[:300],
        )
    )


def relay_switching_again(*, device: Device, now: datetime) -> None:
    if _clear(f"device:{device.pk}", Alert.Kind.RELAY_NOT_SWITCHING, now):
        unit_changed_notify(landlord_id=device.landlord_id, unit_id=device.unit_id)


# --- Delivery --------------------------------------------------------------


# Which tenant choice switches the email of an alert kind; a disconnection
# warning has none: it is always sent, at once.
EMAIL_SWITCHES: dict[str, str] = {
    Alert.Kind.LOW_CREDIT: "email_low_credit",
    Alert.Kind.LOW_RUNWAY: "email_low_credit",
    Alert.Kind.SUPPLY_RESTORED: "email_supply_restored",
}


def tenancy_notifications(tenancy: Tenancy) -> TenantNotifications | None:
    """The tenant's notification choices, or None where they never chose."""
    try:
        return tenancy.notifications
    except TenantNotifications.DoesNotExist:
        return None


def tenant_notification_choice(
    *, kind: str, prefs: TenantNotifications | None, now: datetime, tz: str
) -> tuple[bool, datetime | None]:
    """(send at all, hold until): the tenant's switches and quiet hours for an alert's
    email and push. A disconnection warning is never switched off nor held back.
    A kind without a switch (a bill reminder) is held in quiet hours only."""
    if prefs is None or kind == Alert.Kind.CUTOFF_WARNING:
        return True, None
    switch = EMAIL_SWITCHES.get(kind)
    if switch is not None and not getattr(prefs, switch):
        return False, None
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is None or end is None or start == end:
        return True, None
    zone = zoneinfo.ZoneInfo(tz)
    local = timezone.localtime(now, zone)
    t = local.time()
    quiet = (start <= t < end) if start < end else (t >= start or t < end)
    if not quiet:
        return True, None
    until = datetime.combine(local.date(), end, zone)
    if until <= local:
        until = datetime.combine(local.date() + timedelta(days=1), end, zone)
    return True, until


# A failed alert email is tried again after each of these delays; after the last
# one the sweep (``alert_emails_sweep``) tries it every EMAIL_SWEEP_RETRY while it
# is younger than EMAIL_SWEEP_WINDOW: the SMTP server may be down for a while.
EMAIL_RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1))
EMAIL_SWEEP_RETRY = timedelta(minutes=10)
# An email not sent within a day is given up: nobody wants day-old news, and the
# sweep reads a bounded set.
EMAIL_SWEEP_WINDOW = timedelta(hours=24)
# A queued task (the first send, the end of quiet hours, a retry) gets this long
# to run before the sweep takes the email up: the claim stops both sending, the
# grace stops the sweep doubling work that is about to happen anyway.
EMAIL_SWEEP_GRACE = timedelta(minutes=2)
# The most emails one sweep queues; the rest wait for the next minute.
EMAIL_SWEEP_BATCH = 500
# The attempt number the sweep queues with: past the retry delays, so a failure
# starts no retry chain of its own (the sweep is the retry).
EMAIL_SWEPT_ATTEMPT = len(EMAIL_RETRY_DELAYS)


def alert_still_due(alert: Alert) -> bool:
    """Whether a tenant alert is still worth telling now (an email or push sent late,
    at the end of quiet hours or on a retry).

    An event (disconnection warning, supply restored) always is. A condition is
    not once it cleared, and low credit is not once the balance is back at or
    above the threshold, even if short of the hysteresis margin that clears it:
    "low credit" in the morning after a top-up in the night would be wrong.
    """
    if alert.kind in EVENT_KINDS:
        return True
    if alert.cleared_at is not None:
        return False
    if alert.kind != Alert.Kind.LOW_CREDIT or alert.tenancy is None:
        return True
    balance = (
        Account.objects.filter(tenancy_id=alert.tenancy.pk)
        .values_list("balance_minor", flat=True)
        .first()
    )
    if balance is None:
        return True
    return balance < low_credit_threshold(tenancy=alert.tenancy, unit=alert.unit)


def _email_skip(alert: Alert, reason: str) -> None:
    alert.email_skipped = reason
    alert.save(update_fields=["email_skipped"])
    logger.info("alert %s email not sent: %s", alert.pk, reason)


def _alert_email_claim(*, alert_id: int, now: datetime) -> tuple[Alert, list[str]] | None:
    """Under the alert's row lock: decide whether its email goes now and, if so, mark
    it emailed (the claim) in a short transaction; the alert and its recipients.

    Held in quiet hours: queued again for their end, and that end noted
    (``email_next_at``) so the sweep does not take it up before. An email that
    will never go (switched off, no address, no longer true) is marked so
    (``email_skipped``) and the sweep leaves it for good.
    """
    with transaction.atomic():
        alert = (
            Alert.objects.select_for_update(of=("self",))
            .select_related("tenancy__tenant", "tenancy__notifications", "unit__property")
            .filter(pk=alert_id, emailed_at__isnull=True, email_skipped="")
            .first()
        )
        if alert is None:
            return None
        if alert.audience == Alert.Audience.TENANT:
            if alert.tenancy is None:
                _email_skip(alert, Alert.EmailSkipped.NO_ADDRESS)
                return None
            send, hold = tenant_notification_choice(
                kind=alert.kind,
                prefs=tenancy_notifications(alert.tenancy),
                now=now,
                tz=alert.unit.property.timezone,
            )
            if not send:
                _email_skip(alert, Alert.EmailSkipped.SWITCHED_OFF)
                return None
            if not alert_still_due(alert):
                _email_skip(alert, Alert.EmailSkipped.NOT_DUE)
                return None
            if hold is not None:
                alert.email_next_at = hold
                alert.save(update_fields=["email_next_at"])
                transaction.on_commit(
                    lambda: alert_email_task.using(run_after=hold).enqueue(alert_id),
                    robust=True,
                )
                return None
            recipients = [alert.tenancy.tenant.email]
        else:
            User = get_user_model()
            recipients = list(
                User.objects.filter(
                    pk__in=Membership.objects.filter(landlord_id=alert.landlord_id).values(
                        "user_id"
                    )
                ).values_list("email", flat=True)
            )
        recipients = [r for r in recipients if r]
        if not recipients:
            _email_skip(alert, Alert.EmailSkipped.NO_ADDRESS)
            return None
        alert.emailed_at = now
        alert.save(update_fields=["emailed_at"])
        return alert, recipients


def alert_email_send(*, alert_id: int, attempt: int = 0, now: datetime | None = None) -> bool:
    """Email an alert once to its audience; True if a message went out.

    A tenant's email follows their choices (``tenant_notification_choice``): not
    sent when switched off, and in quiet hours queued again for their end, except
    a disconnection warning, which goes at once whatever the hour. A condition
    that cleared meanwhile (``alert_still_due``) is not emailed late.

    The decision is taken and the alert marked emailed under its row lock; the
    message is sent after that transaction commits, so a slow mail server holds
    no lock. If sending fails, the mark is taken back and the email queued again
    (``EMAIL_RETRY_DELAYS``), then left to the sweep (``alert_emails_sweep``),
    so the decision is not lost; the mark stops two tasks (a retry, a sweep)
    from both sending it. A process killed between the mark and the send loses
    that one email rather than risking it twice: the mark says "sent" and the
    sweep cannot tell it from a sent one.
    """
    now = now or timezone.now()
    claimed = _alert_email_claim(alert_id=alert_id, now=now)
    if claimed is None:
        return False
    alert, recipients = claimed
    try:
        send_mail(
            subject=f"{alert.get_kind_display()}: {alert.unit.name}",
            message=alert.message,
            from_email=None,
            recipient_list=recipients,
        )
    except Exception:
        retry = attempt < len(EMAIL_RETRY_DELAYS)
        retry_at = timezone.now() + (EMAIL_RETRY_DELAYS[attempt] if retry else EMAIL_SWEEP_RETRY)
        Alert.objects.filter(pk=alert_id, emailed_at=now).update(
            emailed_at=None, email_next_at=retry_at
        )
        if retry:
            logger.warning("alert %s email failed, tried again later", alert_id, exc_info=True)
            alert_email_task.using(run_after=retry_at).enqueue(alert_id, attempt + 1)
        else:
            logger.exception(
                "alert %s email failed (attempt %s): left to the sweep", alert_id, attempt + 1
            )
        return False
    return True


def alert_emails_sweep(*, now: datetime | None = None) -> list[int]:
    """Queue again the emails of the last day's alerts that are still owed; their ids.

    Owed: not emailed, not decided against (``email_skipped``), and no queued
    task due to try it first (``email_next_at``, plus a grace). That covers an
    email whose retries all failed, a task lost with its queue (a consumer
    restarted with an in-memory queue) and a quiet-hours hold whose task was
    lost. Each queued task decides afresh under the alert's row lock
    (``_alert_email_claim``): the tenant's choices and quiet hours, whether the
    alert still holds; so a sweep that races a retry or a hold never sends twice,
    nor early, nor late. Alerts older than ``EMAIL_SWEEP_WINDOW`` are marked
    given up, so the sweep reads only owed alerts of the last day (a partial
    index), however many were emailed.
    """
    now = now or timezone.now()
    since = now - EMAIL_SWEEP_WINDOW
    owed = Alert.objects.filter(emailed_at__isnull=True, email_skipped="")
    expired = owed.filter(created_at__lt=since).update(email_skipped=Alert.EmailSkipped.EXPIRED)
    if expired:
        logger.warning("%s alert emails not sent within %s: given up", expired, EMAIL_SWEEP_WINDOW)
    settled = now - EMAIL_SWEEP_GRACE
    ids = list(
        owed.filter(created_at__gte=since, created_at__lte=settled)
        .filter(Q(email_next_at__isnull=True) | Q(email_next_at__lte=settled))
        .order_by("created_at")
        .values_list("pk", flat=True)[:EMAIL_SWEEP_BATCH]
    )
    if ids:
        logger.warning("alert emails still owed, queued again: %s", ids)
    for alert_id in ids:
        alert_email_task.enqueue(alert_id, EMAIL_SWEPT_ATTEMPT)
    return ids


@task()
def alert_email_task(alert_id: int, attempt: int = 0) -> bool:
    return alert_email_send(alert_id=alert_id, attempt=attempt)


# What a tenant's phone shows as the notification's title, by alert kind.
PUSH_TITLES: dict[str, str] = {
    Alert.Kind.LOW_CREDIT: "Low credit",
    Alert.Kind.LOW_RUNWAY: "Credit running out",
    Alert.Kind.CUTOFF_WARNING: "Supply will be switched off",
    Alert.Kind.SUPPLY_RESTORED: "Supply back on",
}


def alert_push_send(*, alert_id: int, now: datetime | None = None) -> int:
    """Push a tenant alert to the tenant's phones, by the same choices as its email;
    how many phones took it.

    In quiet hours it is queued again for their end (a disconnection warning
    never is); a condition that cleared meanwhile (credit topped up in the
    night) is not pushed late. Runs in a task, outside any transaction: each
    push is an HTTP call.
    """
    now = now or timezone.now()
    alert = (
        Alert.objects.select_related("tenancy__notifications", "unit__property")
        .filter(pk=alert_id, audience=Alert.Audience.TENANT, tenancy__isnull=False)
        .first()
    )
    if alert is None or alert.tenancy is None or alert.kind not in PUSH_TITLES:
        return 0
    if not alert_still_due(alert):
        return 0
    prefs = tenancy_notifications(alert.tenancy)
    send, hold = tenant_notification_choice(
        kind=alert.kind, prefs=prefs, now=now, tz=alert.unit.property.timezone
    )
    if not send:
        return 0
    if hold is not None:
        alert_push_task.using(run_after=hold).enqueue(alert_id)
        return 0
    payload = push_payload(
        title=f"{PUSH_TITLES[alert.kind]} · {alert.unit.name}",
        body=alert.message,
        url=reverse("tenant:home", args=[alert.tenancy_id]),
        tag=f"alert-{alert.kind}",
    )
    return tenant_push_send(
        tenancy_id=alert.tenancy.pk,
        payload=payload,
        urgent=alert.kind == Alert.Kind.CUTOFF_WARNING,
    )


@task()
def alert_push_task(alert_id: int) -> int:
    return alert_push_send(alert_id=alert_id)


def alerts_for_device(*, device_id: int, now: datetime) -> list[Alert]:
    """Tenant alerts of the last day not yet shown on this device's meter."""
    device = Device.objects.filter(pk=device_id).values("unit_id").first()
    if device is None:
        return []
    return list(
        Alert.objects.filter(
            unit_id=device["unit_id"],
            audience=Alert.Audience.TENANT,
            device_notified_at__isnull=True,
            created_at__gte=now - timedelta(days=1),
        ).order_by("created_at")[:5]
    )


def units_with_device_alerts(*, unit_ids: list[int], now: datetime) -> set[int]:
    """Of these units, those with a tenant alert for ``alerts_for_device`` to send."""
    if not unit_ids:
        return set()
    return set(
        Alert.objects.filter(
            unit_id__in=unit_ids,
            audience=Alert.Audience.TENANT,
            device_notified_at__isnull=True,
            created_at__gte=now - timedelta(days=1),
        ).values_list("unit_id", flat=True)
    )


def alert_device_notified(*, alert_id: int, unit_id: int) -> None:
    Alert.objects.filter(pk=alert_id, unit_id=unit_id, device_notified_at__isnull=True).update(
        device_notified_at=timezone.now()
    )


def open_alerts(*, tenancy_id: int) -> list[Alert]:
    """What the tenant's page shows: open conditions, and "supply restored" for an hour.

    A scheduled cut-off is shown from its ``CutoffNotice`` instead, so a top-up
    removes it at once. One query: the open alerts and the last hour's events
    (an event older than an hour is never shown, and any newer one is later
    than it).
    """
    since = timezone.now() - timedelta(hours=1)
    rows = _OPEN_ALERTS.run(subject_key=f"tenancy:{tenancy_id}", since=since)
    shown = [a for a in rows if a.cleared_at is None][:5]
    latest_event = next((a for a in rows if a.kind in EVENT_KINDS), None)
    if (
        latest_event is not None
        and latest_event.kind == Alert.Kind.SUPPLY_RESTORED
        and latest_event.created_at >= since
    ):
        shown.append(latest_event)
    return shown


# Open alerts are few (one per kind and subject); the bound keeps a burst of events
# from making the page read them all.
OPEN_ALERTS_READ = 50
EVENT_KINDS = [Alert.Kind.CUTOFF_WARNING, Alert.Kind.SUPPLY_RESTORED]
_OPEN_ALERTS: Prepared[Alert] = Prepared(
    lambda: (
        Alert.objects.filter(
            subject_key=Param("subject_key", CharField()), audience=Alert.Audience.TENANT
        )
        .filter(
            Q(cleared_at__isnull=True)
            | Q(kind__in=EVENT_KINDS, created_at__gte=Param("since", DateTimeField()))
        )
        .order_by("-created_at")[:OPEN_ALERTS_READ]
    )
)
