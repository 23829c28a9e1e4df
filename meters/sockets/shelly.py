"""A Shelly Gen2+ outbound WebSocket (JSON-RPC 2.0) on a device socket.

The device's secret is part of the configured address
(``/ws/shelly/<ident>/<secret>``) because a Shelly cannot send an
Authorization header; frames whose ``src`` is not the device's own id close
the socket, so one device cannot report for another. Frames are parsed and
built by ``meters/shelly.py``; docs/shelly.md has the mapping.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from .. import intake
from .. import shelly as frames
from ..models import Protocol, RelayCommand
from ..protocol import CLOSE_UNAUTHORIZED
from ..readings import ReadingInput, ReadingRejected, readings_oldest
from .base import DeviceSocket, ProtocolAdapter

logger = logging.getLogger(__name__)


class ShellyAdapter(ProtocolAdapter):
    device_protocol = Protocol.SHELLY
    label = "shelly"
    # The address holds the secret: a native device's credentials there are
    # refused like a wrong secret, not told which endpoint they belong to.
    tell_other_protocol = False
    # No display: alerts reach the tenant by page and email only.
    has_display = False

    def __init__(self, socket: DeviceSocket) -> None:
        super().__init__(socket)
        self._rpc_ids = itertools.count(1)
        # rpc id -> (method, state, generation) of calls awaiting an answer
        self._rpc: dict[int, tuple[str, str, int]] = {}

    def credentials(self, scope: dict[str, Any]) -> tuple[str, str | None]:
        kwargs = scope["url_route"]["kwargs"]
        return str(kwargs.get("ident", "")), str(kwargs.get("secret", ""))

    # --- outbound -----------------------------------------------------------
    async def send_relay(self, command: RelayCommand) -> None:
        # Only the newest command is worth an answer.
        self._rpc = {k: v for k, v in self._rpc.items() if v[0] != "set"}
        rpc_id = next(self._rpc_ids)
        self._rpc[rpc_id] = ("set", command.state, command.generation)
        await self.socket.send(text_data=frames.switch_set(rpc_id, command.state == "on"))

    # --- inbound ------------------------------------------------------------
    async def receive(self, text: str | None, data: bytes | None) -> None:
        if text is None:
            return
        ident = self.socket.device_ident
        try:
            frame = frames.parse(text)
        except frames.ShellyFrameError as exc:
            logger.warning("shelly %s: bad frame (%s)", ident, exc)
            return
        src = frame.get("src")
        if src is not None and src != ident:
            logger.warning("shelly %s: frame from %r refused", ident, src)
            await self.socket.close(code=CLOSE_UNAUTHORIZED, reason="src is not this device")
            return
        method = frame.get("method")
        if method in ("NotifyFullStatus", "NotifyStatus"):
            await self._on_status(frame, full=method == "NotifyFullStatus")
        elif "id" in frame and ("result" in frame or "error" in frame):
            await self._on_response(frame)
        # NotifyEvent and anything else carry nothing the server needs.

    async def _on_status(self, frame: dict[str, Any], *, full: bool) -> None:
        status = frames.notification_switch(frame)
        if full:
            await self.socket.record_presence()
        else:
            await self.socket.record_seen()
        if status is None:
            return
        if status.energy_wh is not None:
            now = timezone.now()
            taken_at = frames.reading_time(
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
                await self.socket.submit_readings([reading])
            except ReadingRejected as exc:
                logger.warning(
                    "shelly %s: reading refused: %s", self.socket.device_ident, exc.message
                )
            except intake.IntakeUnavailable:
                logger.warning(
                    "shelly %s: reading not stored; the next status repeats it",
                    self.socket.device_ident,
                )
        if status.output is not None:
            state = "on" if status.output else "off"
            if any(s == state for _kind, s, _g in self._rpc.values()):
                return  # our own Switch.Set taking effect: Switch.GetStatus will confirm it
            await self.socket.report_relay_unversioned(state=state)
            self.socket.wake()

    async def _on_response(self, frame: dict[str, Any]) -> None:
        rpc_id = frame.get("id")
        pending = self._rpc.pop(rpc_id, None) if isinstance(rpc_id, int) else None
        if pending is None:
            return
        kind, state, generation = pending
        if "error" in frame:
            logger.warning(
                "shelly %s: %s failed: %s", self.socket.device_ident, kind, frame["error"]
            )
            return  # the outbox retries with backoff
        if kind == "set":
            # "ok" only says the Shelly took the call; where the relay is, and so
            # whether the command is done, is what Switch.GetStatus reports.
            get_id = next(self._rpc_ids)
            self._rpc[get_id] = ("get", state, generation)
            await self.socket.send(text_data=frames.switch_get_status(get_id))
        else:
            status = frames.switch_status(frame.get("result"))
            if status is not None and status.output is not None:
                await self.socket.report_relay(
                    state="on" if status.output else "off", generation=generation
                )
        self.socket.wake()
