"""A request that finds every kept thread busy waits a little for one to come free
(config/handler.py) rather than starting a thread, and a database connection, of
its own."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.signals import request_started

from config.handler import PooledThreadsASGIHandler
from tests.test_handler import _get

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Busy:
    """The one kept thread, busy with a first request until ``release`` is set;
    the thread each request ran on, in order."""

    slow: asyncio.Task[int]
    release: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)


@contextlib.asynccontextmanager
async def _kept_thread_busy(app: PooledThreadsASGIHandler) -> AsyncIterator[Busy]:
    release = threading.Event()
    threads: list[threading.Thread] = []

    def hold(**kwargs: Any) -> None:
        threads.append(threading.current_thread())
        if len(threads) == 1:
            assert release.wait(timeout=30)

    request_started.connect(hold)
    try:
        busy = Busy(asyncio.create_task(_get(app)), release, threads)
        while not threads:
            await asyncio.sleep(0.01)
        yield busy
    finally:
        release.set()
        request_started.disconnect(hold)


async def test_a_request_waits_for_the_busy_kept_thread():
    # given one kept thread, busy with a request that waits
    app = PooledThreadsASGIHandler(threads=1, wait=30)
    async with _kept_thread_busy(app) as busy:
        # when another request comes, and the first one then ends
        second = asyncio.create_task(_get(app))
        await asyncio.sleep(0.1)
        assert len(busy.threads) == 1  # it waits for the kept thread
        busy.release.set()
        assert await busy.slow == 200
        assert await asyncio.wait_for(second, timeout=30) == 200
    # then it ran on the kept thread
    assert busy.threads[1] is busy.threads[0]


async def test_a_request_that_waited_too_long_gets_a_thread_of_its_own():
    app = PooledThreadsASGIHandler(threads=1, wait=0.05)
    async with _kept_thread_busy(app) as busy:
        assert await asyncio.wait_for(_get(app), timeout=30) == 200
        assert not busy.slow.done()
        busy.release.set()
        assert await busy.slow == 200
    assert busy.threads[1] is not busy.threads[0]
