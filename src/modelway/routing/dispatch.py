"""The innermost handler: pick a deployment, call its provider, time the upstream part."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.protocol.openai_chat import ChatRequest, ChatResponse, make_usage
from modelway.protocol.openai_completions import CompletionRequest, CompletionResponse
from modelway.protocol.openai_embeddings import EmbeddingRequest
from modelway.routing.router import DeploymentRuntime, Router


class Dispatch:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, ctx: RequestContext) -> Result:
        deployment = self.router.group(ctx.model).choose()
        ctx.deployment = deployment.id
        ctx.provider = deployment.provider.name
        ctx.response_headers["x-modelway-deployment"] = deployment.id
        ctx.timings.upstream_start = time.perf_counter()
        if ctx.stream:
            return await self._stream(ctx, deployment)
        try:
            return await self._call(ctx, deployment)
        finally:
            ctx.timings.upstream_end = time.perf_counter()

    async def _call(self, ctx: RequestContext, deployment: DeploymentRuntime) -> Result:
        provider = deployment.provider
        req = ctx.request.model_copy(update={"model": deployment.upstream_model})
        body: ChatResponse | CompletionResponse
        if ctx.operation == "chat":
            assert isinstance(req, ChatRequest)
            body = await provider.chat(req)
        elif ctx.operation == "completion":
            assert isinstance(req, CompletionRequest)
            body = await provider.complete(req)
        else:
            assert isinstance(req, EmbeddingRequest)
            embedded = await provider.embed(req)
            if embedded.usage is not None:
                ctx.usage = make_usage(embedded.usage.prompt_tokens, 0)
            return embedded
        ctx.usage = body.usage
        return body

    async def _stream(self, ctx: RequestContext, deployment: DeploymentRuntime) -> Result:
        provider = deployment.provider
        req = ctx.request.model_copy(update={"model": deployment.upstream_model})
        chunks: AsyncIterator[Chunk]
        if isinstance(req, ChatRequest):
            chunks = provider.chat_stream(req)
        else:
            assert isinstance(req, CompletionRequest)
            chunks = provider.complete_stream(req)
        # Wait for the first chunk here, so an upstream that refuses is an error the
        # client sees with its status, not a stream that starts and then fails.
        try:
            first: Chunk = await anext(chunks)
        except BaseException:
            ctx.timings.upstream_end = time.perf_counter()
            await _aclose(chunks)
            raise
        ctx.timings.first_token = time.perf_counter()
        return _relay(ctx, first, chunks)


async def _relay(
    ctx: RequestContext, first: Chunk, chunks: AsyncIterator[Chunk]
) -> AsyncIterator[Chunk]:
    try:
        yield _note_usage(ctx, first)
        async for chunk in chunks:
            yield _note_usage(ctx, chunk)
    finally:
        ctx.timings.upstream_end = time.perf_counter()
        await _aclose(chunks)


def _note_usage(ctx: RequestContext, chunk: Chunk) -> Chunk:
    if chunk.usage is not None:
        ctx.usage = chunk.usage
    return chunk


async def _aclose(chunks: AsyncIterator[Chunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
