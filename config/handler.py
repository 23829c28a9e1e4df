"""Django's ASGI handler, with each HTTP request's synchronous code on a kept thread.

Django runs a request's synchronous code (the request signals, the middleware, the
view, closing the response) on one thread, as a synchronous view expects: asgiref's
``ThreadSensitiveContext``. Out of the box that thread is started for the request
and ended after it, and the request's database connection (one per thread) goes
with it: every request opened a new one. On SQLite that is the file opened, its
PRAGMAs run and Django's SQL functions registered, a few milliseconds of a page
that is otherwise about ten; what a process keeps per connection (the row
converters of ``config.prepared``) was looked up again each time as well.

Here a request borrows a thread from a small pool and gives it back when it is
done, so the next request on that thread finds the connection open. Connections
follow the same rules as under a WSGI server's threads: ``CONN_MAX_AGE`` says how
long one is kept, and Django's ``close_old_connections`` still runs as each
request starts and finishes (closing one that outlived its age, failed, or was
left outside autocommit). With PostgreSQL's connection pool ``CONN_MAX_AGE`` is 0
and each request hands its connection back to the pool, as before; the threads
are still kept.

A thread serves one request at a time. When every kept thread is busy, a request
gets a thread of its own, as Django would give it, closed after the request: a
slow request never makes another wait for a thread. A request that stopped early
(the client went away) while its synchronous code still runs does not give its
thread back; that thread finishes the work, closes its connections and ends.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import connections


class _RequestThread(ThreadPoolExecutor):
    """One thread running one call at a time, which knows whether it is idle."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="http")
        # Calls not finished yet (a set: adding and discarding are atomic under the GIL).
        self.pending: set[Future[Any]] = set()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.pending.add(future)
        # Added before asyncio's own callback, so it runs first: an awaiting request
        # resumes with its call already off this set.
        future.add_done_callback(self.pending.discard)
        return future

    def retire(self) -> None:
        """End the thread once its queued work is done, closing its connections first."""
        super().submit(connections.close_all)
        self.shutdown(wait=False)


class PooledThreadsASGIHandler(ASGIHandler):
    """``ASGIHandler`` whose requests' synchronous code runs on up to ``threads``
    kept threads (more, briefly, when more requests are in flight)."""

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.threads = threads
        # Idle kept threads, the most recently used last: the busiest few stay warm.
        # Touched only from the event loop's thread, between awaits.
        self._idle: list[_RequestThread] = []
        self._kept = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # refuses it, as Django does
            return
        thread, kept = self._borrow()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            self._give_back(thread, kept)

    def _borrow(self) -> tuple[_RequestThread, bool]:
        if self._idle:
            return self._idle.pop(), True
        if self._kept < self.threads:
            self._kept += 1
            return _RequestThread(), True
        return _RequestThread(), False

    def _give_back(self, thread: _RequestThread, kept: bool) -> None:
        if kept and not thread.pending:
            self._idle.append(thread)
            return
        if kept:
            self._kept -= 1  # still busy with an abandoned request: replaced by a new one
        thread.retire()


def get_asgi_application() -> PooledThreadsASGIHandler:
    """``django.core.asgi.get_asgi_application``, with ``SUBMETER["HTTP_THREADS"]``
    kept request threads."""
    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler(threads=settings.SUBMETER["HTTP_THREADS"])
