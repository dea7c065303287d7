"""OpenAI chat-completions wire types (request, response, stream chunk).

Models tolerate unknown fields (``extra="allow"``): what the gateway does not need to
understand is carried through to OpenAI-compatible upstreams and back unchanged.
Bodies are serialised with ``exclude_unset`` so a passed-through upstream answer keeps
exactly the fields it had; answers the gateway builds itself set every field explicitly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class RequestModel(WireModel):
    """A client request: strict types, as OpenAI's API is (``"stream": "yes"`` is an error)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)


class ChatMessage(RequestModel):
    role: Role
    # A string, or content parts ({"type": "text" | "image_url" | "input_audio" | ...}).
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @field_validator("content")
    @classmethod
    def _parts_have_type(
        cls, value: str | list[dict[str, Any]] | None
    ) -> str | list[dict[str, Any]] | None:
        if isinstance(value, list):
            for i, part in enumerate(value):
                if not isinstance(part.get("type"), str):
                    raise ValueError(f"content part {i} has no 'type'")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise ValueError(f"content part {i} of type 'text' needs a string 'text'")
        return value

    def text(self) -> str:
        """The message's text: the string content, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")


class StreamOptions(RequestModel):
    include_usage: bool | None = None


class GenerationRequest(RequestModel):
    """What chat and text completions share: the model, streaming and sampling fields."""

    model: str = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    user: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and any(not s for s in value):
            raise ValueError("stop sequences must be non-empty strings")
        return value

    @property
    def is_stream(self) -> bool:
        return bool(self.stream)

    @property
    def output_limit(self) -> int | None:
        """The requested cap on generated tokens."""
        return self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def wants_usage_chunk(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    metadata: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") not in ("text", "json_object", "json_schema"):
            raise ValueError("response_format.type must be 'text', 'json_object' or 'json_schema'")
        return value

    @model_validator(mode="after")
    def _tool_choice_needs_tools(self) -> ChatRequest:
        if isinstance(self.tool_choice, dict) and not self.tools:
            raise ValueError("tool_choice names a tool but no tools were given")
        return self

    @property
    def output_limit(self) -> int | None:
        """The requested cap on generated tokens (``max_completion_tokens`` wins)."""
        return self.max_completion_tokens or self.max_tokens


class Usage(WireModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseMessage(WireModel):
    role: str = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(WireModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatResponse(WireModel):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class Delta(WireModel):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(WireModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatChunk(WireModel):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


def make_usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


def make_response(
    *,
    id: str,
    created: int,
    model: str,
    content: str | None,
    finish_reason: str,
    usage: Usage,
    tool_calls: list[dict[str, Any]] | None = None,
) -> ChatResponse:
    message = (
        ResponseMessage(role="assistant", content=content, tool_calls=tool_calls)
        if tool_calls
        else ResponseMessage(role="assistant", content=content)
    )
    return ChatResponse(
        id=id,
        object="chat.completion",
        created=created,
        model=model,
        choices=[Choice(index=0, message=message, finish_reason=finish_reason, logprobs=None)],
        usage=usage,
    )


def make_chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta: Delta | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
) -> ChatChunk:
    """A stream chunk; with ``delta=None`` and a usage, the final usage-only chunk."""
    if delta is None:
        return ChatChunk(
            id=id,
            object="chat.completion.chunk",
            created=created,
            model=model,
            choices=[],
            usage=usage,
        )
    choice = ChunkChoice(index=0, delta=delta, finish_reason=finish_reason, logprobs=None)
    return ChatChunk(
        id=id, object="chat.completion.chunk", created=created, model=model, choices=[choice]
    )
