"""OpenAI legacy text-completions wire types (``/v1/completions``)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from modelway.protocol.openai_chat import GenerationRequest, Usage, WireModel


class CompletionRequest(GenerationRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        if isinstance(value, list) and not value:
            raise ValueError("prompt must not be an empty list")
        return value


class CompletionChoice(WireModel):
    index: int = 0
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class CompletionResponse(WireModel):
    """Both the whole answer and a stream chunk: OpenAI uses one shape for both."""

    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
