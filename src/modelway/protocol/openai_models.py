"""OpenAI model-listing wire types (``/v1/models``)."""

from __future__ import annotations

from modelway.protocol.openai_chat import WireModel


class ModelCard(WireModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelList(WireModel):
    object: str = "list"
    data: list[ModelCard]
