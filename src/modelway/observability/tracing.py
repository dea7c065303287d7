"""OpenTelemetry traces of requests, after the GenAI semantic conventions.

One request is one span (SERVER by default: the gateway answering its caller), named
``{gen_ai.operation.name} {gen_ai.request.model}``, that carries the logical operation:
request parameters, the response model, id and finish reasons, token usage and the
outcome. Each upstream attempt (a retry, a fallback) is a CLIENT child span naming the
deployment, provider and upstream model. Token usage is on the request span only, so a
backend that sums ``gen_ai.usage.*`` over spans does not count a request twice.

How an attempt finds its request: the caller makes the request span current for the
nested calls with ``with request_span.activate(): await call_next(ctx)``, in one
coroutine, so the OpenTelemetry context is attached and detached in the same task.
``attempt()`` then parents on the current span, and ``inject()`` inside an attempt
propagates that attempt's span upstream. The request span is ended by
``finish_request``, which attaches nothing and may run in another task (a stream's end).

Off costs nothing: a disabled ``Tracing`` answers ``start_request`` with None and
``attempt`` with one shared no-op context manager. No global tracer provider is set:
each ``Tracing`` owns its provider, so several runtimes can live in one process.
Exception messages (which may quote upstream answers) are never recorded: a failed
span carries ``error.type`` and the exception's class; the log line has the rest.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from modelway.config_tracing import TracingConfig
from modelway.protocol.errors import GatewayError
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse
from modelway.protocol.openai_completions import CompletionResponse
from modelway.protocol.openai_embeddings import EmbeddingRequest, EmbeddingResponse

if TYPE_CHECKING:
    from modelway.pipeline.context import RequestContext

INSTRUMENTATION = "modelway"
# gen_ai.operation.name for each of our operations.
OPERATIONS = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
CANCELLED = "cancelled"

_PROPAGATOR = TraceContextTextMapPropagator()  # stateless; W3C traceparent + tracestate
Attributes = dict[str, AttributeValue]
Answer = ChatResponse | CompletionResponse | EmbeddingResponse | ChatChunk


class RequestSpan:
    """One request's span, open until ``Tracing.finish_request``."""

    __slots__ = ("_ended", "_finish_reasons", "_response_id", "_response_model", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._response_id: str | None = None
        self._response_model: str | None = None
        self._finish_reasons: dict[int, str] = {}
        self._ended = False

    def activate(self) -> _Active:
        """Make this span the parent of the attempts started inside the ``with`` block.

        Enter and leave it in one coroutine (around ``call_next``), never across the
        yields of an async generator."""
        return _Active(trace.set_span_in_context(self.span))

    def observe(self, answer: Answer) -> None:
        """Note the response id, model and finish reasons of an answer or stream chunk."""
        if self._response_model is None:
            self._response_model = answer.model
            if not isinstance(answer, EmbeddingResponse):
                self._response_id = answer.id
        if isinstance(answer, EmbeddingResponse):
            return
        for choice in answer.choices:
            if choice.finish_reason is not None:
                self._finish_reasons[choice.index] = choice.finish_reason

    def _end(self, ctx: RequestContext, error: BaseException | None, server: bool) -> None:
        if self._ended:
            return
        self._ended = True
        span = self.span
        if span.is_recording():
            status, error_type = _outcome(ctx, error)
            attributes = self._response_attributes(ctx)
            if server:
                attributes["http.response.status_code"] = status
            if error_type is not None:
                attributes["error.type"] = error_type
                if error is not None:
                    _add_exception_event(span, error)
                if not 400 <= status < 500:  # a refused or cancelled request is no fault
                    span.set_status(Status(StatusCode.ERROR, error_type))
            span.set_attributes(attributes)
        span.end()

    def _response_attributes(self, ctx: RequestContext) -> Attributes:
        attributes: Attributes = {}
        if self._response_model is not None:
            attributes["gen_ai.response.model"] = self._response_model
        if self._response_id is not None:
            attributes["gen_ai.response.id"] = self._response_id
        if self._finish_reasons:
            reasons = self._finish_reasons
            attributes["gen_ai.response.finish_reasons"] = tuple(
                reasons[i] for i in sorted(reasons)
            )
        if ctx.provider is not None:
            attributes["gen_ai.provider.name"] = ctx.provider
        if ctx.deployment is not None:
            attributes["modelway.deployment"] = ctx.deployment
        if ctx.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = ctx.usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = ctx.usage.completion_tokens
        timings = ctx.timings
        if timings.first_token is not None and ctx.stream:
            attributes["gen_ai.response.time_to_first_chunk"] = timings.first_token - timings.start
        if timings.queue_seconds:
            attributes["modelway.queue_seconds"] = timings.queue_seconds
        if ctx.cost_nano_usd is not None:
            attributes["modelway.cost_usd"] = ctx.cost_nano_usd / 1e9
        if ctx.principal is not None:  # ids only, never the key itself
            attributes["modelway.key_id"] = ctx.principal.key_id
            if ctx.principal.team_id is not None:
                attributes["modelway.team_id"] = ctx.principal.team_id
        return attributes


class _Active:
    """Attaches an OpenTelemetry context for the length of a ``with`` block."""

    __slots__ = ("_context", "_token")

    def __init__(self, context: otel_context.Context) -> None:
        self._context = context

    def __enter__(self) -> None:
        self._token = otel_context.attach(self._context)

    def __exit__(self, *exc_info: object) -> None:
        otel_context.detach(self._token)


class Attempt:
    """One upstream attempt's span; this base class is the no-op of disabled tracing.

    ``with tracing.attempt(...) as attempt:`` ends the span when the block ends, with
    the error that left it. A stream outlives the block: call ``keep_open()`` inside it
    once the stream is handed on, and ``end(error)`` when the stream is over."""

    __slots__ = ()

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def keep_open(self) -> None:
        """The span does not end with the ``with`` block (unless it raises)."""

    def end(self, error: BaseException | None = None) -> None:
        """End a kept-open span, with the error that ended the stream if any."""


_NO_ATTEMPT = Attempt()


class _LiveAttempt(Attempt):
    __slots__ = ("_ended", "_kept_open", "_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._kept_open = False
        self._ended = False

    def __enter__(self) -> Attempt:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)
        if exc is not None or not self._kept_open:
            self.end(exc)

    def keep_open(self) -> None:
        self._kept_open = True

    def end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        span = self._span
        if error is not None and span.is_recording():
            error_type = _error_type(error)
            attributes: Attributes = {"error.type": error_type}
            if isinstance(error, GatewayError) and error.upstream_status is not None:
                attributes["http.response.status_code"] = error.upstream_status
            span.set_attributes(attributes)
            _add_exception_event(span, error)
            if error_type != CANCELLED:
                span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()


class Tracing:
    """Spans for requests and their upstream attempts, or nothing when disabled."""

    def __init__(
        self,
        provider: TracerProvider | None,
        request_kind: SpanKind = SpanKind.SERVER,
    ) -> None:
        self._provider = provider
        self.enabled = provider is not None
        self._tracer = provider.get_tracer(INSTRUMENTATION) if provider is not None else None
        self._request_kind = request_kind
        self._servers: dict[str, Attributes] = {}

    @classmethod
    def disabled(cls) -> Tracing:
        return cls(None)

    @classmethod
    def from_config(
        cls,
        config: TracingConfig,
        *,
        request_kind: SpanKind = SpanKind.SERVER,
        environ: Mapping[str, str] | None = None,
    ) -> Tracing:
        """OTLP/HTTP export through a batch processor; disabled when no endpoint is known.

        ``request_kind``: INTERNAL for an in-process client, where no server is called."""
        endpoint = config.resolved_endpoint(os.environ if environ is None else environ)
        if endpoint is None:
            return cls.disabled()
        exporter = OTLPSpanExporter(
            endpoint=endpoint,
            headers=config.export_headers() or None,  # None: OTEL_EXPORTER_OTLP_HEADERS
            timeout=config.export_timeout_seconds,
        )
        processor = BatchSpanProcessor(
            exporter, export_timeout_millis=config.export_timeout_seconds * 1000
        )
        return cls(_provider(processor, config.service_name, config.sample_ratio), request_kind)

    @classmethod
    def with_exporter(
        cls,
        exporter: SpanExporter,
        service_name: str = "modelway",
        *,
        sample_ratio: float = 1.0,
        request_kind: SpanKind = SpanKind.SERVER,
    ) -> Tracing:
        """Export each span as it ends (tests: an ``InMemorySpanExporter``)."""
        processor = SimpleSpanProcessor(exporter)
        return cls(_provider(processor, service_name, sample_ratio), request_kind)

    def start_request(self, ctx: RequestContext) -> RequestSpan | None:
        """Open the request's span, child of the caller's W3C ``traceparent`` if any."""
        if self._tracer is None:
            return None
        parent = _PROPAGATOR.extract(ctx.headers) if "traceparent" in ctx.headers else None
        span = self._tracer.start_span(
            f"{OPERATIONS[ctx.operation]} {ctx.model}",
            context=parent,
            kind=self._request_kind,
            attributes=_request_attributes(ctx),
        )
        return RequestSpan(span)

    def finish_request(
        self, span: RequestSpan, ctx: RequestContext, error: BaseException | None
    ) -> None:
        """Record the outcome and end the span; safe from any task; later calls do nothing."""
        span._end(ctx, error, server=self._request_kind is SpanKind.SERVER)

    def attempt(
        self,
        ctx: RequestContext,
        deployment: str,
        provider: str,
        upstream_model: str,
        attempt: int,
        *,
        base_url: str | None = None,
    ) -> Attempt:
        """A CLIENT span around one upstream attempt, child of the current (request) span.

        ``attempt`` counts from 0 within the request's retries; ``base_url`` gives
        ``server.address`` and ``server.port``."""
        if self._tracer is None:
            return _NO_ATTEMPT
        operation = OPERATIONS[ctx.operation]
        attributes: Attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": upstream_model,
            "modelway.deployment": deployment,
            "modelway.attempt": attempt,
        }
        if base_url is not None:
            attributes.update(self._server(base_url))
        span = self._tracer.start_span(
            f"{operation} {upstream_model}", kind=SpanKind.CLIENT, attributes=attributes
        )
        return _LiveAttempt(span)

    def inject(self, headers: dict[str, str]) -> None:
        """Write the current span's ``traceparent`` (and ``tracestate``) into ``headers``."""
        if self._tracer is not None:
            _PROPAGATOR.inject(headers)

    async def close(self) -> None:
        """Export what is buffered and stop the exporter (in a thread: it blocks)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)

    def _server(self, base_url: str) -> Attributes:
        known = self._servers.get(base_url)
        if known is None:
            parts = urlsplit(base_url)
            known = {}
            if parts.hostname:
                known["server.address"] = parts.hostname
                known["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
            self._servers[base_url] = known
        return known


def _provider(processor: SpanProcessor, service_name: str, sample_ratio: float) -> TracerProvider:
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        resource=Resource.create({"service.name": service_name}),
        # close() shuts it down: an atexit hook would keep every reloaded runtime alive
        shutdown_on_exit=False,
    )
    provider.add_span_processor(processor)
    return provider


def _request_attributes(ctx: RequestContext) -> Attributes:
    req = ctx.request
    attributes: Attributes = {
        "gen_ai.operation.name": OPERATIONS[ctx.operation],
        "gen_ai.request.model": req.model,
        "modelway.request_id": ctx.request_id,
    }
    if isinstance(req, EmbeddingRequest):
        if req.encoding_format is not None:
            attributes["gen_ai.request.encoding_formats"] = (req.encoding_format,)
        if req.dimensions is not None:
            attributes["gen_ai.embeddings.dimension.count"] = req.dimensions
        return attributes
    if req.stream:
        attributes["gen_ai.request.stream"] = True
    if req.output_limit is not None:
        attributes["gen_ai.request.max_tokens"] = req.output_limit
    if req.temperature is not None:
        attributes["gen_ai.request.temperature"] = req.temperature
    if req.top_p is not None:
        attributes["gen_ai.request.top_p"] = req.top_p
    if req.seed is not None:
        attributes["gen_ai.request.seed"] = req.seed
    if req.n is not None and req.n != 1:
        attributes["gen_ai.request.choice.count"] = req.n
    if req.presence_penalty is not None:
        attributes["gen_ai.request.presence_penalty"] = req.presence_penalty
    if req.frequency_penalty is not None:
        attributes["gen_ai.request.frequency_penalty"] = req.frequency_penalty
    if req.stop is not None:
        attributes["gen_ai.request.stop_sequences"] = tuple(req.stop_list)
    if isinstance(req, ChatRequest) and req.response_format is not None:
        kind = req.response_format.get("type")
        attributes["gen_ai.output.type"] = "text" if kind == "text" else "json"
    return attributes


def _outcome(ctx: RequestContext, error: BaseException | None) -> tuple[int, str | None]:
    """The request's status and error type: what the stages noted, else from ``error``."""
    if ctx.error_type is not None or error is None:
        return ctx.status, ctx.error_type
    if isinstance(error, GatewayError):
        return error.status, error.type
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return 499, CANCELLED
    return 500, _error_type(error)


def _error_type(error: BaseException) -> str:
    """A low-cardinality ``error.type``: the gateway's error type, else the class name."""
    if isinstance(error, GatewayError):
        return error.type
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return CANCELLED
    if isinstance(error, TimeoutError):
        return "timeout"
    return _class_name(error)


def _add_exception_event(span: trace.Span, error: BaseException) -> None:
    """The exception's class only: its message may quote an upstream answer."""
    span.add_event("exception", {"exception.type": _class_name(error)})


def _class_name(error: BaseException) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
