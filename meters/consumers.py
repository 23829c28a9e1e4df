"""The device socket: native protocol v1 (docs/device-protocol.md).

A device authenticates with HTTP Basic credentials in the handshake
(``Authorization: Basic base64(ident:secret)``), never in the URL. The
identity comes only from that credential, so one device cannot report for
another. Commands come from the ``RelayCommand`` table; channel-layer
messages only wake this socket to look at it, and a periodic check covers
lost wake-ups.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import logging
from datetime import UTC, datetime
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from config import ratelimit
from config.db import off_thread
from config.live import device_group
from supply.relay import (
    relay_command_due,
    relay_command_mark_sent,
    relay_next_attempt_at,
    relay_resend_now,
)
from supply.reports import relay_report, relay_report_unversioned

from . import intake, protocol, shelly
from .devices import (
    DeviceLoginLimited,
    device_attach,
    device_login,
    device_login_failed,
    device_notification_acked,
    device_notifications_due,
    device_presence,
    devices_with_work,
)
from .models import Device, Protocol
from .readings import ReadingInput, ReadingRejected, readings_oldest

logger = logging.getLogger(__name__)


def basic_credentials(scope: dict[str, Any]) -> tuple[str, str] | None:
    for name, value in scope.get("headers", []):
        if name.lower() != b"authorization":
            continue
        scheme, _, encoded = value.decode("latin-1").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        ident, sep, secret = decoded.partition(":")
        if not sep or not ident or not secret:
            return None
        return ident, secret
    return None


# The device sockets held by this process, and one task that looks at the
# outbox for all of them every RELAY_SAFETY_CHECK_SECONDS (one query per
# process instead of one per socket), waking any with work a lost
# channel-layer message would otherwise leave waiting.
_sockets: dict[int, DeviceConsumer] = {}
_sweeper: tuple[asyncio.AbstractEventLoop, asyncio.Task[None]] | None = None


def _ensure_sweeper() -> None:
    global _sweeper
    loop = asyncio.get_running_loop()
    if _sweeper is not None and _sweeper[0] is loop and not _sweeper[1].done():
        return
    _sweeper = (loop, loop.create_task(_sweep_forever()))


async def _sweep_forever() -> None:
    while True:
        await asyncio.sleep(float(settings.SUBMETER["RELAY_SAFETY_CHECK_SECONDS"]))
        if not _sockets:
            continue
        try:
            due = await database_sync_to_async(devices_with_work)(device_ids=list(_sockets))
        except Exception:
            logger.exception("device sweep failed")
            continue
        for device_id in due:
            consumer = _sockets.get(device_id)
            if consumer is not None:
                consumer._wake.set()


def _client_address(scope: dict[str, Any]) -> str:
    headers = dict(scope.get("headers") or [])
    meta = {
        "REMOTE_ADDR": (scope.get("client") or ["", 0])[0] or "",
        "HTTP_X_FORWARDED_FOR": headers.get(b"x-forwarded-for", b"").decode("latin-1"),
    }
    return ratelimit.client_address(meta)


class DeviceConsumer(AsyncWebsocketConsumer):
    device_id: int
    device_ident: str
    landlord_id: int

    async def connect(self) -> None:
        self._wake = asyncio.Event()
        self._notify_in_flight: set[str] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.device_id = 0
        offered = self.scope.get("subprotocols") or []
        subprotocol = protocol.SUBPROTOCOL if protocol.SUBPROTOCOL in offered else None
        creds = basic_credentials(self.scope)
        try:
            device = await off_thread(device_login)(
                address=_client_address(self.scope),
                ident=creds[0] if creds else "",
                secret=creds[1] if creds else None,
            )
        except DeviceLoginLimited:
            await self.accept(subprotocol)
            await self.close(
                code=protocol.CLOSE_RATE_LIMITED, reason="too many failed attempts; retry later"
            )
            return
        if device is None:
            # Accept, then close with a code and reason: a refused handshake would
            # reach the device as a bare HTTP 403 it cannot tell apart from others.
            logger.info("device connect refused: bad or missing credentials")
            await self.accept(subprotocol)
            await self.close(
                code=protocol.CLOSE_UNAUTHORIZED, reason="unknown device or wrong secret"
            )
            return
        if offered and subprotocol is None:
            await self.accept()
            await self.close(
                code=protocol.CLOSE_PROTOCOL, reason=f"subprotocol {protocol.SUBPROTOCOL} required"
            )
            return
        if device.protocol != Protocol.NATIVE:
            await self.accept(subprotocol)
            await self.close(
                code=protocol.CLOSE_UNAUTHORIZED, reason="this device uses another protocol"
            )
            return
        await self._attach(device, subprotocol)

    async def _attach(self, device: Device, subprotocol: str | None = None) -> None:
        self.device_id, self.device_ident = device.pk, device.ident
        self.landlord_id = device.landlord_id
        # A newer connection of the same device replaces this one.
        await self.channel_layer.group_send(
            device_group(self.device_id), {"type": "device.replaced", "channel": self.channel_name}
        )
        await self.channel_layer.group_add(device_group(self.device_id), self.channel_name)
        await self.accept(subprotocol)
        # On the shared database thread, like disconnect(): presence changes of
        # one device then apply in the order its sockets came and went.
        has_work = await database_sync_to_async(device_attach)(device_id=self.device_id)
        self._loop_task = asyncio.create_task(self._command_loop(idle=not has_work))
        _sockets[self.device_id] = self
        _ensure_sweeper()

    async def disconnect(self, code: int) -> None:
        if not self.device_id:
            return
        if _sockets.get(self.device_id) is self:
            del _sockets[self.device_id]
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        await self.channel_layer.group_discard(device_group(self.device_id), self.channel_name)
        if not getattr(self, "_replaced", False):
            await database_sync_to_async(device_presence)(device_id=self.device_id, connected=False)

    # --- channel-layer events --------------------------------------------
    async def relay_wake(self, event: dict[str, Any]) -> None:
        self._wake.set()

    async def device_replaced(self, event: dict[str, Any]) -> None:
        if event.get("channel") != self.channel_name:
            self._replaced = True
            await self.close(code=protocol.CLOSE_REPLACED)

    # --- outbound commands --------------------------------------------------
    async def _command_loop(self, *, idle: bool = False) -> None:
        # Started idle (nothing to send), the first pass waits for a wake-up.
        if idle:
            await self._wake.wait()
            self._wake.clear()
        while True:
            try:
                await self._send_due_command()
                await self._send_due_notifications()
                next_at = await database_sync_to_async(relay_next_attempt_at)(
                    device_id=self.device_id
                )
                # An idle socket waits for a wake-up only (no polling); a lost
                # wake-up is covered by the process-wide sweep below.
                timeout = None
                if next_at is not None:
                    timeout = max((next_at - timezone.now()).total_seconds(), 0.05)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if type(exc).__name__ == "ClientDisconnected":
                    return  # the socket closed under us; disconnect() cleans up
                logger.exception("relay command loop error for device %s", self.device_id)
                await asyncio.sleep(1)

    async def _send_due_command(self) -> None:
        cmd = await database_sync_to_async(relay_command_due)(device_id=self.device_id)
        if cmd is None:
            return
        cmd = await database_sync_to_async(relay_command_mark_sent)(command_id=cmd.pk)
        msg_id = f"relay-{cmd.generation}-{cmd.attempts}"
        await self.send(
            text_data=protocol.call(
                msg_id, "SetRelay", {"state": cmd.state, "generation": cmd.generation}
            )
        )

    async def _send_due_notifications(self) -> None:
        alerts = await database_sync_to_async(device_notifications_due)(device_id=self.device_id)
        for alert in alerts:
            msg_id = f"notify-{alert['id']}"
            if msg_id in self._notify_in_flight:
                continue
            self._notify_in_flight.add(msg_id)
            await self.send(text_data=protocol.call(msg_id, "Notify", alert))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every message, a
        # thread hop per frame. Every database call here goes through
        # database_sync_to_async, which does that in its own thread anyway.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- inbound frames -----------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.send(text_data=protocol.error("", "FormatViolation", "Text frames only."))
            return
        try:
            frame = protocol.parse_frame(text_data)
            if frame.kind == protocol.CALL:
                await self._handle_call(frame)
            elif frame.kind == protocol.RESULT:
                await self._handle_result(frame)
            else:
                logger.warning(
                    "device %s answered %s with error %s",
                    self.device_ident,
                    frame.msg_id,
                    frame.error_code,
                )
                if frame.msg_id.startswith("notify-"):
                    # A meter that cannot show it will not show it later either.
                    await self._notified(frame.msg_id)
        except protocol.ProtocolError as exc:
            await self.send(
                text_data=protocol.error(exc.msg_id, exc.code, exc.message, exc.details)
            )
        except ReadingRejected as exc:
            details = {"seq": exc.seq} if exc.seq is not None else {}
            await self.send(text_data=protocol.error(self._last_id, exc.code, exc.message, details))

    _last_id = ""

    async def _handle_call(self, frame: protocol.Frame) -> None:
        self._last_id = frame.msg_id
        handler = {
            "BootNotification": self._on_boot,
            "Heartbeat": self._on_heartbeat,
            "MeterValues": self._on_meter_values,
            "RelayStatus": self._on_relay_status,
        }.get(frame.action)
        if handler is None:
            raise protocol.ProtocolError(
                "NotImplemented", f"Unknown action {frame.action!r}.", frame.msg_id
            )
        reply = await handler(frame)
        await self.send(text_data=protocol.result(frame.msg_id, reply))

    async def _on_boot(self, frame: protocol.Frame) -> dict[str, Any]:
        versions = frame.payload.get("protocol_versions", ["1"])
        if not isinstance(versions, list) or "1" not in versions:
            raise protocol.ProtocolError(
                "NotSupported", "This server speaks protocol version 1.", frame.msg_id
            )
        firmware = frame.payload.get("firmware")
        await database_sync_to_async(device_presence)(
            device_id=self.device_id,
            connected=True,
            firmware=str(firmware) if firmware is not None else None,
        )
        relay = frame.payload.get("relay")
        if isinstance(relay, dict):
            state, generation = protocol.parse_relay(relay, frame.msg_id)
            await database_sync_to_async(relay_report)(
                device_id=self.device_id, state=state, generation=generation
            )
        await database_sync_to_async(relay_resend_now)(device_id=self.device_id)
        self._wake.set()
        return {
            "status": "Accepted",
            "protocol": "1",
            "server_time": datetime.now(UTC).isoformat(),
            "heartbeat_interval": settings.SUBMETER["DEVICE_HEARTBEAT_SECONDS"],
        }

    async def _on_heartbeat(self, frame: protocol.Frame) -> dict[str, Any]:
        await database_sync_to_async(Device.objects.filter(pk=self.device_id).update)(
            last_seen_at=timezone.now()
        )
        return {"server_time": datetime.now(UTC).isoformat()}

    async def _on_meter_values(self, frame: protocol.Frame) -> dict[str, Any]:
        readings = protocol.parse_readings(frame.payload, frame.msg_id)
        try:
            result = await intake.submit(
                device_id=self.device_id, landlord_id=self.landlord_id, readings=readings
            )
        except intake.IntakeUnavailable:
            raise protocol.ProtocolError(
                "InternalError", "The readings could not be stored; send them again.", frame.msg_id
            ) from None
        return {"accepted": len(result.accepted), "duplicates": result.duplicates}

    async def _on_relay_status(self, frame: protocol.Frame) -> dict[str, Any]:
        state, generation = protocol.parse_relay(frame.payload, frame.msg_id)
        await database_sync_to_async(relay_report)(
            device_id=self.device_id, state=state, generation=generation
        )
        self._wake.set()
        return {}

    async def _notified(self, msg_id: str) -> None:
        self._notify_in_flight.discard(msg_id)
        alert_id = msg_id.removeprefix("notify-")
        if alert_id.isdigit():
            await database_sync_to_async(device_notification_acked)(
                device_id=self.device_id, alert_id=int(alert_id)
            )

    async def _handle_result(self, frame: protocol.Frame) -> None:
        if frame.msg_id.startswith("notify-"):
            await self._notified(frame.msg_id)
            return
        # Any answer, even to a call of an earlier connection, says where the relay is.
        state, generation = protocol.parse_relay(frame.payload, frame.msg_id)
        await database_sync_to_async(relay_report)(
            device_id=self.device_id, state=state, generation=generation
        )
        self._wake.set()


class ShellyConsumer(DeviceConsumer):
    """A Shelly Gen2+ outbound WebSocket (JSON-RPC 2.0), see meters/shelly.py.

    The device's secret is part of the configured address
    (``/ws/shelly/<ident>/<secret>``) because a Shelly cannot send an
    Authorization header; frames whose ``src`` is not the device's own id
    close the socket, so one device cannot report for another.
    """

    async def connect(self) -> None:
        self._wake = asyncio.Event()
        self._notify_in_flight = set()
        self._loop_task = None
        self.device_id = 0
        self._rpc_ids = itertools.count(1)
        # rpc id -> (method, state, generation) of calls awaiting an answer
        self._rpc: dict[int, tuple[str, str, int]] = {}
        kwargs = self.scope["url_route"]["kwargs"]
        ident = str(kwargs.get("ident", ""))
        address = _client_address(self.scope)
        try:
            device = await off_thread(device_login)(
                address=address, ident=ident, secret=str(kwargs.get("secret", ""))
            )
        except DeviceLoginLimited:
            await self.accept()
            await self.close(
                code=protocol.CLOSE_RATE_LIMITED, reason="too many failed attempts; retry later"
            )
            return
        if device is None or device.protocol != Protocol.SHELLY:
            logger.info("shelly connect refused: bad credentials or not a Shelly device")
            if device is not None:
                await database_sync_to_async(device_login_failed)(address=address, ident=ident)
            await self.accept()
            await self.close(
                code=protocol.CLOSE_UNAUTHORIZED, reason="unknown device or wrong secret"
            )
            return
        await self._attach(device)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        try:
            frame = shelly.parse(text_data)
        except shelly.ShellyFrameError as exc:
            logger.warning("shelly %s: bad frame (%s)", self.device_ident, exc)
            return
        src = frame.get("src")
        if src is not None and src != self.device_ident:
            logger.warning("shelly %s: frame from %r refused", self.device_ident, src)
            await self.close(code=protocol.CLOSE_UNAUTHORIZED, reason="src is not this device")
            return
        method = frame.get("method")
        if method in ("NotifyFullStatus", "NotifyStatus"):
            await self._on_status(frame, full=method == "NotifyFullStatus")
        elif "id" in frame and ("result" in frame or "error" in frame):
            await self._on_response(frame)
        # NotifyEvent and anything else carry nothing the server needs.

    async def _on_status(self, frame: dict[str, Any], *, full: bool) -> None:
        status = shelly.notification_switch(frame)
        if full:
            await database_sync_to_async(device_presence)(device_id=self.device_id, connected=True)
        else:
            await database_sync_to_async(Device.objects.filter(pk=self.device_id).update)(
                last_seen_at=timezone.now()
            )
        if status is None:
            return
        if status.energy_wh is not None:
            now = timezone.now()
            taken_at = shelly.reading_time(
                status.ts,
                now,
                settings.SUBMETER["FUTURE_TOLERANCE_SECONDS"],
                oldest=readings_oldest(now=now),
            )
            reading = ReadingInput(
                seq=int(taken_at.timestamp() * 1000),
                taken_at=taken_at,
                register_wh=int(status.energy_wh),
            )
            try:
                await intake.submit(
                    device_id=self.device_id, landlord_id=self.landlord_id, readings=[reading]
                )
            except ReadingRejected as exc:
                logger.warning("shelly %s: reading refused: %s", self.device_ident, exc.message)
            except intake.IntakeUnavailable:
                logger.warning(
                    "shelly %s: reading not stored; the next status repeats it", self.device_ident
                )
        if status.output is not None:
            state = "on" if status.output else "off"
            if any(s == state for _kind, s, _g in self._rpc.values()):
                return  # our own Switch.Set taking effect: Switch.GetStatus will confirm it
            await database_sync_to_async(relay_report_unversioned)(
                device_id=self.device_id, state=state
            )
            self._wake.set()

    async def _on_response(self, frame: dict[str, Any]) -> None:
        rpc_id = frame.get("id")
        pending = self._rpc.pop(rpc_id, None) if isinstance(rpc_id, int) else None
        if pending is None:
            return
        kind, state, generation = pending
        if "error" in frame:
            logger.warning("shelly %s: %s failed: %s", self.device_ident, kind, frame["error"])
            return  # the outbox retries with backoff
        if kind == "set":
            # "ok" only says the Shelly took the call; where the relay is, and so
            # whether the command is done, is what Switch.GetStatus reports.
            get_id = next(self._rpc_ids)
            self._rpc[get_id] = ("get", state, generation)
            await self.send(text_data=shelly.switch_get_status(get_id))
        else:
            status = shelly.switch_status(frame.get("result"))
            if status is not None and status.output is not None:
                await database_sync_to_async(relay_report)(
                    device_id=self.device_id,
                    state="on" if status.output else "off",
                    generation=generation,
                )
        self._wake.set()

    async def _send_due_command(self) -> None:
        cmd = await database_sync_to_async(relay_command_due)(device_id=self.device_id)
        if cmd is None:
            return
        cmd = await database_sync_to_async(relay_command_mark_sent)(command_id=cmd.pk)
        # Only the newest command is worth an answer.
        self._rpc = {k: v for k, v in self._rpc.items() if v[0] != "set"}
        rpc_id = next(self._rpc_ids)
        self._rpc[rpc_id] = ("set", cmd.state, cmd.generation)
        await self.send(text_data=shelly.switch_set(rpc_id, cmd.state == "on"))

    async def _send_due_notifications(self) -> None:
        return  # a Shelly has no display: alerts reach the tenant by page and email only
