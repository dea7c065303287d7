"""Validate JSON bodies against the schemas of the official OpenAI OpenAPI spec.

The spec marks optional-null values with `nullable: true` (OpenAPI 3.0 style), which JSON Schema
does not know; those nodes are rewritten as `anyOf: [node, {"type": "null"}]`. `$ref`s to
`#/components/schemas/...` resolve against the spec's own components.

    from tests.openapi_schema import validate
    validate("CreateChatCompletionResponse", body)   # raises jsonschema.ValidationError
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC_PATH = Path(
    os.environ.get("MODELWAY_OPENAI_SPEC", Path(__file__).parent / "specs" / "openai-openapi.yaml")
)


def _allow_null(node: Any) -> Any:
    if isinstance(node, list):
        return [_allow_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _allow_null(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def _schemas() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with SPEC_PATH.open(encoding="utf-8") as f:
        spec = yaml.load(f, Loader=loader)
    schemas: dict[str, Any] = _allow_null(spec["components"]["schemas"])
    return schemas


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schemas = _schemas()
    if name not in schemas:
        raise KeyError(f"no schema {name!r} in {SPEC_PATH}")
    root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": schemas}}
    return Draft202012Validator(root)


def validate(name: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError when `instance` does not match schema `name`."""
    validator(name).validate(instance)


def errors(name: str, instance: Any) -> list[str]:
    """Every mismatch, as readable lines (empty when valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(name).iter_errors(instance)
    ]
