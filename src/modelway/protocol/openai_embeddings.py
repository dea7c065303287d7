"""OpenAI embeddings wire types (``/v1/embeddings``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from modelway.protocol.openai_chat import RequestModel, WireModel


class EmbeddingRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _input_not_empty(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        if isinstance(value, list) and not value:
            raise ValueError("input must not be an empty list")
        return value

    @property
    def is_stream(self) -> bool:
        return False


class Embedding(WireModel):
    object: str = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(WireModel):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(WireModel):
    object: str = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage | None = None
