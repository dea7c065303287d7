"""What the stages of one request share."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from modelway.access.principal import Principal
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse, Usage
from modelway.protocol.openai_completions import CompletionRequest, CompletionResponse
from modelway.protocol.openai_embeddings import EmbeddingRequest, EmbeddingResponse

Operation = Literal["chat", "completion", "embedding"]
Request: TypeAlias = ChatRequest | CompletionRequest | EmbeddingRequest
Body: TypeAlias = ChatResponse | CompletionResponse | EmbeddingResponse
Chunk: TypeAlias = ChatChunk | CompletionResponse
# A non-streamed answer is a body; a streamed one is an async iterator of chunks.
Result: TypeAlias = Body | AsyncIterator[Chunk]


@dataclass(slots=True)
class Timings:
    """Monotonic timestamps (seconds) of one request's milestones."""

    start: float = field(default_factory=time.perf_counter)
    upstream_start: float | None = None
    first_token: float | None = None
    upstream_end: float | None = None
    end: float | None = None
    queue_seconds: float = 0.0  # waiting for a deployment with room

    def upstream_seconds(self) -> float | None:
        if self.upstream_start is None or self.upstream_end is None:
            return None
        return self.upstream_end - self.upstream_start


@dataclass(slots=True)
class RequestContext:
    request_id: str
    operation: Operation
    request: Request
    # Incoming headers with lower-case names; stages read their x-modelway-* controls here.
    headers: Mapping[str, str] = field(default_factory=dict)
    data_class: Literal["public", "confidential"] = "public"
    # The caller, once authenticated (None when authentication is off).
    principal: Principal | None = None
    # Filled in by the stages as the request goes through them.
    deployment: str | None = None
    provider: str | None = None
    usage: Usage | None = None
    cached_tokens: int = 0
    cost_nano_usd: int | None = None
    attempts: int = 0  # upstream attempts made, retries included
    fallbacks: list[str] = field(default_factory=list)  # groups given up, in order
    guardrail_actions: list[str] = field(default_factory=list)  # "pii.email:anonymize", ...
    # The response cache's verdict (hit, semantic-hit, miss, bypass; None: not cacheable),
    # the deployment a cached answer came from, and what not calling it saved.
    cache: str | None = None
    cache_source: str | None = None
    saved_nano_usd: int = 0
    # The request's placeholder mapping, shared by the input and output guards.
    placeholders: Any = None
    # With logging.log_content: the redacted prompt and completion for the log line.
    logged_content: dict[str, str | None] | None = None
    status: int = 200
    error_type: str | None = None
    error_message: str | None = None  # secrets scrubbed
    upstream_status: int | None = None
    timings: Timings = field(default_factory=Timings)
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return self.request.is_stream
