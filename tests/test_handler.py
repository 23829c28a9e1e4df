"""HTTP requests' synchronous code on kept threads (config/handler.py), through the
ASGI interface, watched with Django's request signals."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import connection

from config.handler import PooledThreadsASGIHandler, get_asgi_application

pytestmark = pytest.mark.django_db(transaction=True)


async def _get(app: Any, path: str = "/healthz") -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays until the answer is sent
        raise AssertionError("unreachable")

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


class Seen:
    """Each request's thread and the database connection it finished with."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []  # the objects: idents are reused
        self.connections: list[object] = []

    def started(self, **kwargs: Any) -> None:
        self.threads.append(threading.current_thread())

    def finished(self, **kwargs: Any) -> None:
        self.connections.append(connection.connection)


@pytest.fixture
def seen():
    watcher = Seen()
    request_started.connect(watcher.started)
    request_finished.connect(watcher.finished)
    yield watcher
    request_started.disconnect(watcher.started)
    request_finished.disconnect(watcher.finished)


async def test_requests_one_after_another_run_on_one_kept_thread(seen):
    app = PooledThreadsASGIHandler(threads=4)
    for _ in range(3):
        assert await _get(app) == 200
    assert seen.threads == [seen.threads[0]] * 3
    assert seen.threads[0] is not threading.current_thread()  # never on the event loop's thread


@pytest.mark.skipif(
    connection.settings_dict["CONN_MAX_AGE"] == 0,
    reason="each request hands its connection back to the pool (PostgreSQL)",
)
async def test_the_next_request_finds_the_connection_open(seen):
    app = PooledThreadsASGIHandler(threads=4)
    for _ in range(3):
        assert await _get(app) == 200
    assert seen.connections[0] is not None
    assert seen.connections == [seen.connections[0]] * 3


async def test_a_slow_request_holds_up_another_only_briefly(seen):
    # given one kept thread, busy with a request that waits
    app = PooledThreadsASGIHandler(threads=1)
    release = threading.Event()
    first = True

    def hold(**kwargs: Any) -> None:
        nonlocal first
        if first:
            first = False
            assert release.wait(timeout=30)

    request_started.connect(hold)
    try:
        slow = asyncio.create_task(_get(app))
        while not seen.threads:
            await asyncio.sleep(0.01)
        # when another request comes, it is answered on a thread of its own (after
        # at most HTTP_THREAD_WAIT_SECONDS waiting for the kept one)
        assert await asyncio.wait_for(_get(app), timeout=30) == 200
        assert not slow.done()
        release.set()
        assert await slow == 200
    finally:
        release.set()
        request_started.disconnect(hold)
    # then the kept thread serves the next request again
    assert await _get(app) == 200
    assert seen.threads[1] is not seen.threads[0]
    assert seen.threads[2] is seen.threads[0]


def test_the_server_sets_the_collector_thresholds_of_its_settings(settings):
    settings.SUBMETER = {**settings.SUBMETER, "GC_THRESHOLDS": (700, 10, 1000)}
    before = gc.get_threshold()
    try:
        get_asgi_application()
        assert gc.get_threshold() == (700, 10, 1000)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
