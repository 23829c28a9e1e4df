"""The whole product in one process: ``make run``.

uvicorn serves HTTP and WebSockets; a Huey consumer runs in threads of this
process (its signal handlers are not installed, so uvicorn's Ctrl-C handling
stays in charge); simulated meters connect over the real device socket.
Group sends from Huey threads are handed to this event loop (config.live).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import uvicorn
from django.core.management.base import BaseCommand, CommandError
from huey.consumer import Consumer
from huey.contrib.djhuey import HUEY

from config.live import register_server_loop
from landlord.demo import demo_sim_devices
from meters.simulator import run_any

logger = logging.getLogger(__name__)


class InProcessConsumer(Consumer):
    """A Huey consumer that leaves signal handling to the ASGI server."""

    def _set_signal_handlers(self) -> None:
        return


def start_consumer(workers: int = 2) -> InProcessConsumer:
    # Polls the queue at least twice a second when idle (the default backs off to
    # 10 s), so staged readings are rated and payments credited promptly.
    consumer = InProcessConsumer(
        HUEY, workers=workers, worker_type="thread", periodic=True, max_delay=0.5
    )
    consumer.start()
    return consumer


class Command(BaseCommand):
    help = "Serve HTTP + WebSockets with an in-process task consumer and simulated meters."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-simulator", action="store_true")
        parser.add_argument("--no-consumer", action="store_true")

    def handle(self, *args: Any, **opts: Any) -> None:
        host, port = opts["host"], opts["port"]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((host, port)) == 0:
                raise CommandError(
                    f"Port {port} on {host} is in use. Stop what runs there or use PORT=8001."
                )
        sims = []
        if not opts["no_simulator"]:
            sims = demo_sim_devices()
        consumer = None if opts["no_consumer"] else start_consumer()
        try:
            asyncio.run(self._serve(host, port, sims))
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled; shutdown already happened
        finally:
            if consumer is not None:
                consumer.stop(graceful=True)
            register_server_loop(None)
            self.stdout.write("stopped")

    async def _serve(self, host: str, port: int, sims: list[Any]) -> None:
        register_server_loop(asyncio.get_running_loop())
        config = uvicorn.Config(
            "config.asgi:application",
            host=host,
            port=port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=3,
            ws_max_size=512 * 1024,
        )
        server = uvicorn.Server(config)
        stop = asyncio.Event()

        async def start_sims() -> None:
            while not server.started:
                await asyncio.sleep(0.05)
            self.stdout.write(
                self.style.SUCCESS(f"\nSubmeter is running: open http://{host}:{port}/\n")
            )
            self.stdout.write(
                f"  health: http://{host}:{port}/healthz   admin: http://{host}:{port}/admin/"
            )
            if sims:
                self.stdout.write(f"  {len(sims)} simulated meters streaming readings")
            self.stdout.write("  Ctrl-C stops everything.\n")
            await asyncio.gather(*(run_any(f"ws://{host}:{port}", s, stop) for s in sims))

        async def stop_sims_on_exit() -> None:
            # Devices hang up as soon as shutdown starts, so it need not wait for them.
            while not server.should_exit:
                await asyncio.sleep(0.1)
            stop.set()

        sim_task = asyncio.create_task(start_sims())
        watch_task = asyncio.create_task(stop_sims_on_exit())
        try:
            await server.serve()
        finally:
            stop.set()
            watch_task.cancel()
            sim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sim_task
