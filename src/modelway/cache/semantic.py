"""The semantic cache: find a cached question close in meaning to a new one.

A request's last user message is embedded (the configured embedding model group) and
compared with the cached questions of the same partition (``keys.semantic_filter``);
the best one at or above the policy's threshold lends its answer. With Redis, every
replica appends its new entries to one Redis stream and follows the stream into its
own in-process index, so all replicas search the same entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from redis.asyncio import Redis
from redis.exceptions import RedisError

from modelway.cache.keys import last_user_text, semantic_filter
from modelway.cache.semantic_guard import same_specifics
from modelway.cache.vector_index import Match, VectorIndex
from modelway.observability.logging import get_logger
from modelway.protocol.openai_chat import ChatRequest

Embed = Callable[[list[str]], Awaitable[NDArray[np.float32]]]
_log = get_logger("modelway.cache")


@dataclass(slots=True)
class Probe:
    """A request's place in the semantic index: its filter, its vector, its best match."""

    filter_key: str
    text: str
    vector: NDArray[np.float32]
    match: Match | None


class SemanticCache:
    def __init__(
        self, index: VectorIndex, embed: Embed, max_chars: int, feed: RedisFeed | None = None
    ) -> None:
        self.index = index
        self._embed = embed
        self._max_chars = max_chars
        self._feed = feed

    async def start(self) -> None:
        if self._feed is not None:
            await self._feed.start(self.index)

    async def close(self) -> None:
        if self._feed is not None:
            await self._feed.close()

    async def probe(
        self, group: str, scope: str, req: ChatRequest, threshold: float
    ) -> Probe | None:
        """The request's best match at or above ``threshold`` that also names the same
        numbers, names and negations; None when the request has no plain last user
        message or embedding failed."""
        text = last_user_text(req)
        if text is None:
            return None
        text = text[: self._max_chars]
        try:
            vectors = await self._embed([text])
        except Exception as exc:
            _log.warning("semantic_cache_embedding_failed", error=type(exc).__name__)
            return None
        vector = np.ascontiguousarray(vectors[0], dtype=np.float32)
        filter_key = semantic_filter(group, scope, req)
        match = self.index.search(
            filter_key, vector, threshold, lambda cached: same_specifics(text, cached)
        )
        return Probe(filter_key, text, vector, match)

    async def add(self, probe: Probe, key: str, ttl_seconds: float) -> None:
        expires = time.time() + ttl_seconds
        self.index.add(probe.filter_key, key, probe.text, probe.vector, expires)
        if self._feed is not None:
            await self._feed.publish(probe, key, expires)

    def forget(self, probe: Probe, key: str) -> None:
        """Drop an entry whose answer is gone (expired or evicted from the store)."""
        self.index.remove(probe.filter_key, key)


class RedisFeed:
    """Entries appended to a capped Redis stream and followed by every replica."""

    def __init__(self, redis: Redis, writer: Redis, stream: str, max_entries: int) -> None:
        self._redis = redis  # blocks on XREAD: its own connection and a long timeout
        self._writer = writer
        self._stream = stream
        self._max = max_entries
        self._last = "0-0"
        self._task: asyncio.Task[None] | None = None

    async def start(self, index: VectorIndex) -> None:
        try:
            await self._catch_up(index)
        except (RedisError, OSError) as exc:
            _log.warning("semantic_feed_unavailable", error=type(exc).__name__)
        self._task = asyncio.create_task(self._follow(index))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def publish(self, probe: Probe, key: str, expires: float) -> None:
        fields: dict[Any, Any] = {
            "f": probe.filter_key,
            "k": key,
            "t": probe.text,
            "e": repr(expires),
            "v": probe.vector.tobytes(),
        }
        try:
            await self._writer.xadd(self._stream, fields, maxlen=self._max, approximate=True)
        except (RedisError, OSError) as exc:
            _log.warning("semantic_feed_unavailable", op="publish", error=type(exc).__name__)

    async def _catch_up(self, index: VectorIndex) -> None:
        while True:
            start = "(" + self._last if self._last != "0-0" else "-"
            entries: Any = await self._redis.xrange(self._stream, min=start, count=1000)
            if not entries:
                return
            self._apply(index, entries)

    async def _follow(self, index: VectorIndex) -> None:
        while True:
            try:
                found: Any = await self._redis.xread(
                    {self._stream: self._last}, count=500, block=1000
                )
            except (RedisError, OSError) as exc:
                _log.warning("semantic_feed_unavailable", error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            for _, entries in found or ():
                self._apply(index, entries)

    def _apply(self, index: VectorIndex, entries: Any) -> None:
        """Stream entries (id, fields) into the index; expired or malformed ones skipped."""
        now = time.time()
        for entry_id, fields in entries:
            self._last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            try:
                expires = float(fields[b"e"])
                vector = np.frombuffer(fields[b"v"], dtype=np.float32)
                filter_key, key = fields[b"f"].decode(), fields[b"k"].decode()
                text = fields[b"t"].decode()
            except (KeyError, ValueError, UnicodeDecodeError):
                continue
            if expires > now:
                index.add(filter_key, key, text, vector, expires)
