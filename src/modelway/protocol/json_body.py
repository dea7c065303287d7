"""Serialising wire models to JSON bytes, once."""

from __future__ import annotations

from pydantic import BaseModel


def to_json(model: BaseModel) -> bytes:
    # exclude_unset keeps passed-through upstream bodies exactly as they came.
    return type(model).__pydantic_serializer__.to_json(model, exclude_unset=True)


def to_dict(model: BaseModel) -> dict[str, object]:
    return model.model_dump(exclude_unset=True)
