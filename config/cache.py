"""One cache client per process for code that runs under the event loop.

``django.core.cache.cache`` is a separate client per async context: every
socket's consumer would open its own Redis connection (10,000 sockets, 10,000
connections, past Redis's default client limit). Django's cache clients are
thread-safe (redis-py pools connections; local memory takes a lock), so one
shared client serves every socket and thread of the process.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.signals import setting_changed

_client: BaseCache | None = None
_lock = threading.Lock()


def shared() -> BaseCache:
    global _client
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client = caches.create_connection(DEFAULT_CACHE_ALIAS)
            client = _client
    return client


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _client
    if setting == "CACHES":
        with _lock:
            _client = None


setting_changed.connect(_reset)
