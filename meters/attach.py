"""Connect storms: many sockets' logins and presence changes, a batch at a time.

After a server restart a whole fleet reconnects at once. Logged in and
attached one by one, each device costs several queries on the database
thread, and the last of 10,000 waits for all the others. Here, as in
meters/intake.py, a socket hands its login (or its presence change) to a
per-event-loop batcher and waits; the batcher does everything waiting in one
call (``devices.devices_login``, ``devices.devices_presence_apply``: one
query for many idents, set-based updates for many devices) and answers each
socket. While a batch runs the next one gathers, so a storm is taken in big
batches and a lone device at once.

Joining the device's channel-layer group (which replaces an older socket of
the device, anywhere) is batched too when the layer is Redis: one pipelined
round trip for the whole batch (``config.layers.RedisChannelLayer.group_add_many``)
instead of four per socket, and the older sockets it replaces are told in one
more (``send_many``), not with a ``group_send`` per device. Other layers join
one socket at a time.

Presence changes of one device keep their order: each attach gets a number,
and a detach of a socket whose device has attached again since (a newer
socket of it, in this process) changes nothing, so a late disconnect never
marks a connected device offline. Changes go to the database in the order
they were handed in, on the shared database thread, like every other
presence write of a socket.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async

from config.db import off_thread
from config.layers import RedisChannelLayer

from .devices import LoginRequest, devices_login, devices_presence_apply
from .models import Device

logger = logging.getLogger(__name__)

#: Most logins or presence changes done in one call.
BATCH = 1000


@dataclass
class _Waiting[Q, A]:
    request: Q
    answer: asyncio.Future[A]


@dataclass
class _Batcher[Q, A]:
    """Gathers requests and does each batch with ``work`` (one answer per request,
    an exception for the request's socket to raise)."""

    loop: asyncio.AbstractEventLoop
    work: Callable[[list[Q]], Awaitable[list[A | BaseException]]]
    label: str
    waiting: list[_Waiting[Q, A]] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def submit(self, request: Q) -> asyncio.Future[A]:
        answer: asyncio.Future[A] = self.loop.create_future()
        self.waiting.append(_Waiting(request, answer))
        self.wake.set()
        return answer

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.waiting:
                batch, self.waiting = self.waiting[:BATCH], self.waiting[BATCH:]
                answers = await self._answers([w.request for w in batch])
                for w, answer in zip(batch, answers, strict=True):
                    if w.answer.done():
                        continue  # the socket went away
                    if isinstance(answer, BaseException):
                        w.answer.set_exception(answer)
                    else:
                        w.answer.set_result(answer)

    async def _answers(self, requests: list[Q]) -> list[A | BaseException]:
        try:
            return await self.work(requests)
        except Exception as exc:
            if len(requests) == 1:
                logger.exception("%s failed", self.label)
                return [exc]
            # One bad request must not fail the others: each on its own.
            logger.exception("%s of %d sockets failed; one by one", self.label, len(requests))
        answers: list[A | BaseException] = []
        for request in requests:
            answers.extend(await self._answers([request]))
        return answers


def _batcher[Q, A](
    batchers: dict[asyncio.AbstractEventLoop, _Batcher[Q, A]],
    make: Callable[[asyncio.AbstractEventLoop], _Batcher[Q, A]],
) -> _Batcher[Q, A]:
    loop = asyncio.get_running_loop()
    batcher = batchers.get(loop)
    if batcher is None or batcher.task is None or batcher.task.done():
        for old in [lp for lp in batchers if lp.is_closed()]:
            del batchers[old]
        batcher = make(loop)
        batcher.task = loop.create_task(batcher.run())
        batchers[loop] = batcher
    return batcher


# --- Logins ---------------------------------------------------------------------

type LoginAnswer = Device | None

_logins: dict[asyncio.AbstractEventLoop, _Batcher[LoginRequest, LoginAnswer]] = {}


async def _login_batch(requests: list[LoginRequest]) -> list[LoginAnswer | BaseException]:
    # Logins need no order with other database calls: they run in the pool.
    answers = await off_thread(devices_login)(requests=requests)
    return list(answers)


async def login(*, address: str, ident: str, secret: str | None) -> Device | None:
    """A device's login for one socket, done with the logins of the
    sockets connecting beside it. Raises ``devices.DeviceLoginLimited``."""
    batcher = _batcher(_logins, lambda loop: _Batcher(loop, _login_batch, "logging in"))
    return await batcher.submit(LoginRequest(address, ident, secret))


# --- Presence -------------------------------------------------------------------


@dataclass(frozen=True)
class PresenceChange:
    """A socket attached (``connected``) or went away; ``seq`` numbers its attach."""

    device_id: int
    seq: int
    connected: bool


def presence_resolve(changes: list[PresenceChange]) -> tuple[list[int], list[int]]:
    """The devices to mark attached and detached after ``changes``, in order:
    the last change of a device decides."""
    last: dict[int, bool] = {}
    for change in changes:
        last[change.device_id] = change.connected
    attach = [pk for pk, connected in last.items() if connected]
    detach = [pk for pk, connected in last.items() if not connected]
    return attach, detach


async def _presence_batch(changes: list[PresenceChange]) -> list[bool | BaseException]:
    attach, detach = presence_resolve(changes)
    # On the shared database thread, with the sockets' other presence writes.
    with_work = await database_sync_to_async(devices_presence_apply)(attach=attach, detach=detach)
    return [c.connected and c.device_id in with_work for c in changes]


_presence: dict[asyncio.AbstractEventLoop, _Batcher[PresenceChange, bool]] = {}
_seq = itertools.count(1)
# Each device's latest attach in this process, by number.
_latest: dict[int, int] = {}


def _presence_batcher() -> _Batcher[PresenceChange, bool]:
    return _batcher(_presence, lambda loop: _Batcher(loop, _presence_batch, "recording presence"))


async def attached(*, device_id: int) -> tuple[int, bool]:
    """Mark the device connected (and its outstanding command due at once), beside the
    other sockets attaching now. Returns this attach's number (for ``detached``)
    and whether work waits for the device."""
    seq = next(_seq)
    _latest[device_id] = seq
    has_work = await _presence_batcher().submit(PresenceChange(device_id, seq, connected=True))
    return seq, has_work


async def detached(*, device_id: int, seq: int) -> None:
    """Mark the device disconnected, unless it has attached again since attach ``seq``."""
    if _latest.get(device_id) != seq:
        return  # a newer socket of the device is attached: it stays connected
    del _latest[device_id]
    await _presence_batcher().submit(PresenceChange(device_id, seq, connected=False))


# --- Channel-layer groups -------------------------------------------------------

type Join = tuple[RedisChannelLayer, str, str]  # (layer, device group, channel)

_joins: dict[asyncio.AbstractEventLoop, _Batcher[Join, None]] = {}


def _replaced(channel: str) -> dict[str, str]:
    return {"type": "device.replaced", "channel": channel}


async def _join_batch(joins: list[Join]) -> list[BaseException | None]:
    by_layer: dict[RedisChannelLayer, list[tuple[str, str]]] = {}
    for layer, group, channel in joins:
        by_layer.setdefault(layer, []).append((group, channel))
    for layer, memberships in by_layer.items():
        before = await layer.group_add_many(memberships)
        # A group's last join in the batch replaces its other channels: those
        # there before (a socket of the device elsewhere, or of a server that
        # went away) and the earlier joins of the batch. Told directly, all in
        # one round trip: a fleet reconnecting after a restart finds every
        # device group holding the old server's channel.
        newest = dict(memberships)
        others: dict[str, list[str]] = {group: list(members) for group, members in before.items()}
        for group, channel in memberships:
            others[group].append(channel)
        await layer.send_many(
            [
                (channel, _replaced(newest[group]))
                for group, channels in others.items()
                for channel in dict.fromkeys(channels)
                if channel != newest[group]
            ]
        )
    return [None] * len(joins)


async def joined(*, layer: Any, group: str, channel: str) -> None:
    """Join ``channel`` to its device's ``group``, replacing every other socket
    of the device (they get ``device.replaced`` naming the newest channel)."""
    if not isinstance(layer, RedisChannelLayer):
        await layer.group_send(group, _replaced(channel))
        await layer.group_add(group, channel)
        return
    batcher = _batcher(_joins, lambda loop: _Batcher(loop, _join_batch, "joining groups"))
    await batcher.submit((layer, group, channel))
