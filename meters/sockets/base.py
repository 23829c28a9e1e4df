"""The device socket every protocol shares, and what a protocol adapter provides.

``DeviceSocket`` is the one consumer for device connections. It logs the
device in (rate limited per address and device name), joins the device's
group (a newer connection replaces an older one), records presence, runs the
command loop and cleans up on disconnect. Commands come from the
``RelayCommand`` table; channel-layer messages only wake a socket to look at
it, and a process-wide sweep covers lost wake-ups.

The wire format is the adapter's: a ``ProtocolAdapter`` turns inbound frames
into the socket's domain calls (``record_presence``, ``submit_readings``,
``report_relay``, ...) and the socket's commands (a relay command, a
notification) into frames. docs/device-protocol.md, "Adding a protocol",
says what an adapter implements.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

# A send on a socket whose peer has gone raises this under uvicorn (an
# OSError subclass). It is the only server here that raises: daphne, which
# Channels' test tools use, drops such a send silently.
from uvicorn.protocols.utils import ClientDisconnected

from config import ratelimit
from config.live import device_group
from supply.relay import (
    relay_command_due,
    relay_command_mark_sent,
    relay_next_attempt_at,
    relay_resend_now,
)
from supply.reports import relay_report, relay_report_unversioned

from .. import attach, intake
from ..devices import (
    DeviceLoginLimited,
    device_login_failed,
    device_notification_acked,
    device_notifications_due,
    device_presence,
    devices_with_work,
)
from ..models import Device, RelayCommand
from ..protocol import CLOSE_PROTOCOL, CLOSE_RATE_LIMITED, CLOSE_REPLACED, CLOSE_UNAUTHORIZED
from ..readings import ReadingInput, ReadingsResult

logger = logging.getLogger(__name__)


class ProtocolAdapter:
    """One device protocol's wire format, attached to one ``DeviceSocket``.

    An adapter is created with its socket, before the device has logged in,
    and lives as long as the connection.
    """

    #: The ``Device.protocol`` this adapter speaks; other devices are refused.
    device_protocol: ClassVar[str]
    #: Names the protocol in log lines.
    label: ClassVar[str]
    #: The WebSocket subprotocol to accept. When set and the client offers
    #: subprotocols but not this one, the socket closes with 4400.
    subprotocol: ClassVar[str | None] = None
    #: A device registered for another protocol is told so (4401 "this
    #: device uses another protocol"); when False it is refused like a wrong
    #: secret and counted as a failed login.
    tell_other_protocol: ClassVar[bool] = True
    #: The device has a display: the command loop sends it tenant alerts
    #: through ``send_notification``.
    has_display: ClassVar[bool] = False

    def __init__(self, socket: DeviceSocket) -> None:
        self.socket = socket

    def credentials(self, scope: dict[str, Any]) -> tuple[str, str | None]:
        """The ident and secret the handshake presents (secret None: none given)."""
        raise NotImplementedError

    async def receive(self, text: str | None, data: bytes | None) -> None:
        """Handle one inbound frame of an attached device."""
        raise NotImplementedError

    async def send_relay(self, command: RelayCommand) -> None:
        """Send a relay command (already marked sent in the outbox)."""
        raise NotImplementedError

    async def send_notification(self, alert: dict[str, object]) -> None:
        """Show a tenant alert on the device's display (only if ``has_display``)."""
        raise NotImplementedError


# The device sockets held by this process, and one task that looks at the
# outbox for all of them every RELAY_SAFETY_CHECK_SECONDS (one query per
# process instead of one per socket), waking any with work a lost
# channel-layer message would otherwise leave waiting.
_sockets: dict[int, DeviceSocket] = {}
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
            socket = _sockets.get(device_id)
            if socket is not None:
                socket.wake()


Message = dict[str, Any]


async def _dispatch_both(
    client_receive: Callable[[], Awaitable[Message]],
    layer_receive: Callable[[], Awaitable[Message]],
    dispatch: Callable[[Message], Awaitable[None]],
) -> None:
    """Hand messages from the client and from the channel layer to
    ``dispatch`` one at a time, as ``channels.utils.await_many_dispatch``
    does, without its new task and ``asyncio.wait`` for every client message
    (a good part of a reading frame's cost): the client's messages are awaited
    here, the channel layer's in one task for the connection's life, and a
    lock keeps the two from being handled at once.

    A failure of the channel-layer side (its receive or a handler) ends the
    connection as it would in Channels: it is raised here, once no client
    message is being handled. The lock goes to whichever side was waiting
    first, so neither side can hold the other off.
    """
    lock = asyncio.Lock()
    here = asyncio.current_task()
    assert here is not None
    failure: list[BaseException] = []

    async def layer_loop() -> None:
        this = asyncio.current_task()
        assert this is not None
        try:
            while True:
                message = await layer_receive()
                async with lock:
                    await dispatch(message)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and this.cancelling():
                raise  # the connection is over
            failure.append(exc)
            # Holding the lock: the client side is between messages.
            async with lock:
                here.cancel()

    layer = asyncio.ensure_future(layer_loop())
    try:
        while True:
            message = await client_receive()
            async with lock:
                await dispatch(message)
    except asyncio.CancelledError:
        if failure:
            here.uncancel()
            raise failure[0] from None
        raise
    finally:
        layer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await layer


