"""Native device protocol v1: frame parsing (see docs/device-protocol.md).

Frames are JSON arrays in the OCPP-J style:
``[2, id, action, payload]`` (call), ``[3, id, payload]`` (result),
``[4, id, code, description, details]`` (error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .services import ReadingInput

CALL, RESULT, ERROR = 2, 3, 4
SUBPROTOCOL = "submeter.v1"
MAX_FRAME_BYTES = 256 * 1024
MAX_ID_LEN = 64

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


@dataclass(frozen=True)
class Frame:
    kind: int
    msg_id: str
    action: str
    payload: dict[str, Any]
    error_code: str = ""


def parse_frame(text: str) -> Frame:
    if len(text) > MAX_FRAME_BYTES or len(text.encode()) > MAX_FRAME_BYTES:
        raise ProtocolError("FormatViolation", "Frame too large.")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("FormatViolation", "Frame is not valid JSON.") from exc
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


def parse_time(value: Any, msg_id: str) -> datetime:
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
    return when


def parse_readings(payload: dict[str, Any], msg_id: str) -> list[ReadingInput]:
    items = payload.get("readings")
    if not isinstance(items, list):
        raise ProtocolError("FormatViolation", "readings must be a list.", msg_id)
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise ProtocolError("FormatViolation", "Each reading must be an object.", msg_id)
        out.append(
            ReadingInput(
                seq=_int(item, "seq", msg_id),
                taken_at=parse_time(item.get("taken_at"), msg_id),
                register_wh=_int(item, "register_wh", msg_id),
            )
        )
    return out


def parse_relay(payload: dict[str, Any], msg_id: str) -> tuple[str, int]:
    state = payload.get("state")
    if state not in ("on", "off"):
        raise ProtocolError("PropertyConstraintViolation", "state must be 'on' or 'off'.", msg_id)
    generation = _int(payload, "generation", msg_id)
    if generation < 0:
        raise ProtocolError("PropertyConstraintViolation", "generation must be >= 0.", msg_id)
    return state, generation


def call(msg_id: str, action: str, payload: dict[str, Any]) -> str:
    return json.dumps([CALL, msg_id, action, payload])


def result(msg_id: str, payload: dict[str, Any]) -> str:
    return json.dumps([RESULT, msg_id, payload])


def error(msg_id: str, code: str, description: str, details: Any = None) -> str:
    return json.dumps([ERROR, msg_id, code, description, details or {}])
