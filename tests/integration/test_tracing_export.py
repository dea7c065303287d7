"""Spans reach a real OTLP/HTTP receiver (protobuf over HTTP on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from modelway.config_tracing import TracingConfig
from modelway.observability.tracing import Tracing
from modelway.pipeline.context import RequestContext
from modelway.protocol import errors
from modelway.protocol.openai_chat import ChatRequest, make_response, make_usage

COLLECTOR_TOKEN = "collector-token-123"


@dataclass
class Receiver:
    url: str
    exports: list[ExportTraceServiceRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """Every received span with its resource's attributes."""
        return [
            ({a.key: _value(a.value) for a in rs.resource.attributes}, span)
            for export in self.exports
            for rs in export.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received = Receiver(url="")

    async def export(request: web.Request) -> web.Response:
        body = ExportTraceServiceRequest()
        body.ParseFromString(await request.read())
        received.exports.append(body)
        received.headers.append(dict(request.headers))
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    received.url = f"http://127.0.0.1:{port}/v1/traces"
    try:
        yield received
    finally:
        await runner.cleanup()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


def _attributes(span: Span) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in span.attributes}


async def test_spans_reach_an_otlp_http_receiver(receiver: Receiver) -> None:
    tracing = Tracing.from_config(
        TracingConfig(
            endpoint=receiver.url,
            headers={"x-collector-token": COLLECTOR_TOKEN},
            service_name="gateway-under-test",
        ),
        environ={},
    )
    assert tracing.enabled
    ctx = RequestContext(
        request_id="req-export",
        operation="chat",
        request=ChatRequest.model_validate(
            {"model": "smart", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}
        ),
    )
    span = tracing.start_request(ctx)
    assert span is not None
    with span.activate():
        with (
            pytest.raises(errors.RateLimited),
            tracing.attempt(
                ctx, "dep-a", "openai", "gpt-4o", 0, base_url="http://10.0.0.7:8000/v1"
            ),
        ):
            raise errors.RateLimited("busy", retry_after=1, upstream_status=429)
        with tracing.attempt(ctx, "dep-b", "anthropic", "claude-x", 1):
            headers: dict[str, str] = {}
            tracing.inject(headers)
    ctx.deployment, ctx.provider, ctx.usage = "dep-b", "anthropic", make_usage(3, 4)
    span.observe(
        make_response(
            id="msg-1",
            created=1,
            model="claude-x",
            content="ok",
            finish_reason="stop",
            usage=ctx.usage,
        )
    )
    tracing.finish_request(span, ctx, None)
    assert receiver.exports == []  # batched: nothing is sent on the request path
    await tracing.close()

    received = receiver.spans()
    assert len(received) == 3
    assert {resource["service.name"] for resource, _ in received} == {"gateway-under-test"}
    assert all(h.get("x-collector-token") == COLLECTOR_TOKEN for h in receiver.headers)
    assert all(h.get("Content-Type") == "application/x-protobuf" for h in receiver.headers)

    spans = {(s.name, _attributes(s).get("modelway.attempt")): s for _, s in received}
    request = spans[("chat smart", None)]
    failed = spans[("chat gpt-4o", 0)]
    retried = spans[("chat claude-x", 1)]
    assert request.kind == Span.SPAN_KIND_SERVER
    assert _attributes(request) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "smart",
        "gen_ai.request.max_tokens": 9,
        "gen_ai.response.model": "claude-x",
        "gen_ai.response.id": "msg-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.provider.name": "anthropic",
        "gen_ai.usage.input_tokens": 3,
        "gen_ai.usage.output_tokens": 4,
        "http.response.status_code": 200,
        "modelway.request_id": "req-export",
        "modelway.deployment": "dep-b",
    }
    for attempt in (failed, retried):
        assert attempt.kind == Span.SPAN_KIND_CLIENT
        assert attempt.trace_id == request.trace_id
        assert attempt.parent_span_id == request.span_id
    assert _attributes(failed) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "modelway.deployment": "dep-a",
        "modelway.attempt": 0,
        "server.address": "10.0.0.7",
        "server.port": 8000,
        "error.type": "rate_limit_error",
        "http.response.status_code": 429,
    }
    assert failed.status.code == failed.status.STATUS_CODE_ERROR
    assert _attributes(retried)["gen_ai.provider.name"] == "anthropic"
    _, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (trace_id, span_id) == (retried.trace_id.hex(), retried.span_id.hex())
    assert int(flags, 16) & 1  # sampled