def _client_address(scope: dict[str, Any]) -> str:
    headers = dict(scope.get("headers") or [])
    meta = {
        "REMOTE_ADDR": (scope.get("client") or ["", 0])[0] or "",
        "HTTP_X_FORWARDED_FOR": headers.get(b"x-forwarded-for", b"").decode("latin-1"),
    }
    return ratelimit.client_address(meta)


class DeviceSocket(AsyncWebsocketConsumer):
    """A device's connection; ``adapter`` (given in the route) speaks its protocol."""

    device_id: int
    device_ident: str
    landlord_id: int

    def __init__(self, *args: Any, adapter: type[ProtocolAdapter], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake = asyncio.Event()
        # Alerts sent on this connection and not answered yet, by alert id.
        self._notify_in_flight: set[int] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._replaced = False
        # Set once the server closes the socket (refused, replaced, secret
        # changed): a frame that arrives before the close completes is dropped.
        self._closing = False
        self._attach_seq = 0
        self.device_id = 0
        self.adapter = adapter(self)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # channels.consumer.AsyncConsumer.__call__, with the dispatch loop above.
        layer = get_channel_layer(self.channel_layer_alias)
        if layer is None:
            await super().__call__(scope, receive, send)
            return
        self.scope = scope
        self.channel_layer = layer
        self.channel_name = await layer.new_channel()
        self.channel_receive = functools.partial(layer.receive, self.channel_name)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await _dispatch_both(receive, self.channel_receive, self.dispatch)

    # --- attach and disconnect ----------------------------------------------
    async def connect(self) -> None:
        adapter = self.adapter
        offered = self.scope.get("subprotocols") or []
        wanted = adapter.subprotocol
        subprotocol = wanted if wanted is not None and wanted in offered else None
        ident, secret = adapter.credentials(self.scope)
        address = _client_address(self.scope)
        try:
            device = await attach.login(address=address, ident=ident, secret=secret)
        except DeviceLoginLimited:
            await self.accept(subprotocol)
            await self.close(
                code=CLOSE_RATE_LIMITED, reason="too many failed attempts; retry later"
            )
            return
        if (
            device is not None
            and device.protocol != adapter.device_protocol
            and not adapter.tell_other_protocol
        ):
            await database_sync_to_async(device_login_failed)(address=address, ident=ident)
            device = None
        if device is None:
            # Accept, then close with a code and reason: a refused handshake would
            # reach the device as a bare HTTP 403 it cannot tell apart from others.
            logger.info("%s connect refused: bad or missing credentials", adapter.label)
            await self.accept(subprotocol)
            await self.close(code=CLOSE_UNAUTHORIZED, reason="unknown device or wrong secret")
            return
        if wanted is not None and offered and subprotocol is None:
            await self.accept()
            await self.close(code=CLOSE_PROTOCOL, reason=f"subprotocol {wanted} required")
            return
        if device.protocol != adapter.device_protocol:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_UNAUTHORIZED, reason="this device uses another protocol")
            return
        await self._attach(device, subprotocol)

    async def _attach(self, device: Device, subprotocol: str | None) -> None:
        self.device_id, self.device_ident = device.pk, device.ident
        self.landlord_id = device.landlord_id
        # A newer connection of the same device replaces this one.
        await attach.joined(
            layer=self.channel_layer, group=device_group(self.device_id), channel=self.channel_name
        )
        await self.accept(subprotocol)
        # Batched with the sockets attaching beside it (meters/attach.py), in
        # the order this device's sockets came and went.
        self._attach_seq, has_work = await attach.attached(device_id=self.device_id)
        if has_work:
            self.wake()
        # Nothing to send: no command loop until a wake-up (an idle socket
        # holds no task; thousands of them are what a storm leaves behind).
        _sockets[self.device_id] = self
        _ensure_sweeper()

    async def disconnect(self, code: int) -> None:
        if not self.device_id:
            return
        if _sockets.get(self.device_id) is self:
            del _sockets[self.device_id]
        self._closing = True  # a late wake-up starts no command loop
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        await self.channel_layer.group_discard(device_group(self.device_id), self.channel_name)
        if not self._replaced:
            await attach.detached(device_id=self.device_id, seq=self._attach_seq)

    # --- channel-layer events ---------------------------------------------
    async def relay_wake(self, event: dict[str, Any]) -> None:
        self.wake()

    async def device_replaced(self, event: dict[str, Any]) -> None:
        if event.get("channel") != self.channel_name:
            self._replaced = True
            await self.close(code=CLOSE_REPLACED)

    async def device_secret_changed(self, event: dict[str, Any]) -> None:
        # The landlord gave the device a new secret: a socket opened with the old
        # one ends now; the device must come back with the new one.
        await self.close(code=CLOSE_UNAUTHORIZED, reason="the device's secret was changed")

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every message, a
        # thread hop per frame. Every database call here goes through
        # database_sync_to_async, which does that in its own thread anyway.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- outbound commands --------------------------------------------------
    async def _command_loop(self) -> None:
        # Runs while there is something to send or a retry to wait for; with
        # nothing scheduled it ends, and the next wake-up starts it again.
        while True:
            self._wake.clear()  # a wake-up during the pass makes another pass
            try:
                await self._send_due_command()
                if self.adapter.has_display:
                    await self._send_due_notifications()
                next_at = await database_sync_to_async(relay_next_attempt_at)(
                    device_id=self.device_id
                )
                if next_at is None:
                    if self._wake.is_set():
                        continue
                    # Idle: only a wake-up (no polling); a lost wake-up is
                    # covered by the process-wide sweep.
                    return
                timeout = max((next_at - timezone.now()).total_seconds(), 0.05)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except asyncio.CancelledError:
                raise
            except ClientDisconnected:
                return  # the socket closed under us; disconnect() cleans up
            except Exception:
                logger.exception("relay command loop error for device %s", self.device_id)
                await asyncio.sleep(1)

    async def _send_due_command(self) -> None:
        cmd = await database_sync_to_async(relay_command_due)(device_id=self.device_id)
        if cmd is None:
            return
        cmd = await database_sync_to_async(relay_command_mark_sent)(command_id=cmd.pk)
        await self.adapter.send_relay(cmd)

    async def _send_due_notifications(self) -> None:
        alerts = await database_sync_to_async(device_notifications_due)(device_id=self.device_id)
        for alert in alerts:
            alert_id = cast(int, alert["id"])
            if alert_id in self._notify_in_flight:
                continue
            self._notify_in_flight.add(alert_id)
            await self.adapter.send_notification(alert)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self._closing = True
        # Nothing more is sent either: the command loop stops with the close.
        if self._loop_task is not None and self._loop_task is not asyncio.current_task():
            self._loop_task.cancel()
        await super().close(code=code, reason=reason)

    # --- inbound frames -----------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closing or not self.device_id:
            # Refused, replaced or told its secret changed: nothing it sends now
            # is recorded, even if it arrives before the close is through.
            return
        await self.adapter.receive(text_data, bytes_data)

    # --- domain calls for adapters ------------------------------------------
    # What a device said, recorded for this device only: an adapter never
    # names a device, so one device cannot report for another.

    def wake(self) -> None:
        """Have the command loop look at the outbox now (after a report, a boot),
        starting it if it is not running."""
        self._wake.set()
        if self._closing or not self.device_id:
            return
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._command_loop())

    async def record_presence(self, *, firmware: str | None = None) -> None:
        """The device announced itself (a boot, a full status)."""
        await database_sync_to_async(device_presence)(
            device_id=self.device_id, connected=True, firmware=firmware
        )

    async def record_seen(self) -> None:
        """The device is alive (a heartbeat, a status notification)."""
        await database_sync_to_async(Device.objects.filter(pk=self.device_id).update)(
            last_seen_at=timezone.now()
        )

    async def submit_readings(self, readings: list[ReadingInput]) -> ReadingsResult:
        """Store one frame's readings. Raises ``ReadingRejected`` (nothing
        stored) or ``intake.IntakeUnavailable`` (the device should send them again)."""
        return await intake.submit(
            device_id=self.device_id, landlord_id=self.landlord_id, readings=readings
        )

    async def report_relay(self, *, state: str, generation: int) -> None:
        """Where the relay is, at the generation the device applied."""
        await database_sync_to_async(relay_report)(
            device_id=self.device_id, state=state, generation=generation
        )

    async def report_relay_unversioned(self, *, state: str) -> None:
        """Where the relay is, from a device that keeps no generations."""
        await database_sync_to_async(relay_report_unversioned)(
            device_id=self.device_id, state=state
        )

    async def resend_now(self) -> None:
        """Make the outstanding command, if any, due at once (the device rebooted)."""
        await database_sync_to_async(relay_resend_now)(device_id=self.device_id)

    async def notification_answered(self, alert_id: int) -> None:
        """The device showed an alert, or said it cannot: it is not sent again."""
        self._notify_in_flight.discard(alert_id)
        await database_sync_to_async(device_notification_acked)(
            device_id=self.device_id, alert_id=alert_id
        )
