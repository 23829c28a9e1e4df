"""The Redis channel layer, with a connection pool that waits instead of failing.

channels-redis builds redis-py's default pool, which raises "Too many
connections" as soon as more than ``max_connections`` (100) commands are in
flight on one event loop. A process holding thousands of sockets reaches that
in a burst: a fleet reconnecting, or a batch of readings that wakes many
screens at once. A blocking pool queues those commands for a free connection
instead, so a burst costs a little latency, not lost connects and wake-ups.

``group_add_many`` joins many channels to their groups in one pipelined round
trip per shard, for a fleet reconnecting at once (meters/attach.py). It
writes the same keys and scores as channels-redis's ``group_add`` (whose key
naming, ``_group_key``, it reuses), so ``group_send`` and ``group_discard``
see no difference. ``group_send_many`` likewise finds in one round trip which
of many groups have channels, so a batch of broadcasts to screens nobody has
open costs one round trip, not two per group. ``send_many`` sends many
messages to channels (e.g. "you are replaced" to the older sockets of a
reconnecting fleet) in one script per shard, as ``group_send`` does for one
group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, cast

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from redis import asyncio as aioredis

logger = logging.getLogger(__name__)

# ``send`` for many messages (KEYS[i] gets ARGV[i] if it holds fewer than
# ARGV[n + i]); a key may repeat. Returns how many did not fit.
_SEND_MANY = """
local n = #KEYS
local now, oldest, expiry = ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]
local full = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, oldest)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        full = full + 1
    end
end
return full
"""


class RedisChannelLayer(_RedisChannelLayer):
    def __init__(self, *args: Any, max_connections: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        # This process's channels: one reader task takes their messages off
        # Redis and hands each to its channel's waiting receive().
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._unclaimed: dict[str, deque[dict[str, Any]]] = {}
        self._receiving = 0
        self._reader: asyncio.Task[None] | None = None

    async def receive(self, channel: str) -> dict[str, Any]:
        """As channels-redis's ``receive``, with one future per waiting channel
        instead of two tasks, a queue and a lock: a process holding thousands of
        idle sockets keeps a fraction of the objects (and of the garbage
        collector's work) per socket."""
        if "!" not in channel:
            return cast(dict[str, Any], await super().receive(channel))
        assert self.require_valid_channel_name(channel)
        unclaimed = self._unclaimed.get(channel)
        if unclaimed:
            message = unclaimed.popleft()
            if not unclaimed:
                del self._unclaimed[channel]
            return message
        loop = asyncio.get_running_loop()
        reader = self._reader
        if reader is not None and reader.get_loop() is not loop:
            if not reader.done() and not reader.get_loop().is_closed():
                raise RuntimeError(
                    "Two event loops are trying to receive() on one channel layer at once!"
                )
            reader = self._reader = None
        if reader is None or reader.done():
            self._reader = loop.create_task(self._read(self.non_local_name(channel)))
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[channel] = waiter
        self._receiving += 1
        try:
            return await waiter
        except asyncio.CancelledError:
            self._unclaimed.pop(channel, None)  # the socket is going away
            raise
        finally:
            if self._waiting.get(channel) is waiter:
                del self._waiting[channel]
            self._receiving -= 1
            if not self._receiving and self._reader is not None:
                self._reader.cancel()  # nobody waits: no blocking read on Redis
                self._reader = None

    async def _read(self, local: str) -> None:
        while True:
            try:
                channels, message = await self.receive_single(local)
            except Exception as exc:
                # Redis failed: every waiting receive() raises, as one would alone.
                for failed in list(self._waiting.values()):
                    if not failed.done():
                        failed.set_exception(exc)
                self._waiting.clear()
                return
            for channel in channels if isinstance(channels, list) else [channels]:
                waiter = self._waiting.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
                    continue
                # Between two receive() calls of the channel: kept for the next,
                # up to the channel's capacity (the oldest dropped first).
                unclaimed = self._unclaimed.setdefault(channel, deque())
                if len(unclaimed) >= self.get_capacity(channel):
                    unclaimed.popleft()
                unclaimed.append(message)

    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        address = host.pop("address", None)
        if address is None:  # a Sentinel set-up: channels-redis's own pool
            return super().create_pool(index)
        return aioredis.BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, **host
        )

    async def group_add_many(self, memberships: list[tuple[str, str]]) -> dict[str, list[str]]:
        """``group_add`` for many (group, channel) pairs, one round trip per shard.

        Returns each group's channels from before the additions (expired ones
        left out, as ``group_send`` would)."""
        by_shard: dict[int, list[tuple[str, str]]] = {}
        for group, channel in memberships:
            assert self.require_valid_group_name(group), "Group name not valid"
            assert self.require_valid_channel_name(channel), "Channel name not valid"
            by_shard.setdefault(self.consistent_hash(group), []).append((group, channel))
        before: dict[str, list[str]] = {}
        for index, pairs in by_shard.items():
            now = time.time()
            pipe = self.connection(index).pipeline(transaction=False)
            first: dict[str, int] = {}  # where each group's members are in the replies
            for group, channel in pairs:
                key = self._group_key(group)
                if group not in first:
                    pipe.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
                    first[group] = len(pipe)
                    pipe.zrange(key, 0, -1)
                pipe.zadd(key, {channel: now})
                pipe.expire(key, self.group_expiry)
            replies = await pipe.execute()
            for group, at in first.items():
                before[group] = [name.decode("utf8") for name in replies[at]]
        return before

    async def send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """``send`` for many (channel, message) pairs: one script per shard.

        As in ``group_send``, a channel whose queue is full does not get its
        message (counted in a log line), and expired messages are dropped first."""
        by_shard: dict[int, list[tuple[bytes, bytes, int]]] = {}
        for channel, message in sends:
            assert self.require_valid_channel_name(channel), "Channel name not valid"
            assert "__asgi_channel__" not in message
            target = channel
            if "!" in channel:
                # A process's channels share one queue; the message names its channel.
                message = {**message, "__asgi_channel__": [channel]}
                target = self.non_local_name(channel)
            key = (self.prefix + target).encode("utf8")
            by_shard.setdefault(self.consistent_hash(target), []).append(
                (key, self.serialize(message), self.get_capacity(channel))
            )
        for index, items in by_shard.items():
            now = time.time()
            keys = [key for key, _message, _capacity in items]
            args: list[Any] = [message for _key, message, _capacity in items]
            args += [capacity for _key, _message, capacity in items]
            args += [now, int(now) - int(self.expiry), self.expiry]
            full = await self.connection(index).eval(_SEND_MANY, len(keys), *keys, *args)
            if full:
                logger.info("%s of %s channels over capacity", full, len(items))

    async def group_send_many(self, sends: list[tuple[str, dict[str, Any]]]) -> None:
        """``group_send`` for many (group, message) pairs: one pipelined round trip
        per shard finds the groups with channels, and only those are sent to.

        A channel joining a group meanwhile may miss its message: broadcasts
        here are wake-ups, and a screen reads everything when it joins."""
        by_shard: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        for group, message in sends:
            assert self.require_valid_group_name(group), "Group name not valid"
            by_shard.setdefault(self.consistent_hash(group), []).append((group, message))
        for index, items in by_shard.items():
            oldest = int(time.time()) - self.group_expiry
            pipe = self.connection(index).pipeline(transaction=False)
            for group, _message in items:
                pipe.zremrangebyscore(self._group_key(group), min=0, max=oldest)
                pipe.zrange(self._group_key(group), 0, -1)
            replies = await pipe.execute()
            for at, (group, message) in enumerate(items):
                if replies[2 * at + 1]:
                    await self.group_send(group, message)
