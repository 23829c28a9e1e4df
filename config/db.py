"""Database calls from the event loop that may run beside each other.

``database_sync_to_async`` runs every call in one shared thread by default,
so the calls of all sockets queue behind each other. Calls that need no
ordering with the rest (logging a device in, a batch of readings) can instead
run in the loop's thread pool, where their database round trips overlap.

Such a call gives its connection back when it ends (to the pool on
PostgreSQL): a pool thread may never run again, and a connection it kept
would stay checked out of the pool. Channels' own clean-up after a call is
switched off while its test communicator runs, so this does not rely on it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.db import connections


def off_thread[**P, R](fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        finally:
            for conn in connections.all(initialized_only=True):
                conn.close()

    return database_sync_to_async(call, thread_sensitive=False)
