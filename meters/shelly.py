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

This module is pure (parse and build frames); the socket's adapter is
``meters.sockets.shelly.ShellyAdapter``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .protocol import MAX_FRAME_BYTES, JSONRefused, load_json

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


def parse(text: str, max_bytes: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    """A frame within the native protocol's limits (size, nesting, finite numbers)."""
    try:
        frame = load_json(text, max_bytes)
    except JSONRefused as exc:
        raise ShellyFrameError(str(exc)) from exc
    if not isinstance(frame, dict):
        raise ShellyFrameError("a JSON-RPC frame is an object")
    return frame


def _number(value: Any) -> float | None:
    """A finite JSON number as a float (an integer literal can exceed any double)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def switch_status(status: Any, ts: Any = None) -> SwitchStatus | None:
    """Read a ``switch:N`` status object (full, partial, or a GetStatus result)."""
    if not isinstance(status, dict):
        return None
    output = status.get("output")
    energy = status.get("aenergy")
    total = energy.get("total") if isinstance(energy, dict) else None
    energy_wh = _number(total)
    return SwitchStatus(
        output=output if isinstance(output, bool) else None,
        energy_wh=energy_wh if energy_wh is not None and energy_wh >= 0 else None,
        ts=_number(ts),
    )


def notification_switch(frame: dict[str, Any], switch_id: int = SWITCH_ID) -> SwitchStatus | None:
    """The switch part of a NotifyFullStatus / NotifyStatus frame, if any."""
    params = frame.get("params")
    if not isinstance(params, dict):
        return None
    return switch_status(params.get(f"switch:{switch_id}"), params.get("ts"))


def reading_time(
    ts: float | None, now: datetime, tolerance_s: float, oldest: datetime | None = None
) -> datetime:
    """The device's timestamp when it is plausible, else the time we received it.

    Implausible: more than ``tolerance_s`` ahead, or before ``oldest`` (a clock
    never set, or reset to an epoch, after a power cut).
    """
    if ts is None:
        return now
    try:
        when = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return now
    if (when - now).total_seconds() > tolerance_s:
        return now
    if oldest is not None and when < oldest:
        return now
    return when


def request(rpc_id: int, method: str, params: dict[str, Any]) -> str:
    return json.dumps({"id": rpc_id, "src": SERVER_SRC, "method": method, "params": params})


def switch_set(rpc_id: int, on: bool, switch_id: int = SWITCH_ID) -> str:
    return request(rpc_id, "Switch.Set", {"id": switch_id, "on": on})


def switch_get_status(rpc_id: int, switch_id: int = SWITCH_ID) -> str:
    return request(rpc_id, "Switch.GetStatus", {"id": switch_id})
