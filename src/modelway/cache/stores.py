"""Where cached answers live: in process memory (LRU bounded by bytes) or in Redis
(shared by every replica). Both keep an entry for its TTL at most.

A cache must never fail a request: the Redis store answers a lookup it cannot make as
a miss and drops a write it cannot make, and says so in the log.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from modelway.observability.logging import get_logger

_log = get_logger("modelway.cache")


class AnswerStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return found[1]

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if len(value) > self._max:
            return
        self._drop(key)
        self._entries[key] = (self._clock() + ttl_seconds, value)
        self.bytes += len(value)
        while self.bytes > self._max:
            self._drop(next(iter(self._entries)))

    async def delete(self, key: str) -> None:
        self._drop(key)

    def _drop(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self.bytes -= len(found[1])

    async def close(self) -> None:
        self._entries.clear()
        self.bytes = 0


class RedisStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        try:
            found = await self._redis.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            _log.warning("cache_unavailable", op="get", error=type(exc).__name__)
            return None
        return found if isinstance(found, bytes) else None

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        try:
            await self._redis.set(self._prefix + key, value, px=max(1, int(ttl_seconds * 1000)))
        except (RedisError, OSError) as exc:
            _log.warning("cache_unavailable", op="set", error=type(exc).__name__)

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except (RedisError, OSError) as exc:
            _log.warning("cache_unavailable", op="delete", error=type(exc).__name__)

    async def close(self) -> None:
        """The Redis client is shared with the semantic feed; its owner closes it."""
