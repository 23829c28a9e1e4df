"""A request that finds every kept thread busy waits a little for one to come free
(config/handler.py) rather than starting a thread, and a database connection, of
its own."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.core.signals import request_started

from config.handler import PooledThreadsASGIHandler
from tests.test_handler import _get

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_request_waits_for_the_busy_kept_thread():
    # given one kept thread, busy with a request that waits
    app = PooledThreadsASGIHandler(threads=1, wait=30)
    release = threading.Event()
    threads: list[threading.Thread] = []

    def hold(**kwargs: Any) -> None:
        threads.append(threading.current_thread())
        if len(threads) == 1:
            assert release.wait(timeout=30)

    request_started.connect(hold)
    try:
        slow = asyncio.create_task(_get(app))
        while not threads:
            await asyncio.sleep(0.01)
        # when another request comes, and the first one then ends
        second = asyncio.create_task(_get(app))
        await asyncio.sleep(0.1)
        assert len(threads) == 1  # it waits for the kept thread
        release.set()
        assert await slow == 200
        assert await asyncio.wait_for(second, timeout=30) == 200
    finally:
        release.set()
        request_started.disconnect(hold)
    # then it ran on the kept thread
    assert threads[1] is threads[0]


async def test_a_request_that_waited_too_long_gets_a_thread_of_its_own():
    app = PooledThreadsASGIHandler(threads=1, wait=0.05)
    release = threading.Event()
    threads: list[threading.Thread] = []

    def hold(**kwargs: Any) -> None:
        threads.append(threading.current_thread())
        if len(threads) == 1:
            assert release.wait(timeout=30)

    request_started.connect(hold)
    try:
        slow = asyncio.create_task(_get(app))
        while not threads:
            await asyncio.sleep(0.01)
        assert await asyncio.wait_for(_get(app), timeout=30) == 200
        assert not slow.done()
        release.set()
        assert await slow == 200
    finally:
        release.set()
        request_started.disconnect(hold)
    assert threads[1] is not threads[0]
