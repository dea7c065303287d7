"""The response cache a runtime owns: its policies, its answer store and, when a
policy asks for it, its semantic index; built from the config without I/O."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from modelway.cache.semantic import Embed, RedisFeed, SemanticCache
from modelway.cache.stores import AnswerStore, MemoryStore, RedisStore
from modelway.cache.vector_index import VectorIndex
from modelway.config_cache import CacheConfig, CachePolicy
from modelway.pipeline.context import RequestContext

OFF = CachePolicy(mode="off")


@dataclass
class ResponseCache:
    config: CacheConfig
    answers: AnswerStore
    semantic: SemanticCache | None
    _clients: tuple[Redis, ...] = ()

    @classmethod
    def build(
        cls,
        config: CacheConfig,
        redis_url: str | None,
        embed: Embed | None,
        dims: int | None = None,
    ) -> ResponseCache:
        """``dims``: the embedding size, or None to take the first vector's."""
        prefix = f"{config.namespace}:cache:"
        answers: AnswerStore = MemoryStore(config.max_bytes)
        clients: tuple[Redis, ...] = ()
        feed: RedisFeed | None = None
        if redis_url is not None and config.backend in ("redis", "auto"):
            # Lookups give up fast (a miss); following the feed blocks for a second.
            client = Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
            follower = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=1)
            answers, clients = RedisStore(client, prefix + "answer:"), (client, follower)
            feed = RedisFeed(follower, client, prefix + "semantic", config.semantic.max_entries)
        semantic = None
        if embed is not None and any(p.semantic for p in config.policies.values()):
            index = VectorIndex(dims, config.semantic.max_entries)
            semantic = SemanticCache(index, embed, config.semantic.max_chars, feed)
        return cls(config, answers, semantic, clients)

    def policy_for(self, ctx: RequestContext) -> CachePolicy:
        """The key's (or its team's) policy, else the model group's, else the default."""
        c = self.config
        principal = ctx.principal
        name = (principal.cache_policy if principal is not None else None) or c.models.get(
            ctx.model, c.default
        )
        return c.policies.get(name, OFF) if name is not None else OFF

    async def start(self) -> None:
        if self.semantic is not None:
            await self.semantic.start()

    async def close(self) -> None:
        if self.semantic is not None:
            await self.semantic.close()
        await self.answers.close()
        for client in self._clients:
            await client.aclose()
