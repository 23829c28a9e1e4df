"""Group commit of device readings: many sockets' frames, one transaction.

A socket hands its frame's readings to ``submit`` and waits. One task per
event loop writes everything waiting in one ``readings.readings_stage``
call (one statement on PostgreSQL), answers every frame once the batch is
committed, and asks a background worker to rate it. While a batch is being
written, the next one gathers, so a busy process writes big batches and a
quiet one writes each frame at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from config.db import off_thread

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
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.waiting:
                batch = self._take()
                try:
                    answers = await off_thread(_write)([w.request for w in batch])
                except Exception:
                    logger.exception("storing %d reading frames failed", len(batch))
                    for w in batch:
                        if not w.answer.done():
                            w.answer.set_exception(IntakeUnavailable())
                    continue
                for w, answer in zip(batch, answers, strict=True):
                    if w.answer.done():
                        continue  # the socket went away
                    if isinstance(answer, readings_svc.ReadingRejected):
                        w.answer.set_exception(answer)
                    else:
                        w.answer.set_result(answer)

    def _take(self) -> list[_Waiting]:
        """Frames up to the batch size in readings (at least one frame)."""
        limit = int(settings.SUBMETER["INTAKE_BATCH_READINGS"])
        taken, count = 0, 0
        for w in self.waiting:
            if taken and count + len(w.request.readings) > limit:
                break
            taken += 1
            count += len(w.request.readings)
        batch, self.waiting = self.waiting[:taken], self.waiting[taken:]
        return batch


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
    if batcher is None or batcher.task is None or batcher.task.done():
        for old in [lp for lp in _batchers if lp.is_closed()]:
            del _batchers[old]
        batcher = _Batcher(loop)
        batcher.task = loop.create_task(batcher.run())
        _batchers[loop] = batcher
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
    batcher.waiting.append(
        _Waiting(readings_svc.StageRequest(device_id, landlord_id, readings), answer)
    )
    batcher.wake.set()
    return await answer
