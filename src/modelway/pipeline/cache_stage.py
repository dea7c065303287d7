"""The response cache stage: look up before the call (a hit answers here), store the
finished answer after it.

It sits inside admission (a hit still counts against rate limits and is accounted, at
zero cost) and outside the output guard (what is stored is what the guard let out).
Answers a guardrail altered or refused, errors and cut streams are not stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from modelway.cache.answers import CachedAnswer, StreamAssembler
from modelway.cache.keys import Controls, controls_of, exact_key, reproducible, scope_of
from modelway.cache.runtime import ResponseCache
from modelway.cache.semantic import Probe
from modelway.config_cache import CachePolicy
from modelway.observability.logging import get_logger
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.stage import Next, aclose
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse

_log = get_logger("modelway.cache")
HEADER = "x-modelway-cache"
SIMILARITY_HEADER = "x-modelway-cache-similarity"
# Guardrail actions that change or withhold an answer (see pipeline/output_guard.py).
_ALTERING = ("output.", "moderation")


class CacheStage:
    """``guard_policy``: the guardrail policy a request runs under; answers are kept apart
    per policy, since a hit skips the output guard of the caller who gets it."""

    def __init__(
        self,
        cache: ResponseCache,
        guard_policy: Callable[[RequestContext], str | None] | None = None,
    ) -> None:
        self._cache = cache
        self._guard_policy = guard_policy
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        req = ctx.request
        if not isinstance(req, ChatRequest):
            return await call_next(ctx)
        policy = self._cache.policy_for(ctx)
        if policy.mode == "off" or (policy.mode == "reproducible" and not reproducible(req)):
            return await call_next(ctx)
        controls = controls_of(ctx.headers, req)
        scope = self._scope(ctx, policy)
        key = exact_key(ctx.model, scope, req)
        probe: Probe | None = None
        if controls.lookup:
            found = await self._lookup(key)
            if found is not None:
                return self._serve(ctx, found, "hit")
            if policy.semantic and self._cache.semantic is not None:
                probe = await self._cache.semantic.probe(
                    ctx.model, scope, req, policy.semantic_threshold
                )
                hit = await self._semantic_hit(ctx, probe)
                if hit is not None:
                    return hit
        ctx.cache = "miss" if controls.lookup else "bypass"
        ctx.response_headers[HEADER] = ctx.cache
        result = await call_next(ctx)
        if not controls.store:
            return result
        if isinstance(result, AsyncIterator):
            return self._recording(ctx, policy, controls, key, probe, result)
        if isinstance(result, ChatResponse) and _storable(ctx, result):
            await self._store(ctx, policy, controls, key, probe, result)
        return result

    def _scope(self, ctx: RequestContext, policy: CachePolicy) -> str:
        scope = scope_of(policy, ctx.principal)
        if self._guard_policy is not None:
            scope += f"|guardrails:{self._guard_policy(ctx)}"
        return scope

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _lookup(self, key: str) -> CachedAnswer | None:
        data = await self._cache.answers.get(key)
        return CachedAnswer.decode(data) if data is not None else None

    async def _semantic_hit(self, ctx: RequestContext, probe: Probe | None) -> Result | None:
        """The probe's match (already at or above the policy's threshold), if its answer
        is still stored."""
        if probe is None or probe.match is None:
            return None
        match = probe.match
        found = await self._lookup(match.key)
        if found is None:
            assert self._cache.semantic is not None
            self._cache.semantic.forget(probe, match.key)
            return None
        ctx.response_headers[SIMILARITY_HEADER] = f"{match.similarity:.4f}"
        return self._serve(ctx, found, "semantic-hit")

    def _serve(self, ctx: RequestContext, found: CachedAnswer, kind: str) -> Result:
        ctx.cache = kind
        ctx.cache_source = found.deployment
        ctx.usage = found.usage()
        ctx.response_headers[HEADER] = kind
        if ctx.stream:
            return self._replay(ctx, found)
        return found.as_response()

    async def _replay(self, ctx: RequestContext, found: CachedAnswer) -> AsyncIterator[Chunk]:
        first = True
        for chunk in found.as_chunks():
            if first:
                ctx.timings.first_token = ctx.timings.first_token or time.perf_counter()
                first = False
            yield chunk

    async def _recording(
        self,
        ctx: RequestContext,
        policy: CachePolicy,
        controls: Controls,
        key: str,
        probe: Probe | None,
        chunks: AsyncIterator[Chunk],
    ) -> AsyncIterator[Chunk]:
        assembler = StreamAssembler()
        try:
            async for chunk in chunks:
                if isinstance(chunk, ChatChunk):
                    assembler.feed(chunk)
                yield chunk
        finally:
            await aclose(chunks)
        # Only reached when the stream ended normally (not cut, not failed).
        response = assembler.result(ctx.usage)
        if response is not None and _storable(ctx, response):
            await self._store(ctx, policy, controls, key, probe, response)

    async def _store(
        self,
        ctx: RequestContext,
        policy: CachePolicy,
        controls: Controls,
        key: str,
        probe: Probe | None,
        response: ChatResponse,
    ) -> None:
        data = CachedAnswer.of(response, ctx.deployment).encode()
        if len(data) > self._cache.config.max_entry_bytes:
            return
        # A request may shorten its answer's stay, not extend it past the policy's.
        ttl = min(controls.ttl_seconds or policy.ttl_seconds, policy.ttl_seconds)
        await self._cache.answers.set(key, data, ttl)
        semantic = self._cache.semantic
        if not policy.semantic or semantic is None:
            return
        if probe is not None:
            try:
                await semantic.add(probe, key, ttl)
            except Exception:  # the answer is on its way; the cache must not fail it
                _log.exception("semantic_cache_add_failed", request_id=ctx.request_id)
        else:  # the lookup was skipped: embed now, off the answer's path
            self._background(self._add_later(ctx, policy, key, ttl))

    async def _add_later(
        self, ctx: RequestContext, policy: CachePolicy, key: str, ttl: float
    ) -> None:
        semantic = self._cache.semantic
        assert semantic is not None and isinstance(ctx.request, ChatRequest)
        scope = self._scope(ctx, policy)
        probe = await semantic.probe(ctx.model, scope, ctx.request, policy.semantic_threshold)
        if probe is not None:
            await semantic.add(probe, key, ttl)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _storable(ctx: RequestContext, response: ChatResponse) -> bool:
    if ctx.status != 200 or ctx.error_type is not None:
        return False
    if ctx.fallbacks:  # another group's answer: not this group's to keep
        return False
    if any(action.startswith(_ALTERING) for action in ctx.guardrail_actions):
        return False
    return all(choice.finish_reason not in (None, "content_filter") for choice in response.choices)
