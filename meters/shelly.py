"""Shelly Gen2+ outbound WebSocket: JSON-RPC frames mapped onto the native services.

A Shelly (Plus 1PM, Pro 1PM, Plus Plug S, ...) configured with an outbound
WebSocket server ``ws(s)://<host>/ws/shelly/<ident>/<secret>`` connects and
sends ``NotifyFullStatus`` at once, then ``NotifyStatus`` whenever a
component changes (the switch output, and the energy counter about once a
minute). The server drives the relay with ``Switch.Set`` and confirms the
result with ``Switch.GetStatus``. See docs/shelly.md.

Mapping onto the native model:

* register: ``switch:<n>.aenergy.total`` (Wh, a float; stored floored to
  integer Wh), sequence: the notification's ``ts`` in milliseconds;
* relay: ``switch:<n>.output``. A Shelly has no generations, so the server
  keeps them: a ``Switch.Set`` result confirms that command's generation; an
  unsolicited output change is a report at the last confirmed generation, so
  a button press against the desired state is corrected with a new command.

This module is pure (parse and build frames); the socket is
``meters.consumers.ShellyConsumer``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SERVER_SRC = "submeter"
SWITCH_ID = 0


class ShellyFrameError(ValueError):
    pass


@dataclass(frozen=True)
class SwitchStatus:
    """What one notification or status says about the metered switch."""

    output: bool | None
    energy_wh: float | None
    ts: float | None


def parse(text: str, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    if len(text) > max_bytes:
        raise ShellyFrameError("frame too large")
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise ShellyFrameError("not JSON") from exc
    if not isinstance(frame, dict):
        raise ShellyFrameError("a JSON-RPC frame is an object")
    return frame


def switch_status(status: Any, ts: Any = None) -> SwitchStatus | None:
    """Read a ``switch:N`` status object (full, partial, or a GetStatus result)."""
    if not isinstance(status, dict):
        return None
    output = status.get("output")
    energy = status.get("aenergy")
    total = energy.get("total") if isinstance(energy, dict) else None
    energy_wh = None
    if isinstance(total, int | float) and not isinstance(total, bool) and total >= 0:
        energy_wh = float(total)
    return SwitchStatus(
        output=output if isinstance(output, bool) else None,
        energy_wh=energy_wh,
        ts=float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None,
    )


def notification_switch(frame: dict[str, Any], switch_id: int = SWITCH_ID) -> SwitchStatus | None:
    """The switch part of a NotifyFullStatus / NotifyStatus frame, if any."""
    params = frame.get("params")
    if not isinstance(params, dict):
        return None
    return switch_status(params.get(f"switch:{switch_id}"), params.get("ts"))


def reading_time(ts: float | None, now: datetime, tolerance_s: float) -> datetime:
    """The device's timestamp when it is plausible, else the time we received it."""
    if ts is None:
        return now
    try:
        when = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return now
    if (when - now).total_seconds() > tolerance_s:
        return now
    return when


def request(rpc_id: int, method: str, params: dict[str, Any]) -> str:
    return json.dumps({"id": rpc_id, "src": SERVER_SRC, "method": method, "params": params})


def switch_set(rpc_id: int, on: bool, switch_id: int = SWITCH_ID) -> str:
    return request(rpc_id, "Switch.Set", {"id": switch_id, "on": on})


def switch_get_status(rpc_id: int, switch_id: int = SWITCH_ID) -> str:
    return request(rpc_id, "Switch.GetStatus", {"id": switch_id})
