"""Shadow deployments: each gets a copy of its group's requests, after the real answer
and off the request path; its answers are discarded, its status and latency logged."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from modelway.observability.logging import get_logger
from modelway.pipeline.context import RequestContext
from modelway.protocol.errors import GatewayError
from modelway.protocol.openai_chat import ChatRequest
from modelway.protocol.openai_completions import CompletionRequest
from modelway.routing.router import PRIVATE_TAG, DeploymentRuntime

MAX_IN_FLIGHT = 64  # per shadow: a slow shadow must not pile up work without bound

_log = get_logger("modelway.shadow")


class Shadows:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def copy(self, ctx: RequestContext, shadows: list[DeploymentRuntime]) -> None:
        for dep in shadows:
            if ctx.data_class == "confidential" and PRIVATE_TAG not in dep.tags:
                continue
            if dep.stats.in_flight >= MAX_IN_FLIGHT:
                _log.warning("shadow_skipped", deployment=dep.id, request_id=ctx.request_id)
                continue
            task = asyncio.create_task(self._send(ctx, dep))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, ctx: RequestContext, dep: DeploymentRuntime) -> None:
        update: dict[str, Any] = {"model": dep.upstream_model}
        if isinstance(ctx.request, ChatRequest | CompletionRequest):
            update.update(stream=False, stream_options=None)
        req = ctx.request.model_copy(update=update)
        started = time.perf_counter()
        status = 200
        dep.stats.start()
        try:
            if isinstance(req, ChatRequest):
                await dep.provider.chat(req)
            elif isinstance(req, CompletionRequest):
                await dep.provider.complete(req)
            else:
                await dep.provider.embed(req)
        except GatewayError as exc:
            status = exc.status
        except Exception:
            status = 500
        finally:
            dep.stats.finish()
        elapsed = time.perf_counter() - started
        dep.stats.observe_latency(elapsed)
        _log.info(
            "shadow",
            request_id=ctx.request_id,
            deployment=dep.id,
            served_by=ctx.deployment,
            status=status,
            latency_ms=round(elapsed * 1000, 3),
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
