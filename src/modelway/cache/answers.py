"""Cached answers: what is stored, how a stream becomes one, and how one is replayed.

One stored form serves both ways: a streamed answer is assembled into a chat
completion before it is stored, and a stored completion is replayed as a stream of
chunks (role and content, finish, usage) when the request streams.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelway.protocol.openai_chat import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    response: dict[str, Any]  # the chat completion as the client first received it
    deployment: str | None  # who made it: its price is the cost a hit saves
    stored_at: float

    def encode(self) -> bytes:
        return orjson.dumps(
            {"response": self.response, "deployment": self.deployment, "stored_at": self.stored_at}
        )

    @classmethod
    def decode(cls, data: bytes) -> CachedAnswer | None:
        """The answer ``encode`` wrote; None for anything else (a foreign or old entry)."""
        try:
            d = orjson.loads(data)
            return cls(d["response"], d.get("deployment"), float(d.get("stored_at", 0)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    @classmethod
    def of(cls, response: ChatResponse, deployment: str | None) -> CachedAnswer:
        data = response.model_dump(mode="json", exclude_unset=True)
        return cls(data, deployment, time.time())

    def as_response(self) -> ChatResponse:
        """A fresh completion (its own id and time) with the cached content."""
        response = ChatResponse.model_validate(self.response)
        response.id = _new_id()
        response.created = int(time.time())
        return response

    def as_chunks(self) -> list[ChatChunk]:
        response = ChatResponse.model_validate(self.response)
        ids: dict[str, Any] = {"id": _new_id(), "created": int(time.time())}
        ids["model"] = response.model
        chunks = []
        for choice in response.choices:
            message = choice.message
            delta = Delta(role="assistant", content=message.content or "")
            if message.tool_calls:
                delta.tool_calls = [
                    {"index": i, **call} for i, call in enumerate(message.tool_calls)
                ]
            chunks.append(_chunk(ids, ChunkChoice(index=choice.index, delta=delta)))
        for choice in response.choices:
            end = ChunkChoice(index=choice.index, delta=Delta(), finish_reason=choice.finish_reason)
            chunks.append(_chunk(ids, end))
        if response.usage is not None:
            chunks.append(ChatChunk(**ids, choices=[], usage=response.usage))
        return chunks

    def usage(self) -> Usage | None:
        usage = self.response.get("usage")
        return Usage.model_validate(usage) if isinstance(usage, dict) else None


def _chunk(ids: dict[str, Any], choice: ChunkChoice) -> ChatChunk:
    return ChatChunk(**ids, object="chat.completion.chunk", choices=[choice])


def _new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


@dataclass(slots=True)
class _Lane:
    role: str = "assistant"
    parts: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None


class StreamAssembler:
    """Collects a streamed chat completion into the completion it amounts to."""

    def __init__(self) -> None:
        self._head: dict[str, Any] | None = None
        self._lanes: dict[int, _Lane] = {}
        self._usage: Usage | None = None

    def feed(self, chunk: ChatChunk) -> None:
        if self._head is None:
            self._head = {"id": chunk.id, "created": chunk.created, "model": chunk.model}
            fingerprint = (chunk.model_extra or {}).get("system_fingerprint")
            if fingerprint is not None:
                self._head["system_fingerprint"] = fingerprint
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            lane = self._lanes.get(choice.index)
            if lane is None:
                lane = self._lanes[choice.index] = _Lane()
            delta = choice.delta
            if delta.role:
                lane.role = delta.role
            if delta.content:
                lane.parts.append(delta.content)
            for call in delta.tool_calls or ():
                _merge_call(lane.tool_calls, call)
            if choice.finish_reason is not None:
                lane.finish_reason = choice.finish_reason

    def result(self, usage: Usage | None) -> ChatResponse | None:
        """The whole completion; None if any choice did not finish (a cut stream)."""
        if self._head is None or not self._lanes:
            return None
        if any(lane.finish_reason is None for lane in self._lanes.values()):
            return None
        choices = []
        for index in sorted(self._lanes):
            lane = self._lanes[index]
            calls = [lane.tool_calls[i] for i in sorted(lane.tool_calls)] or None
            content = "".join(lane.parts) if lane.parts or not calls else None
            message = (
                ResponseMessage(role=lane.role, content=content, tool_calls=calls)
                if calls
                else ResponseMessage(role=lane.role, content=content)
            )
            choices.append(
                Choice(
                    index=index, message=message, finish_reason=lane.finish_reason, logprobs=None
                )
            )
        return ChatResponse(
            **self._head, object="chat.completion", choices=choices, usage=self._usage or usage
        )


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    index = delta.get("index", len(calls))
    call = calls.get(index)
    function = delta.get("function") or {}
    if call is None:
        call = calls[index] = {
            "id": delta.get("id"),
            "type": delta.get("type", "function"),
            "function": {"name": function.get("name", ""), "arguments": ""},
        }
    elif delta.get("id"):
        call["id"] = delta["id"]
    if function.get("name") and not call["function"]["name"]:
        call["function"]["name"] = function["name"]
    call["function"]["arguments"] += function.get("arguments") or ""
