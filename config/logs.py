"""Log redaction: a Shelly's secret is part of the address it connects to.

A Shelly cannot send an Authorization header, so its secret travels in the
path (``/ws/shelly/<ident>/<secret>``), and servers log paths: uvicorn logs
every WebSocket handshake on ``uvicorn.error`` and every request on
``uvicorn.access``, Django logs unknown paths on ``django.request``, and a
traceback may quote the path. ``RedactDeviceSecrets`` keeps the ident (it
says which device) and replaces everything after it.

The filter is installed on the root console handler and on the loggers that
print paths (settings ``LOGGING``): a logger's filter changes the record
before any handler sees it, including handlers another configuration (a
uvicorn log config applied after Django's) attaches to those loggers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# The ident segment, then everything up to the next blank or quote: the
# secret and whatever a misconfigured address appends to it.
_SHELLY_PATH = re.compile(r"(ws/shelly/[^/\s'\"]*/)[^\s'\"]+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SHELLY_PATH.sub(lambda m: m.group(1) + REDACTED, text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        text = str(value)
        cleaned = redact(text)
        return cleaned if cleaned != text else value
    return value


class RedactDeviceSecrets(logging.Filter):
    """Replaces the secret segment of Shelly paths in a record's message,
    arguments and traceback; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {key: _clean(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_clean(value) for value in record.args)
        if record.exc_info and not record.exc_text:
            # Rendered here so that every handler's formatter reuses the clean text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
