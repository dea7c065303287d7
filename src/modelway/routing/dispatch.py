"""The innermost handler: fallbacks, around retries, around one attempt on one deployment.

- ``_with_fallbacks``: when a group gives up, move to the next group of the requested
  group's chain for that kind of failure (context too long, content filtered, or any
  retryable failure).
- ``_with_retries``: retry what can succeed on retry, on another deployment of the group
  when there is one, with backoff, within the request's deadline.
- ``_attempt``: one call, under the deployment's circuit breaker, timed for the
  latency-aware strategy. A stream counts as answered at its first chunk: a failure
  before it is retried, one after it ends the stream with an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from modelway.observability.logging import get_logger
from modelway.observability.request_metrics import RequestMetrics
from modelway.observability.tracing import Attempt, Tracing
from modelway.pipeline.context import Chunk, RequestContext, Result
from modelway.pipeline.stage import aclose
from modelway.protocol import errors
from modelway.protocol.openai_chat import ChatRequest, ChatResponse, make_usage
from modelway.protocol.openai_completions import CompletionRequest, CompletionResponse
from modelway.protocol.openai_embeddings import EmbeddingRequest
from modelway.routing.backoff import backoff_seconds
from modelway.routing.request_terms import (
    affinity_key,
    deadline_of,
    estimated_tokens,
    priority_of,
    remaining,
    tenant_of,
)
from modelway.routing.router import DeploymentRuntime, ModelGroupRuntime, Router
from modelway.routing.shadow import Shadows
from modelway.store.counters import Counters, CountersUnavailable, Window

_NO_SCOPE = contextlib.nullcontext()
_log = get_logger("modelway.routing")


class Dispatch:
    def __init__(
        self,
        router: Router,
        metrics: RequestMetrics,
        shared: Counters | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.router = router
        self.shadows = Shadows()
        self._metrics = metrics
        self._tracing = tracing if tracing is not None else Tracing.disabled()
        # Counters shared by every replica (Redis): deployment quotas are taken there too.
        self._shared = shared

    async def __call__(self, ctx: RequestContext) -> Result:
        requested = self.router.group(ctx.model)
        deadline = deadline_of(ctx, requested)
        result = await self._with_fallbacks(ctx, requested, deadline)
        if requested.shadows:
            self.shadows.copy(ctx, requested.shadows)
        return result

    async def _with_fallbacks(
        self, ctx: RequestContext, requested: ModelGroupRuntime, deadline: float | None
    ) -> Result:
        group, failed = requested, []
        while True:
            try:
                result = await self._with_retries(ctx, group, deadline)
            except errors.GatewayError as exc:
                failed.append(group.name)
                following = self._fallback(requested, exc, failed)
                if following is None:
                    raise
                self._metrics.fallback(group.name, following.name)
                ctx.fallbacks = list(failed)
                group = following
                continue
            if failed:
                ctx.response_headers["x-modelway-fallbacks"] = ",".join(failed)
            return result

    def _fallback(
        self, requested: ModelGroupRuntime, exc: errors.GatewayError, failed: list[str]
    ) -> ModelGroupRuntime | None:
        routing = requested.routing
        if isinstance(exc, errors.ContextTooLong):
            chain = routing.context_fallbacks
        elif isinstance(exc, errors.ContentFiltered):
            chain = routing.content_fallbacks
        elif exc.retryable:
            chain = routing.fallbacks
        else:
            return None
        following = next((name for name in chain if name not in failed), None)
        return self.router.group(following) if following is not None else None

    async def _with_retries(
        self, ctx: RequestContext, group: ModelGroupRuntime, deadline: float | None
    ) -> Result:
        key = affinity_key(ctx) if group.routing.affinity else None
        confidential = ctx.data_class == "confidential"
        order = group.candidates(key, private_only=confidential)
        if confidential and not order:
            raise errors.Unavailable(
                f"model group '{group.name}': no private deployment can take this "
                "confidential request now; it is never sent to external deployments"
            )
        if not order:
            raise errors.Unavailable(
                f"model group '{group.name}': every deployment's circuit is open",
                retry_after=group.routing.breaker.cooldown_seconds,
            )
        attempts = group.routing.retries + 1
        priority = priority_of(ctx)
        tokens = estimated_tokens(ctx) if group.limited else 0  # only limits need the size
        for attempt in range(attempts):
            if attempt:
                self._metrics.retry(group.name)
            dep = await self._choose(ctx, group, order, attempt, tokens, priority, deadline)
            ctx.attempts += 1
            try:
                return await self._traced_attempt(ctx, dep, deadline)
            except errors.GatewayError as exc:
                if not exc.retryable or attempt + 1 == attempts:
                    raise
                pause = backoff_seconds(
                    attempt,
                    initial=group.routing.backoff_initial_seconds,
                    maximum=group.routing.backoff_max_seconds,
                    retry_after=exc.retry_after,
                    same_deployment=len(order) == 1,
                )
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("the last attempt returns or raises")

    async def _choose(
        self,
        ctx: RequestContext,
        group: ModelGroupRuntime,
        order: list[DeploymentRuntime],
        attempt: int,
        tokens: int,
        priority: int,
        deadline: float | None,
    ) -> DeploymentRuntime:
        """The deployment for this attempt, waiting in the group's queue while every
        usable deployment is at its limits (and behind requests already waiting)."""

        def roomy() -> list[DeploymentRuntime]:
            return [d for d in order if d.limits.admits(d.stats.in_flight, tokens)]

        if group.limited and (group.queue.depth or not roomy()):
            waited = time.perf_counter()
            try:
                tenant, weight = tenant_of(ctx)
                await group.queue.wait_for_room(
                    lambda: bool(roomy()),
                    priority=priority,
                    recheck_after=lambda: _soonest_room(order),
                    deadline_seconds=remaining(deadline),
                    tenant=tenant,
                    weight=weight,
                )
            finally:
                ctx.timings.queue_seconds += time.perf_counter() - waited
        dep = _next_allowed(roomy() if group.limited else order, attempt)
        if dep is None:
            raise errors.Unavailable(
                f"model group '{group.name}': no deployment is accepting traffic"
            )
        if (
            self._shared is not None
            and dep.limits.shared
            and not await self._take_shared(ctx, dep, tokens)
        ):
            # Another replica used the quota up: this deployment is now blocked here too.
            return await self._choose(ctx, group, order, attempt, tokens, priority, deadline)
        dep.limits.take(tokens)
        return dep

    async def _take_shared(self, ctx: RequestContext, dep: DeploymentRuntime, tokens: int) -> bool:
        assert self._shared is not None
        windows = []
        if dep.limits.rpm is not None:
            windows.append(Window(f"deployment:{dep.id}:rpm", dep.limits.rpm, 1))
        if dep.limits.tpm is not None:
            windows.append(Window(f"deployment:{dep.id}:tpm", dep.limits.tpm, tokens))
        try:
            taken = await self._shared.admit(windows, [], [], lease=ctx.request_id, now=time.time())
        except CountersUnavailable:
            return True  # the local window still holds; the shared one fails open
        if not taken.allowed:
            dep.limits.block(max(taken.retry_after, 0.05))
        return taken.allowed

    async def _traced_attempt(
        self, ctx: RequestContext, dep: DeploymentRuntime, deadline: float | None
    ) -> Result:
        """One attempt in its own trace span (a no-op when tracing is off); a stream's
        span stays open until the stream ends."""
        if not self._tracing.enabled:
            return await self._attempt(ctx, dep, deadline)
        with self._tracing.attempt(
            ctx, dep.id, dep.provider.name, dep.upstream_model, ctx.attempts - 1
        ) as traced:
            result = await self._attempt(ctx, dep, deadline)
            if isinstance(result, AsyncIterator):
                traced.keep_open()
                return _ending(result, traced)
            return result

    async def _attempt(
        self, ctx: RequestContext, dep: DeploymentRuntime, deadline: float | None
    ) -> Result:
        if ctx.data_class == "confidential":
            _log.info(
                "confidential_route",
                request_id=ctx.request_id,
                group=dep.group,
                deployment=dep.id,
            )
        ctx.deployment, ctx.provider = dep.id, dep.provider.name
        ctx.response_headers["x-modelway-deployment"] = dep.id
        ctx.timings.upstream_start = started = time.perf_counter()
        dep.stats.start()
        limit, why = remaining(deadline), "the request's deadline passed"
        first = dep.first_token_timeout if ctx.stream else None
        if first is not None and (limit is None or first < limit):
            limit, why = first, f"no first token within {first:g} s"
        try:
            # No deadline is the common case: skip the cost of a timeout scope.
            async with asyncio.timeout(limit) if limit is not None else _NO_SCOPE:
                if ctx.stream:
                    chunks, head = await self._open_stream(ctx, dep)
                else:
                    body = await self._call(ctx, dep)
        except TimeoutError:
            timeout = errors.Timeout(f"upstream {dep.id}: {why}")
            self._failed(dep, timeout)
            raise timeout from None
        except errors.GatewayError as exc:
            self._failed(dep, exc)
            raise
        except BaseException:
            self._ended(dep)
            dep.breaker.release()
            raise
        finally:
            ctx.timings.upstream_end = time.perf_counter()
        dep.stats.observe_latency(time.perf_counter() - started)
        if not ctx.stream:
            self._succeeded(dep)
            return body
        ctx.timings.first_token = time.perf_counter()
        return self._relay(ctx, dep, head, chunks)

    async def _call(self, ctx: RequestContext, dep: DeploymentRuntime) -> Result:
        provider = dep.provider
        req = ctx.request.model_copy(update={"model": dep.upstream_model})
        body: ChatResponse | CompletionResponse
        if isinstance(req, ChatRequest):
            body = await provider.chat(req)
        elif isinstance(req, CompletionRequest):
            body = await provider.complete(req)
        else:
            assert isinstance(req, EmbeddingRequest)
            embedded = await provider.embed(req)
            if embedded.usage is not None:
                ctx.usage = make_usage(embedded.usage.prompt_tokens, 0)
            return embedded
        ctx.usage = body.usage
        return body

    async def _open_stream(
        self, ctx: RequestContext, dep: DeploymentRuntime
    ) -> tuple[AsyncIterator[Chunk], list[Chunk]]:
        """Start the stream and read up to its first chunk carrying output.

        Servers such as vLLM send the role chunk at once and the first token later;
        until a token has come, nothing reaches the client, so a failure or a silent
        upstream can still be retried elsewhere.
        """
        req = ctx.request.model_copy(update={"model": dep.upstream_model})
        chunks: AsyncIterator[Chunk]
        if isinstance(req, ChatRequest):
            chunks = dep.provider.chat_stream(req)
        else:
            assert isinstance(req, CompletionRequest)
            chunks = dep.provider.complete_stream(req)
        head: list[Chunk] = []
        try:
            async for chunk in chunks:
                head.append(chunk)
                if _carries_output(chunk):
                    break
        except BaseException:
            await aclose(chunks)
            raise
        return chunks, head

    async def _relay(
        self,
        ctx: RequestContext,
        dep: DeploymentRuntime,
        head: list[Chunk],
        chunks: AsyncIterator[Chunk],
    ) -> AsyncIterator[Chunk]:
        failure: errors.GatewayError | None = None
        finished = False  # False at the end: the client left first
        try:
            for chunk in head:
                yield _note_usage(ctx, chunk)
            async for chunk in chunks:
                yield _note_usage(ctx, chunk)
            finished = True
        except errors.GatewayError as exc:
            failure = exc
            raise
        finally:
            ctx.timings.upstream_end = time.perf_counter()
            await aclose(chunks)
            if failure is not None:
                self._failed(dep, failure)
            elif finished:
                self._succeeded(dep)
            else:
                self._ended(dep)
                dep.breaker.release()

    def _ended(self, dep: DeploymentRuntime) -> None:
        dep.stats.finish()
        self.router.group(dep.group).queue.notify()

    def _succeeded(self, dep: DeploymentRuntime) -> None:
        self._ended(dep)
        self._metrics.attempt(dep.group, dep.id, dep.provider.name, "success")
        dep.breaker.record_success()

    def _failed(self, dep: DeploymentRuntime, exc: errors.GatewayError) -> None:
        self._ended(dep)
        self._metrics.attempt(dep.group, dep.id, dep.provider.name, exc.type)
        if isinstance(exc, errors.RateLimited):
            # Load, not ill health: it neither opens the circuit nor closes it.
            dep.breaker.release()
        elif exc.retryable:
            dep.breaker.record_failure()
        else:
            # A refusal of this request (400, 401...) says nothing about the deployment's health.
            dep.breaker.record_success()


async def _ending(chunks: AsyncIterator[Chunk], traced: Attempt) -> AsyncIterator[Chunk]:
    error: BaseException | None = None
    try:
        async for chunk in chunks:
            yield chunk
    except BaseException as exc:
        error = exc
        raise
    finally:
        await aclose(chunks)
        traced.end(error)


def _next_allowed(order: list[DeploymentRuntime], attempt: int) -> DeploymentRuntime | None:
    """The deployment for this attempt: down the order, then round again; one whose
    breaker refuses (open, or half-open with its probes taken) is skipped."""
    for step in range(len(order)):
        dep = order[(attempt + step) % len(order)]
        if dep.breaker.allow():
            return dep
    return None


def _soonest_room(order: list[DeploymentRuntime]) -> float | None:
    waits = [w for d in order if (w := d.limits.seconds_until_room()) is not None]
    return min(waits) if waits else None


def _carries_output(chunk: Chunk) -> bool:
    if chunk.usage is not None:
        return True
    for choice in chunk.choices:
        if choice.finish_reason is not None:
            return True
        delta = getattr(choice, "delta", None)
        if delta is None:  # a text-completion chunk
            if getattr(choice, "text", ""):
                return True
        elif delta.content or delta.tool_calls:
            return True
    return False


def _note_usage(ctx: RequestContext, chunk: Chunk) -> Chunk:
    if chunk.usage is not None:
        ctx.usage = chunk.usage
    return chunk
