"""What the mock answers: reply text, tokens, stop/length handling, tool calls, embeddings.

A token is a whitespace-separated word, so tests can compute the expected usage.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelway.testing.mock_state import MockOptions

_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris "
    "nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse "
    "cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui "
    "officia deserunt mollit anim id est laborum"
)
_LOREM = tuple(_LOREM_TEXT.split())

_TOKEN_RE = re.compile(r"\s*\S+")


def count_words(text: str) -> int:
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    """Words with their leading whitespace; joining them gives back `text` exactly."""
    tokens = _TOKEN_RE.findall(text)
    if tokens:
        rest = len(text) - sum(map(len, tokens))
        if rest:
            tokens[-1] += text[len(text) - rest :]
    return tokens


def lorem(rng: random.Random, n: int) -> str:
    words = rng.choices(_LOREM, k=n)
    if words:
        words[0] = words[0].capitalize()
    return " ".join(words)


def reply_text(
    options: MockOptions, rng: random.Random, headers: Mapping[str, str], echo: str
) -> str:
    content = headers.get("x-mock-content")
    if content is not None:
        return content
    n_header = headers.get("x-mock-tokens")
    if n_header is not None:
        try:
            return lorem(rng, max(0, int(n_header)))
        except ValueError:
            pass
    if options.reply == "lorem":
        return lorem(rng, options.lorem_tokens)
    return echo


@dataclass(slots=True)
class Answer:
    tokens: list[str]
    # "stop" (natural end), "length" (max tokens) or "stop_sequence" (a stop string matched).
    reason: str
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def shape_answer(text: str, max_tokens: Any, stops: Any) -> Answer:
    """Cut `text` at the first stop string, then at `max_tokens` words."""
    reason, matched = "stop", None
    if isinstance(stops, str):
        stops = [stops]
    if isinstance(stops, list):
        cut = len(text)
        for stop in stops:
            if isinstance(stop, str) and stop:
                i = text.find(stop)
                if 0 <= i < cut:
                    cut, matched = i, stop
        if matched is not None:
            text, reason = text[:cut], "stop_sequence"
    tokens = split_tokens(text)
    limited = isinstance(max_tokens, int) and not isinstance(max_tokens, bool)
    if limited and 0 <= max_tokens < len(tokens):
        return Answer(tokens[:max_tokens], "length")
    return Answer(tokens, reason, matched)


def text_of(content: Any) -> str:
    """Text of a message content: a string, or the text parts/blocks of a list, joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return " ".join(parts)
    return ""


def _all_text(content: Any) -> str:
    """Like text_of, but also the text inside Anthropic tool_result blocks."""
    if isinstance(content, list):
        pieces = [text_of(content)]
        for part in content:
            if isinstance(part, dict) and part.get("type") == "tool_result":
                pieces.append(text_of(part.get("content")))
        return " ".join(pieces)
    return text_of(content)


def last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            text = text_of(content)
            if text or isinstance(content, str):
                return text
    return ""


def prompt_words(messages: Sequence[Any], system: Any = None) -> int:
    total = count_words(_all_text(system)) if system is not None else 0
    for message in messages:
        if isinstance(message, dict):
            total += count_words(_all_text(message.get("content")))
    return total


def openai_forced_tool(body: Mapping[str, Any]) -> str | None:
    """The function name to call when `tool_choice` forces a call, else None."""
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
        return None
    if choice != "required":
        return None
    first = tools[0]
    if isinstance(first, dict):
        function = first.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return "tool"


def anthropic_forced_tool(body: Mapping[str, Any]) -> str | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or not isinstance(choice, dict):
        return None
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    if kind == "any":
        first = tools[0]
        if isinstance(first, dict) and isinstance(first.get("name"), str):
            return str(first["name"])
        return "tool"
    return None


def tool_arguments(headers: Mapping[str, str]) -> str:
    return headers.get("x-mock-tool-arguments") or "{}"


def json_pieces(arguments: str) -> list[str]:
    """Split a JSON string into a few pieces, the way a model streams tool arguments."""
    if len(arguments) <= 2:
        return [arguments]
    step = max(1, len(arguments) // 4)
    return [arguments[i : i + step] for i in range(0, len(arguments), step)]


def embedding_inputs(value: Any) -> list[Any] | None:
    """The list of inputs of an embeddings request (strings or token lists), or None."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, int) for v in value):
            return [value]
        if all(isinstance(v, str | list) for v in value):
            return value
    return None


def input_words(item: Any) -> int:
    return count_words(item) if isinstance(item, str) else len(item)


def embedding_vector(item: Any, dimensions: int) -> tuple[float, ...]:
    """A deterministic unit vector of float32 values derived from a hash of `item`."""
    seed = item.encode() if isinstance(item, str) else repr(item).encode()
    raw = b""
    counter = 0
    while len(raw) < 4 * dimensions:
        raw += hashlib.blake2b(seed + counter.to_bytes(4, "little"), digest_size=64).digest()
        counter += 1
    ints = struct.unpack(f"<{dimensions}I", raw[: 4 * dimensions])
    values = [i / 2147483647.5 - 1.0 for i in ints]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    # Round-trip through float32 so the float and base64 encodings carry the same numbers.
    return struct.unpack(
        f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    )


def embedding_base64(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
