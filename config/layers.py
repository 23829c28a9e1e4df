"""The Redis channel layer, with a connection pool that waits instead of failing.

channels-redis builds redis-py's default pool, which raises "Too many
connections" as soon as more than ``max_connections`` (100) commands are in
flight on one event loop. A process holding thousands of sockets reaches that
in a burst: a fleet reconnecting, or a batch of readings that wakes many
screens at once. A blocking pool queues those commands for a free connection
instead, so a burst costs a little latency, not lost connects and wake-ups.
"""

from __future__ import annotations

from typing import Any

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer
from redis import asyncio as aioredis


class RedisChannelLayer(_RedisChannelLayer):
    def __init__(self, *args: Any, max_connections: int = 100, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections

    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        address = host.pop("address", None)
        if address is None:  # a Sentinel set-up: channels-redis's own pool
            return super().create_pool(index)
        return aioredis.BlockingConnectionPool.from_url(
            address, max_connections=self.max_connections, **host
        )
