"""The interface every provider implements, and the base that refuses what it lacks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from modelway.protocol.errors import BadRequest
from modelway.protocol.openai_chat import ChatChunk, ChatRequest, ChatResponse
from modelway.protocol.openai_completions import CompletionRequest, CompletionResponse
from modelway.protocol.openai_embeddings import EmbeddingRequest, EmbeddingResponse


class UnsupportedOperation(BadRequest):
    default_code = "unsupported_operation"


class Provider:
    """Translates internal (OpenAI-shaped) requests to one upstream and back.

    ``model`` on the requests it receives is already the upstream's model name.
    Upstream failures are raised as ``modelway.protocol.errors`` types.
    """

    name: str = "provider"

    async def start(self) -> None:
        """Open connections or load weights; called once before serving."""

    async def close(self) -> None:
        """Release connections or weights; called once on shutdown."""

    async def chat(self, req: ChatRequest) -> ChatResponse:
        raise self._unsupported("chat completions")

    def chat_stream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise self._unsupported("streamed chat completions")

    async def complete(self, req: CompletionRequest) -> CompletionResponse:
        raise self._unsupported("text completions")

    def complete_stream(self, req: CompletionRequest) -> AsyncIterator[CompletionResponse]:
        raise self._unsupported("streamed text completions")

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        raise self._unsupported("embeddings")

    async def health(self) -> bool:
        """True when the upstream answers (or the local model is loaded)."""
        return True

    def stats(self) -> dict[str, Any] | None:
        """Live figures of an in-process engine (queue, running, KV use); None if none."""
        return None

    def propagate_with(self, inject: Callable[[dict[str, str]], None]) -> None:
        """Have every upstream request carry trace context written by ``inject``
        (HTTP providers; the embedded engine has nothing to propagate to)."""
        http = getattr(self, "_http", None)
        if http is not None:
            http.propagate = inject

    def count_tokens(self, text: str) -> int | None:
        """The served model's own token count of a text, when this provider has its
        tokenizer at hand (the embedded engine); None otherwise."""
        return None

    def _unsupported(self, what: str) -> UnsupportedOperation:
        return UnsupportedOperation(f"the {self.name} provider does not support {what}")
