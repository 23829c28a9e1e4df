"""bench/devices.py: every stage ends by its deadline, and sizes fit the machine."""

from __future__ import annotations

import asyncio
import json
import os
import time

import websockets

from bench.devices import Machine, fit_sockets, frames_per_second, hold_sockets

ROOMY = Machine(
    open_files=1_048_576,
    memory_kib=64 * 1024 * 1024,
    local_ports=28_232,
    redis_free=10_000,
    redis_max=10_000,
    pg_free=90,
    pg_max=100,
)


def test_sockets_fit_a_roomy_machine_unchanged() -> None:
    assert fit_sockets(10_000, ROOMY) == (10_000, [])


def test_sockets_scale_down_to_the_open_file_limit_and_say_why() -> None:
    machine = Machine(**{**ROOMY.__dict__, "open_files": 4096})

    fits, notes = fit_sockets(10_000, machine)

    assert fits == 4096 - 1000
    [note] = notes
    assert "open-file limit is 4,096" in note and "3,096 instead of 10,000" in note


def test_sockets_scale_down_to_the_memory_available() -> None:
    machine = Machine(**{**ROOMY.__dict__, "memory_kib": 1024 * 1024})

    fits, notes = fit_sockets(10_000, machine)

    assert fits == 1024 * 1024 // 2 // 250
    assert "1,024 MiB of memory" in notes[0]


async def test_frames_stage_ends_at_its_deadline_when_frames_go_unanswered() -> None:
    async def answers_only_the_first(ws: websockets.ServerConnection) -> None:
        async for message in ws:
            frame = json.loads(message)
            if frame[1] == "ready":
                await ws.send(message)
            # every reading frame after it goes unanswered

    async with websockets.serve(answers_only_the_first, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()

        result = await frames_per_second(
            f"ws://127.0.0.1:{port}/", None, 3, 1.0, deadline=started + 10
        )

    assert time.monotonic() - started < 10
    assert (result.clients, result.answered, result.unanswered) == (3, 0, 3)


async def test_idle_stage_ends_at_its_deadline_when_handshakes_hang() -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settled: list[int] = []

    async def settle(deadline: float, opened: int) -> None:
        settled.append(opened)

    started = time.monotonic()
    try:
        result = await hold_sockets(
            f"ws://127.0.0.1:{port}/", [None] * 4, os.getpid(), started + 2, settle
        )
    finally:
        server.close()

    assert time.monotonic() - started < 10
    assert (result.held, result.wanted, result.stopped) == (0, 4, True)
    assert result.failures == {"timed out": 4}
    assert settled == [0]
