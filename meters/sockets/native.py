"""Native protocol v1 on a device socket (docs/device-protocol.md).

A device authenticates with HTTP Basic credentials in the handshake
(``Authorization: Basic base64(ident:secret)``), never in the URL. Frames
are parsed and built by ``meters/protocol.py``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.conf import settings

from .. import intake, protocol
from ..models import Protocol, RelayCommand
from ..readings import ReadingRejected
from .base import ProtocolAdapter

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


class NativeAdapter(ProtocolAdapter):
    device_protocol = Protocol.NATIVE
    label = "device"
    subprotocol = protocol.SUBPROTOCOL
    has_display = True

    # The id of the call being handled, for errors raised below it.
    _last_id = ""
    # The calls a device makes, and the method that answers each.
    _calls: ClassVar[dict[str, str]] = {
        "BootNotification": "_on_boot",
        "Heartbeat": "_on_heartbeat",
        "MeterValues": "_on_meter_values",
        "RelayStatus": "_on_relay_status",
    }

    def credentials(self, scope: dict[str, Any]) -> tuple[str, str | None]:
        creds = basic_credentials(scope)
        return (creds[0], creds[1]) if creds else ("", None)

    # --- outbound -----------------------------------------------------------
    async def send_relay(self, command: RelayCommand) -> None:
        msg_id = f"relay-{command.generation}-{command.attempts}"
        await self.socket.send(
            text_data=protocol.call(
                msg_id, "SetRelay", {"state": command.state, "generation": command.generation}
            )
        )

    async def send_notification(self, alert: dict[str, object]) -> None:
        await self.socket.send(text_data=protocol.call(f"notify-{alert['id']}", "Notify", alert))

    # --- inbound ------------------------------------------------------------
    async def receive(self, text: str | None, data: bytes | None) -> None:
        send = self.socket.send
        if text is None:
            await send(text_data=protocol.error("", "FormatViolation", "Text frames only."))
            return
        try:
            frame = protocol.parse_frame(text)
            if frame.kind == protocol.CALL:
                await self._handle_call(frame)
            elif frame.kind == protocol.RESULT:
                await self._handle_result(frame)
            else:
                logger.warning(
                    "device %s answered %s with error %s",
                    self.socket.device_ident,
                    frame.msg_id,
                    frame.error_code,
                )
                if frame.msg_id.startswith("notify-"):
                    # A meter that cannot show it will not show it later either.
                    await self._notified(frame.msg_id)
        except protocol.ProtocolError as exc:
            await send(text_data=protocol.error(exc.msg_id, exc.code, exc.message, exc.details))
        except ReadingRejected as exc:
            details = {"seq": exc.seq} if exc.seq is not None else {}
            await send(text_data=protocol.error(self._last_id, exc.code, exc.message, details))

    async def _handle_call(self, frame: protocol.Frame) -> None:
        self._last_id = frame.msg_id
        name = self._calls.get(frame.action)
        if name is None:
            raise protocol.ProtocolError(
                "NotImplemented", f"Unknown action {frame.action!r}.", frame.msg_id
            )
        handler: Callable[[protocol.Frame], Awaitable[dict[str, Any]]] = getattr(self, name)
        reply = await handler(frame)
        await self.socket.send(text_data=protocol.result(frame.msg_id, reply))

    async def _on_boot(self, frame: protocol.Frame) -> dict[str, Any]:
        versions = frame.payload.get("protocol_versions", ["1"])
        if not isinstance(versions, list) or "1" not in versions:
            raise protocol.ProtocolError(
                "NotSupported", "This server speaks protocol version 1.", frame.msg_id
            )
        firmware = frame.payload.get("firmware")
        await self.socket.record_presence(firmware=str(firmware) if firmware is not None else None)
        relay = frame.payload.get("relay")
        if isinstance(relay, dict):
            state, generation = protocol.parse_relay(relay, frame.msg_id)
            await self.socket.report_relay(state=state, generation=generation)
        await self.socket.resend_now()
        self.socket.wake()
        return {
            "status": "Accepted",
            "protocol": "1",
            "server_time": datetime.now(UTC).isoformat(),
            "heartbeat_interval": settings.SUBMETER["DEVICE_HEARTBEAT_SECONDS"],
        }

    async def _on_heartbeat(self, frame: protocol.Frame) -> dict[str, Any]:
        await self.socket.record_seen()
        return {"server_time": datetime.now(UTC).isoformat()}

    async def _on_meter_values(self, frame: protocol.Frame) -> dict[str, Any]:
        readings = protocol.parse_readings(frame.payload, frame.msg_id)
        try:
            result = await self.socket.submit_readings(readings)
        except intake.IntakeUnavailable:
            raise protocol.ProtocolError(
                "InternalError", "The readings could not be stored; send them again.", frame.msg_id
            ) from None
        return {"accepted": len(result.accepted), "duplicates": result.duplicates}

    async def _on_relay_status(self, frame: protocol.Frame) -> dict[str, Any]:
        state, generation = protocol.parse_relay(frame.payload, frame.msg_id)
        await self.socket.report_relay(state=state, generation=generation)
        self.socket.wake()
        return {}

    async def _notified(self, msg_id: str) -> None:
        alert_id = msg_id.removeprefix("notify-")
        if alert_id.isdigit():
            await self.socket.notification_answered(int(alert_id))

    async def _handle_result(self, frame: protocol.Frame) -> None:
        if frame.msg_id.startswith("notify-"):
            await self._notified(frame.msg_id)
            return
        # Any answer, even to a call of an earlier connection, says where the relay is.
        state, generation = protocol.parse_relay(frame.payload, frame.msg_id)
        await self.socket.report_relay(state=state, generation=generation)
        self.socket.wake()
