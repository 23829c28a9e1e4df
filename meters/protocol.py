"""Native device protocol v1: frame parsing (see docs/device-protocol.md).

Frames are JSON arrays in the OCPP-J style:
``[2, id, action, payload]`` (call), ``[3, id, payload]`` (result),
``[4, id, code, description, details]`` (error).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .readings import ReadingInput

CALL, RESULT, ERROR = 2, 3, 4
SUBPROTOCOL = "submeter.v1"
MAX_FRAME_BYTES = 256 * 1024
MAX_ID_LEN = 64
# No frame needs more than a few levels; deeper ones only cost recursion.
MAX_JSON_DEPTH = 32
# A device's generation leaves the server room to count on within BIGINT.
MAX_GENERATION = 2**62

# Close codes the server ends a device socket with (docs/device-protocol.md).
CLOSE_PROTOCOL = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_REPLACED = 4409
CLOSE_RATE_LIMITED = 4429


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, msg_id: str = "", details: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.msg_id = msg_id
        self.details = details or {}


class Frame(NamedTuple):
    """One parsed frame (a tuple: cheaper to build than a frozen dataclass,
    and one is built for every frame a device sends)."""

    kind: int
    msg_id: str
    action: str
    payload: dict[str, Any]
    error_code: str = ""


class JSONRefused(ValueError):
    """Text that is not one frame's worth of JSON (the message says why)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused("A number in the frame is out of range.")
    return value


def _no_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON value.")


# One decoder for every frame: json.loads with hooks would build one per call.
_decoder = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def _deeper_than(value: Any, limit: int) -> bool:
    # Without recursion: the point is not to recurse on a device's say-so.
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def load_json(text: str, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """A device frame's JSON, within the limits in docs/device-protocol.md:
    its size, its nesting, and numbers that fit a double (no NaN/Infinity)."""
    # A character is at most four bytes: only a frame near the limit is encoded to count.
    if len(text) > max_bytes or (len(text) * 4 > max_bytes and len(text.encode()) > max_bytes):
        raise JSONRefused("Frame too large.")
    try:
        data = _decoder.decode(text)
    except JSONRefused:
        raise
    except RecursionError as exc:
        raise JSONRefused("Frame is nested too deeply.") from exc
    except ValueError as exc:
        raise JSONRefused("Frame is not valid JSON.") from exc
    # Every level opens with a bracket: a frame with few of them needs no walk.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
        raise JSONRefused("Frame is nested too deeply.")
    return data


def parse_frame(text: str) -> Frame:
    try:
        data = load_json(text)
    except JSONRefused as exc:
        raise ProtocolError("FormatViolation", str(exc)) from exc
    if not isinstance(data, list) or len(data) < 3 or data[0] not in (CALL, RESULT, ERROR):
        raise ProtocolError("FormatViolation", "Frame must be [2|3|4, id, ...].")
    msg_id = data[1]
    if not isinstance(msg_id, str) or not 0 < len(msg_id) <= MAX_ID_LEN:
        raise ProtocolError("FormatViolation", "Message id must be a string of 1-64 characters.")
    kind = data[0]
    if kind == CALL:
        if len(data) != 4 or not isinstance(data[2], str) or not isinstance(data[3], dict):
            raise ProtocolError("FormatViolation", "A call is [2, id, action, {payload}].", msg_id)
        return Frame(CALL, msg_id, data[2], data[3])
    if kind == RESULT:
        if len(data) != 3 or not isinstance(data[2], dict):
            raise ProtocolError("FormatViolation", "A result is [3, id, {payload}].", msg_id)
        return Frame(RESULT, msg_id, "", data[2])
    code = data[2] if isinstance(data[2], str) else "GenericError"
    return Frame(ERROR, msg_id, "", {"description": data[3] if len(data) > 3 else ""}, code)


def _int(payload: dict[str, Any], key: str, msg_id: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("TypeConstraintViolation", f"{key} must be an integer.", msg_id)
    return value


def parse_time(value: Any, msg_id: str, seq: int | None = None) -> datetime:
    if not isinstance(value, str):
        raise ProtocolError(
            "TypeConstraintViolation", "taken_at must be an ISO 8601 string.", msg_id
        )
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProtocolError("FormatViolation", "taken_at is not ISO 8601.", msg_id) from exc
    if when.tzinfo is None:
        raise ProtocolError("FormatViolation", "taken_at needs a UTC offset.", msg_id)
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:
        # 0001-01-01T00:00+14:00 is a valid string but no time in UTC.
        details = {"seq": seq} if seq is not None else {}
        raise ProtocolError(
            "PropertyConstraintViolation", "taken_at is out of range.", msg_id, details
        ) from exc


def parse_readings(payload: dict[str, Any], msg_id: str) -> list[ReadingInput]:
    items = payload.get("readings")
    if not isinstance(items, list):
        raise ProtocolError("FormatViolation", "readings must be a list.", msg_id)
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ProtocolError("FormatViolation", "Each reading must be an object.", msg_id)
        seq = _int(item, "seq", msg_id)
        out.append(
            ReadingInput(
                seq=seq,
                taken_at=parse_time(item.get("taken_at"), msg_id, seq),
                register_wh=_int(item, "register_wh", msg_id),
            )
        )
    return out


def parse_relay(payload: dict[str, Any], msg_id: str) -> tuple[str, int]:
    state = payload.get("state")
    if state not in ("on", "off"):
        raise ProtocolError("PropertyConstraintViolation", "state must be 'on' or 'off'.", msg_id)
    generation = _int(payload, "generation", msg_id)
    if not 0 <= generation <= MAX_GENERATION:
        raise ProtocolError(
            "PropertyConstraintViolation", "generation must be between 0 and 2^62.", msg_id
        )
    return state, generation


def call(msg_id: str, action: str, payload: dict[str, Any]) -> str:
    return json.dumps([CALL, msg_id, action, payload])


def result(msg_id: str, payload: dict[str, Any]) -> str:
    return json.dumps([RESULT, msg_id, payload])


def error(msg_id: str, code: str, description: str, details: Any = None) -> str:
    return json.dumps([ERROR, msg_id, code, description, details or {}])
