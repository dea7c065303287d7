"""Per-request cost of the observe stage: the log line and the metrics (and, when
given, tracing), measured in process around an innermost step that answers at once.

    .venv/bin/python bench/observability_overhead.py [--requests 20000]

The log line is written to /dev/null through the same structlog pipeline the gateway
uses (JSON via orjson, buffered, flushed off the request path).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvloop
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from modelway.observability.logging import configure_logging, get_logger
from modelway.observability.metrics import Metrics
from modelway.observability.request_metrics import RequestMetrics
from modelway.observability.tracing import Tracing
from modelway.pipeline.context import RequestContext, Result
from modelway.pipeline.observe import Observe
from modelway.pipeline.stage import Next, Stage, build_chain
from modelway.pipeline.trace import Trace
from modelway.protocol.openai_chat import ChatRequest, make_response, make_usage

REQUEST = ChatRequest.model_validate(
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello politely."}]}
)
ANSWER = make_response(
    id="chatcmpl-bench",
    created=0,
    model="gpt-4o",
    content="Hello! How can I help you today?",
    finish_reason="stop",
    usage=make_usage(12, 9),
)


async def upstream(ctx: RequestContext) -> Result:
    t = ctx.timings
    t.upstream_start = time.perf_counter()
    ctx.deployment, ctx.provider, ctx.usage = "openai:gpt-4o", "openai", ANSWER.usage
    ctx.cost_nano_usd = 120_000
    t.upstream_end = time.perf_counter()
    return ANSWER


async def per_request(stages: list[Stage], requests: int) -> list[float]:
    chain = build_chain(stages, upstream)
    samples = []
    for i in range(requests):
        ctx = RequestContext(request_id=f"r{i}", operation="chat", request=REQUEST)
        start = time.perf_counter()
        await chain(ctx)
        samples.append(time.perf_counter() - start)
        if i % 256 == 0:
            await asyncio.sleep(0)  # let the log flusher run, as between real requests
    return samples


async def measure(
    requests: int, extra: Callable[[], Awaitable[list[Stage]]] | None
) -> dict[str, Any]:
    output = configure_logging("info")
    flusher = asyncio.create_task(output.flush_periodically())
    observe = Observe(get_logger("modelway.request"), RequestMetrics(Metrics()))
    stages: list[Stage] = [observe, *(await extra() if extra else [])]
    await per_request(stages, 2000)  # warm up
    with_stage, without = [], []
    for _ in range(5):
        with_stage += await per_request(stages, requests // 5)
        without += await per_request([], requests // 5)
    flusher.cancel()
    return {
        "added_p50_us": (statistics.median(with_stage) - statistics.median(without)) * 1e6,
        "added_mean_us": (statistics.fmean(with_stage) - statistics.fmean(without)) * 1e6,
    }


async def tracing_stages() -> list[Stage]:
    """A request span, and one attempt span with trace context injected, as the gateway
    makes them; each ended span goes to an exporter that drops it."""
    tracing = Tracing.with_exporter(_Discard())

    class Attempt:
        async def __call__(self, ctx: RequestContext, call_next: Next) -> Result:
            with tracing.attempt(ctx, "openai:gpt-4o", "openai", "gpt-4o", 0):
                headers: dict[str, str] = {}
                tracing.inject(headers)
                return await call_next(ctx)

    return [Trace(tracing), Attempt()]


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    plain = uvloop.run(measure(args.requests, None))
    traced = uvloop.run(measure(args.requests, tracing_stages))
    for name, result in (("metrics + log line", plain), ("with tracing", traced)):
        print(
            f"{name}: p50 {result['added_p50_us']:.1f} us, "
            f"mean {result['added_mean_us']:.1f} us per request",
            file=sys.stderr,  # stdout carries the log lines
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
