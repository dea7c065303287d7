"""Request and attempt spans, as a trace backend would receive them (in-memory exporter)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from modelway.access.principal import Principal
from modelway.config_tracing import TracingConfig
from modelway.observability.tracing import RequestSpan, Tracing
from modelway.pipeline.context import RequestContext
from modelway.protocol import errors
from modelway.protocol.openai_chat import (
    ChatRequest,
    Delta,
    make_chunk,
    make_response,
    make_usage,
)
from modelway.protocol.openai_embeddings import EmbeddingRequest

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
SECRET = "sk-upstream-secret-in-an-error-message"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(autouse=True)
def no_context_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """OpenTelemetry only logs a context detached in the wrong task: fail on that log."""
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        yield
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    return Tracing.with_exporter(exporter)


def chat_ctx(headers: dict[str, str] | None = None, **fields: Any) -> RequestContext:
    body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}], **fields}
    return RequestContext(
        request_id="req-1",
        operation="chat",
        request=ChatRequest.model_validate(body),
        headers=headers or {},
    )


def answered(ctx: RequestContext, span: RequestSpan) -> None:
    """What the stages note on a successful answer from deployment ``dep-b``."""
    ctx.deployment, ctx.provider = "dep-b", "openai"
    ctx.usage = make_usage(12, 34)
    span.observe(
        make_response(
            id="chatcmpl-9",
            created=1,
            model="gpt-4o-2024-08-06",
            content="hello",
            finish_reason="stop",
            usage=ctx.usage,
        )
    )


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


async def test_request_span_carries_genai_attributes(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx(temperature=0.2, top_p=0.9, max_completion_tokens=100, stop="END", seed=7)
    ctx.principal = Principal(key_id="key-1", team_id="team-a", role="user")
    span = tracing.start_request(ctx)
    assert span is not None
    answered(ctx, span)
    tracing.finish_request(span, ctx, None)

    [finished] = exporter.get_finished_spans()
    assert finished.name == "chat smart"
    assert finished.kind is SpanKind.SERVER
    assert finished.status.status_code is StatusCode.UNSET
    assert finished.resource.attributes["service.name"] == "modelway"
    attrs = dict(finished.attributes or {})
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "smart",
        "gen_ai.request.max_tokens": 100,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-9",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 34,
        "http.response.status_code": 200,
        "modelway.request_id": "req-1",
        "modelway.deployment": "dep-b",
        "modelway.key_id": "key-1",
        "modelway.team_id": "team-a",
    }


async def test_operation_names_follow_the_conventions(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    embed = RequestContext(
        request_id="req-2",
        operation="embedding",
        request=EmbeddingRequest.model_validate(
            {"model": "embedder", "input": "x", "encoding_format": "float", "dimensions": 64}
        ),
    )
    span = tracing.start_request(embed)
    assert span is not None
    tracing.finish_request(span, embed, None)

    [finished] = exporter.get_finished_spans()
    assert finished.name == "embeddings embedder"
    attrs = finished.attributes or {}
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.request.encoding_formats"] == ("float",)
    assert attrs["gen_ai.embeddings.dimension.count"] == 64


async def test_a_failed_request_records_its_error_type_but_no_message(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx()
    span = tracing.start_request(ctx)
    assert span is not None
    tracing.finish_request(span, ctx, errors.Unavailable(f"upstream said {SECRET}"))

    [finished] = exporter.get_finished_spans()
    attrs = finished.attributes or {}
    assert attrs["error.type"] == "service_unavailable"
    assert attrs["http.response.status_code"] == 503
    assert finished.status.status_code is StatusCode.ERROR
    assert [event.name for event in finished.events] == ["exception"]
    assert SECRET not in finished.to_json()


async def test_a_refused_request_is_not_a_server_fault(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx()
    span = tracing.start_request(ctx)
    assert span is not None
    tracing.finish_request(span, ctx, errors.RateLimited("slow down", retry_after=1))

    [finished] = exporter.get_finished_spans()
    assert (finished.attributes or {})["error.type"] == "rate_limit_error"
    assert finished.status.status_code is StatusCode.UNSET


async def test_a_retry_shows_as_two_attempts_under_the_request(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx()

    async def one_attempt(n: int, deployment: str) -> str:
        await asyncio.sleep(0)
        with tracing.attempt(
            ctx, deployment, "openai", "gpt-4o", n, base_url="https://api.example.com/v1"
        ):
            await asyncio.sleep(0)
            if n == 0:
                raise errors.Timeout(f"upstream {deployment}: no answer", upstream_status=None)
            return "answer"

    async def with_retries() -> str:
        try:
            return await one_attempt(0, "dep-a")
        except errors.Timeout:
            return await one_attempt(1, "dep-b")

    span = tracing.start_request(ctx)
    assert span is not None
    with span.activate():
        assert await with_retries() == "answer"
    tracing.finish_request(span, ctx, None)

    request, first, second = sorted(
        exporter.get_finished_spans(), key=lambda s: (s.kind is SpanKind.CLIENT, s.start_time)
    )
    assert request.context is not None
    for attempt in (first, second):
        assert attempt.name == "chat gpt-4o"
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.parent is not None
        assert attempt.parent.span_id == request.context.span_id
        assert attempt.context is not None
        assert attempt.context.trace_id == request.context.trace_id
    assert dict(first.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "modelway.deployment": "dep-a",
        "modelway.attempt": 0,
        "server.address": "api.example.com",
        "server.port": 443,
        "error.type": "timeout",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["modelway.attempt"] == 1
    assert "error.type" not in (second.attributes or {})
    assert second.status.status_code is StatusCode.UNSET


async def test_the_callers_traceparent_is_the_parent(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx({"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    span = tracing.start_request(ctx)
    assert span is not None
    with span.activate(), tracing.attempt(ctx, "dep-a", "openai", "gpt-4o", 0):
        pass
    tracing.finish_request(span, ctx, None)

    for finished in exporter.get_finished_spans():
        assert finished.context is not None
        assert format(finished.context.trace_id, "032x") == CALLER_TRACE
    request = by_name(exporter)["chat smart"]
    assert request.parent is not None
    assert request.parent.is_remote
    assert format(request.parent.span_id, "016x") == CALLER_SPAN


async def test_inject_in_an_attempt_propagates_the_attempt_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx({"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "v=1"})
    span = tracing.start_request(ctx)
    assert span is not None
    headers = {"content-type": "application/json"}
    with span.activate(), tracing.attempt(ctx, "dep-a", "openai", "gpt-4o", 0):
        tracing.inject(headers)
    tracing.finish_request(span, ctx, None)

    attempt = by_name(exporter)["chat gpt-4o"]
    assert attempt.context is not None
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01")
    assert span_id == format(attempt.context.span_id, "016x")
    assert headers["tracestate"] == "v=1"
    assert headers["content-type"] == "application/json"


async def test_disabled_tracing_creates_nothing_and_injects_nothing(
    exporter: InMemorySpanExporter,
) -> None:
    ctx = chat_ctx({"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
    off = Tracing.from_config(TracingConfig(), environ={})
    assert not off.enabled
    assert off.start_request(ctx) is None
    headers: dict[str, str] = {}
    first = off.attempt(ctx, "dep-a", "openai", "gpt-4o", 0)
    assert off.attempt(ctx, "dep-b", "openai", "gpt-4o", 1) is first  # one shared no-op
    with first as attempt:
        attempt.keep_open()
        off.inject(headers)
    attempt.end()
    assert headers == {}
    # Even inside another instance's live span: the disabled one propagates nothing.
    on = Tracing.with_exporter(exporter)
    span = on.start_request(ctx)
    assert span is not None
    with span.activate():
        off.inject(headers)
    assert headers == {}
    await off.close()


async def test_a_stream_ends_its_spans_from_another_task(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx(stream=True)
    span = tracing.start_request(ctx)
    assert span is not None
    with span.activate(), tracing.attempt(ctx, "dep-a", "openai", "gpt-4o", 0) as attempt:
        attempt.keep_open()  # the stream is handed on at its first chunk
    assert exporter.get_finished_spans() == ()

    async def relay() -> None:  # the response writer: another task, another context
        ctx.deployment, ctx.provider = "dep-a", "openai"
        ctx.timings.first_token = ctx.timings.start + 0.25
        span.observe(make_chunk(id="c-1", created=1, model="gpt-4o", delta=Delta(content="h")))
        span.observe(
            make_chunk(id="c-1", created=1, model="gpt-4o", delta=Delta(), finish_reason="length")
        )
        ctx.usage = make_usage(5, 6)
        attempt.end()
        tracing.finish_request(span, ctx, None)

    await asyncio.create_task(relay())
    tracing.finish_request(span, ctx, None)  # a second finish does nothing

    spans = by_name(exporter)
    assert len(exporter.get_finished_spans()) == 2
    request = spans["chat smart"]
    attrs = request.attributes or {}
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.id"] == "c-1"
    assert attrs["gen_ai.response.finish_reasons"] == ("length",)
    assert attrs["gen_ai.usage.output_tokens"] == 6
    assert attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx(0.25)
    attempt_span = spans["chat gpt-4o"]
    assert attempt_span.parent is not None and request.context is not None
    assert attempt_span.parent.span_id == request.context.span_id


async def test_a_stream_that_fails_before_handing_on_ends_its_attempt_with_the_error(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    ctx = chat_ctx(stream=True)
    with (
        pytest.raises(errors.UpstreamError),
        tracing.attempt(ctx, "dep-a", "openai", "gpt-4o", 0) as attempt,
    ):
        attempt.keep_open()
        raise errors.UpstreamError("broken stream", upstream_status=500)
    [finished] = exporter.get_finished_spans()
    assert (finished.attributes or {})["error.type"] == "upstream_error"
    assert (finished.attributes or {})["http.response.status_code"] == 500


async def test_sampling_keeps_a_share_of_new_traces_but_follows_the_caller(
    exporter: InMemorySpanExporter,
) -> None:
    never = Tracing.with_exporter(exporter, sample_ratio=0.0)
    for headers in ({}, {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}):
        ctx = chat_ctx(headers)
        span = never.start_request(ctx)
        assert span is not None
        with span.activate(), never.attempt(ctx, "dep-a", "openai", "gpt-4o", 0):
            pass
        never.finish_request(span, ctx, None)
    traces = {s.context.trace_id for s in exporter.get_finished_spans() if s.context}
    assert traces == {int(CALLER_TRACE, 16)}


def test_the_endpoint_comes_from_config_then_the_standard_environment() -> None:
    configured = TracingConfig(endpoint="http://collector:4318/v1/traces")
    unset = TracingConfig()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"}
    assert configured.resolved_endpoint(env) == "http://collector:4318/v1/traces"
    assert unset.resolved_endpoint(env) == "http://otel:4318/v1/traces"
    traces_env = {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/traces"}
    assert unset.resolved_endpoint(traces_env) == "http://t:4318/traces"
    assert unset.resolved_endpoint({}) is None
    assert configured.resolved_endpoint({"OTEL_SDK_DISABLED": "true"}) is None


def test_collector_headers_are_kept_secret() -> None:
    config = TracingConfig(headers={"authorization": "Bearer collector-token"})
    assert "collector-token" not in repr(config)
    assert config.export_headers() == {"authorization": "Bearer collector-token"}
