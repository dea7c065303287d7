"""The outermost stage: time the request, then write its one log line and record its
metrics, whatever happens."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from modelway.observability.logging import scrub_secrets
from modelway.observability.request_metrics import RequestMetrics
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.stage import Next
from modelway.protocol.errors import GatewayError

CLIENT_CLOSED = 499  # nginx's convention for "the client went away first"
Listener = Callable[[RequestContext, float], None]


class InFlight:
    """Requests a runtime has started and not finished (streams until their last chunk):
    a runtime swapped out by a reload is closed once this reaches zero."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.count += 1

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def idle(self) -> None:
        """Return once no request is in flight."""
        if self.count > 0:
            self._idle = asyncio.Event()
            await self._idle.wait()


class Observe:
    def __init__(
        self,
        logger: Any,
        metrics: RequestMetrics,
        *,
        sample_success: float = 1.0,
        listeners: tuple[Listener, ...] = (),
        inflight: InFlight | None = None,
        config_version: str | None = None,
    ) -> None:
        self._log = logger
        self._metrics = metrics
        self._sample = sample_success
        # Also told of every finished request (the alert engine).
        self._listeners = listeners
        self._inflight = inflight if inflight is not None else InFlight()
        self._version = config_version

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        self._inflight.enter()
        try:
            result = await call_next(ctx)
        except BaseException as exc:
            _note_failure(ctx, exc)
            self._finish(ctx)
            raise
        if isinstance(result, AsyncIterator):
            return self._watch(ctx, result)
        self._finish(ctx)
        return result

    async def _watch(
        self, ctx: RequestContext, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        try:
            async for chunk in chunks:
                yield chunk
        except BaseException as exc:
            _note_failure(ctx, exc)
            raise
        finally:
            self._finish(ctx)

    def _finish(self, ctx: RequestContext) -> None:
        self._inflight.leave()
        t = ctx.timings
        t.end = time.perf_counter()
        latency = t.end - t.start
        self._metrics.record(ctx, latency)
        for listener in self._listeners:
            listener(ctx, latency)
        if ctx.status < 400 and self._sample < 1.0 and random.random() >= self._sample:
            return
        self._log_line(ctx, latency)

    def _log_line(self, ctx: RequestContext, latency: float) -> None:
        t = ctx.timings
        upstream = t.upstream_seconds()
        usage = ctx.usage
        fields: dict[str, Any] = {
            "request_id": ctx.request_id,
            "operation": ctx.operation,
            "model": ctx.model,
            "deployment": ctx.deployment,
            "provider": ctx.provider,
            "status": ctx.status,
            "stream": ctx.stream,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "latency_ms": round(latency * 1000, 3),
            "ttft_ms": round((t.first_token - t.start) * 1000, 3) if t.first_token else None,
            "upstream_ms": round(upstream * 1000, 3) if upstream is not None else None,
            "overhead_ms": round((latency - upstream) * 1000, 3) if upstream is not None else None,
        }
        if self._version is not None:
            fields["config_version"] = self._version
        if ctx.principal is not None:
            fields["key_id"] = ctx.principal.key_id
            fields["team_id"] = ctx.principal.team_id
        if ctx.cost_nano_usd is not None:
            fields["cost_usd"] = ctx.cost_nano_usd / 1e9
        if ctx.cached_tokens:
            fields["cached_tokens"] = ctx.cached_tokens
        if ctx.cache is not None:
            fields["cache"] = ctx.cache
            if ctx.saved_nano_usd:
                fields["saved_usd"] = ctx.saved_nano_usd / 1e9
        if ctx.attempts > 1:
            fields["attempts"] = ctx.attempts
        if ctx.fallbacks:
            fields["fallbacks"] = ctx.fallbacks
        if ctx.logged_content is not None:
            fields.update(ctx.logged_content)
        if ctx.guardrail_actions:
            fields["guardrails"] = ctx.guardrail_actions
        if t.queue_seconds:
            fields["queue_ms"] = round(t.queue_seconds * 1000, 3)
        if ctx.error_type is not None:
            fields["error_type"] = ctx.error_type
            if ctx.error_message is not None:
                fields["error"] = ctx.error_message
            if ctx.upstream_status is not None:
                fields["upstream_status"] = ctx.upstream_status
        if ctx.status >= 500:
            self._log.error("request", **fields)
        elif ctx.status >= 400:
            self._log.warning("request", **fields)
        else:
            self._log.info("request", **fields)


def _note_failure(ctx: RequestContext, exc: BaseException) -> None:
    if isinstance(exc, GatewayError):
        ctx.status, ctx.error_type = exc.status, exc.type
        ctx.error_message = scrub_secrets(exc.message)
        ctx.upstream_status = exc.upstream_status
    elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
        ctx.status, ctx.error_type = CLIENT_CLOSED, "client_closed"
    else:
        ctx.status, ctx.error_type = 500, "internal_error"
