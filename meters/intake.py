"""Group commit of device readings: many sockets' frames, one transaction.

A socket hands its frame's readings to ``submit`` and waits. A per-event-loop
batcher writes everything waiting in one ``readings.readings_stage`` call
(one statement on PostgreSQL), answers every frame once the batch is
committed, and asks a background worker to rate it.

Up to ``INTAKE_WRITERS`` batches are written at once, each on its own
database connection. A commit waits for its write-ahead log to reach disk,
and most of a small batch's time is that wait, with the event loop idle: a
single writer would leave the sockets of the next batch waiting for the
whole of it, then for their own. With several writers a frame is written as
soon as a writer is free, the loop parses the next frames while earlier
batches commit, and PostgreSQL flushes concurrent commits together. A busy
process still writes big batches (a writer takes everything waiting when it
starts); a quiet one writes each frame at once.

A device's frames are stored in the order they came: a frame whose device
has a frame in a batch being written waits for the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections
from django.utils import timezone

from . import readings as readings_svc

logger = logging.getLogger(__name__)


class IntakeUnavailable(Exception):
    """The batch could not be stored; the device should send the frame again."""


@dataclass
class _Waiting:
    request: readings_svc.StageRequest
    answer: asyncio.Future[readings_svc.ReadingsResult]


@dataclass
class _Batcher:
    loop: asyncio.AbstractEventLoop
    waiting: list[_Waiting] = field(default_factory=list)
    #: Writers running (each writes one batch after another while frames wait).
    writers: set[asyncio.Task[None]] = field(default_factory=set)
    #: Devices with a frame in a batch being written.
    busy: set[int] = field(default_factory=set)

    def add(self, waiting: _Waiting) -> None:
        self.waiting.append(waiting)
        # A writer that found nothing more has ended, though the callback that
        # drops it from the set may not have run yet: count running ones only.
        running = sum(not t.done() for t in self.writers)
        if running < max(int(settings.SUBMETER["INTAKE_WRITERS"]), 1):
            # The writer takes its batch when it first runs: every frame handed
            # in before then (frames read in the same pass of the loop) joins it.
            task = self.loop.create_task(self._write_while_waiting())
            self.writers.add(task)
            task.add_done_callback(self.writers.discard)

    async def _write_while_waiting(self) -> None:
        while batch := self._take():
            devices = {w.request.device_id for w in batch}
            self.busy |= devices
            try:
                await self._write(batch)
            finally:
                self.busy -= devices

    async def _write(self, batch: list[_Waiting]) -> None:
        try:
            answers = await self.loop.run_in_executor(
                _writer_threads(), _write_and_close, [w.request for w in batch]
            )
        except Exception:
            logger.exception("storing %d reading frames failed", len(batch))
            for w in batch:
                if not w.answer.done():
                    w.answer.set_exception(IntakeUnavailable())
            return
        for w, answer in zip(batch, answers, strict=True):
            if w.answer.done():
                continue  # the socket went away
            if isinstance(answer, readings_svc.ReadingRejected):
                w.answer.set_exception(answer)
            else:
                w.answer.set_result(answer)

    def _take(self) -> list[_Waiting]:
        """Frames up to the batch size in readings (at least one frame), in the
        order they came, leaving those of devices in a batch being written."""
        limit = int(settings.SUBMETER["INTAKE_BATCH_READINGS"])
        batch: list[_Waiting] = []
        left: list[_Waiting] = []
        count = 0
        held: set[int] = set()
        for i, w in enumerate(self.waiting):
            device_id = w.request.device_id
            if batch and count + len(w.request.readings) > limit:
                left.extend(self.waiting[i:])
                break
            if device_id in self.busy or device_id in held:
                # Neither this frame nor any later one of its device goes before
                # the frame being written.
                held.add(device_id)
                left.append(w)
                continue
            batch.append(w)
            count += len(w.request.readings)
        self.waiting = left
        return batch


# The threads batches are written on, shared by the process's event loops: a
# plain executor, one thread per writer. Batches skip the default executor
# (where logins and other socket work queue) and asgiref's per-call set-up,
# a good part of a small batch's cost in the process.
_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def _writer_threads() -> ThreadPoolExecutor:
    global _threads
    if _threads is None:
        with _threads_lock:
            if _threads is None:
                _threads = ThreadPoolExecutor(
                    max_workers=max(int(settings.SUBMETER["INTAKE_WRITERS"]), 1),
                    thread_name_prefix="intake",
                )
    return _threads


def _write_and_close(
    requests: list[readings_svc.StageRequest],
) -> list[readings_svc.ReadingsResult | readings_svc.ReadingRejected]:
    try:
        return _write(requests)
    finally:
        # The connection goes back to the pool between batches, as after any
        # database call from the loop (config/db.py): an idle process keeps none.
        for conn in connections.all(initialized_only=True):
            conn.close()


def _write(
    requests: list[readings_svc.StageRequest],
) -> list[readings_svc.ReadingsResult | readings_svc.ReadingRejected]:
    answers = readings_svc.readings_stage(requests=requests)
    if any(isinstance(a, readings_svc.ReadingsResult) and a.accepted for a in answers):
        # Committed by now; with an immediate queue (tests) this rates at once.
        try:
            readings_svc.readings_rate_soon()
        except Exception:
            # The readings are stored: the device must not be told otherwise.
            logger.exception("could not queue rating; the periodic run will rate them")
    return answers


_batchers: dict[asyncio.AbstractEventLoop, _Batcher] = {}


def _batcher() -> _Batcher:
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        for old in [lp for lp in _batchers if lp.is_closed()]:
            del _batchers[old]
        batcher = _batchers[loop] = _Batcher(loop)
    return batcher


async def submit(
    *, device_id: int, landlord_id: int, readings: list[readings_svc.ReadingInput]
) -> readings_svc.ReadingsResult:
    """Validate and store one frame's readings; returns once they are committed.

    Raises ``readings_svc.ReadingRejected`` for a frame that cannot be stored
    (an invalid reading, no meter installed) and ``IntakeUnavailable`` when
    the database failed.
    """
    readings_svc.readings_validate(readings=readings, now=timezone.now())
    batcher = _batcher()
    answer: asyncio.Future[readings_svc.ReadingsResult] = batcher.loop.create_future()
    batcher.add(_Waiting(readings_svc.StageRequest(device_id, landlord_id, readings), answer))
    return await answer
