"""An OpenTelemetry span per request (GenAI semantic conventions), the parent of one span
per upstream attempt. In the stage list only when tracing is configured."""

from __future__ import annotations

from collections.abc import AsyncIterator

from modelway.observability.tracing import RequestSpan, Tracing
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.stage import Next


class Trace:
    def __init__(self, tracing: Tracing) -> None:
        self._tracing = tracing

    async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
        span = self._tracing.start_request(ctx)
        if span is None:  # not sampled
            return await call_next(ctx)
        try:
            with span.activate():
                result = await call_next(ctx)
        except BaseException as exc:
            self._tracing.finish_request(span, ctx, exc)
            raise
        if isinstance(result, AsyncIterator):
            return self._watch(span, ctx, result)
        span.observe(result)
        self._tracing.finish_request(span, ctx, None)
        return result

    async def _watch(
        self, span: RequestSpan, ctx: RequestContext, chunks: AsyncIterator[Chunk]
    ) -> AsyncIterator[Chunk]:
        error: BaseException | None = None
        try:
            async for chunk in chunks:
                span.observe(chunk)
                yield chunk
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._tracing.finish_request(span, ctx, error)
