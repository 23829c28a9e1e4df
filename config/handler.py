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
waits for the first to come free, up to ``wait`` seconds (a quarter of a second by
default), then gets a thread of its own, as Django would give it, closed after
the request: slow requests make another wait for a thread that long at most.
The wait is what keeps a busy process busy with pages: a thread of its own costs
a request its database connection (opened, set up and closed: on SQLite about
as much CPU as a whole page), and Python runs one thread at a time anyway, so
under a burst those new threads only made every request slower, and the burst
longer. A request that stopped early
(the client went away) while its synchronous code still runs does not give its
thread back; that thread finishes the work, closes its connections and ends.

A request's synchronous code also runs in one go: the request signal, the whole
middleware chain (loaded synchronous, as under WSGI) and the view, in a single
hop to its thread, then a second to close the response once sent. Django's own
ASGI path hops between the event loop and the thread five times a request (the
signal, the middleware chain, each view middleware, the view, the close), and
each hop copies and restores the request's context: a third of what a bare view
costs.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import IO, Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix


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
    kept threads (more, briefly, when requests wait over ``wait`` s for one)."""

    def __init__(self, threads: int, wait: float = 0.25) -> None:
        super().__init__()
        self.threads = threads
        self.wait = wait
        # Idle kept threads, the most recently used last: the busiest few stay warm;
        # requests waiting for one, first come first served. Touched only from the
        # event loop's thread, between awaits.
        self._idle: list[_RequestThread] = []
        self._waiting: deque[asyncio.Future[_RequestThread]] = deque()
        self._kept = 0
        # The chain as WSGI runs it: every middleware here is synchronous.
        self.load_middleware(is_async=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # refuses it, as Django does
            return
        thread, kept = await self._borrow()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            self._give_back(thread, kept)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``ASGIHandler.handle``, the request's synchronous code in one hop (``_respond``)."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        with closing(body_file):
            set_script_prefix(get_script_prefix(scope))

            class RequestProcessed(Exception):
                pass

            response: HttpResponseBase | None = None
            try:
                try:
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self.listen_for_disconnect(receive))
                        response = await sync_to_async(self._respond, thread_sensitive=True)(
                            scope, body_file
                        )
                        await self.send_response(response, send)
                        raise RequestProcessed
                except* (RequestProcessed, RequestAborted):
                    pass
            except BaseExceptionGroup as exception_group:
                if len(exception_group.exceptions) == 1:
                    raise exception_group.exceptions[0] from None
                raise
            if response is None:
                await signals.request_finished.asend(sender=self.__class__)
            else:
                await sync_to_async(response.close, thread_sensitive=True)()

    def _respond(self, scope: dict[str, Any], body_file: IO[bytes]) -> HttpResponseBase:
        """The request signal, the request, and the response of the middleware chain."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            assert error_response is not None  # create_request gives one or the other
            return error_response
        response = self.get_response(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response

    async def _borrow(self) -> tuple[_RequestThread, bool]:
        if self._idle:
            return self._idle.pop(), True
        if self._kept < self.threads:
            self._kept += 1
            return _RequestThread(), True
        waiter: asyncio.Future[_RequestThread] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await asyncio.wait_for(waiter, self.wait), True
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_back(waiter.result(), True)  # handed over as the request ended
            raise
        finally:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
        if waiter.done() and not waiter.cancelled():
            return waiter.result(), True  # handed over just as the wait ran out
        return _RequestThread(), False

    def _give_back(self, thread: _RequestThread, kept: bool) -> None:
        if kept and not thread.pending:
            while self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(thread)
                    return
            self._idle.append(thread)
            return
        if kept:
            self._kept -= 1  # still busy with an abandoned request: replaced by a new one
        thread.retire()


def get_asgi_application() -> PooledThreadsASGIHandler:
    """``django.core.asgi.get_asgi_application``, with ``SUBMETER["HTTP_THREADS"]``
    kept request threads, waited for up to ``SUBMETER["HTTP_THREAD_WAIT_SECONDS"]``."""
    django.setup(set_prefix=False)
    handler = PooledThreadsASGIHandler(
        threads=settings.SUBMETER["HTTP_THREADS"],
        wait=settings.SUBMETER["HTTP_THREAD_WAIT_SECONDS"],
    )
    # What start-up made (modules, classes, settings) lives as long as the process:
    # out of the collector's way, a full collection scans only what requests left
    # behind. It scanned all of it, about 50 ms of CPU a time, every couple of
    # thousand pages: a pause that every page in flight waited out.
    gc.freeze()
    # A full collection walks every object the process holds, and a worker
    # holding thousands of sockets holds millions: by default one ran after
    # every 10 collections of the middle generation, a large share of a
    # reconnecting fleet's CPU. Fewer full collections; the younger generations
    # still collect what requests and closed sockets leave behind.
    gc.set_threshold(*settings.SUBMETER["GC_THRESHOLDS"])
    return handler
