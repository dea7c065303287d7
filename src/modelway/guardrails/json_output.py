"""Checking that an answer is the JSON its request's ``response_format`` asked for.

``{"type": "json_object"}`` asks for a JSON object; ``{"type": "json_schema",
"json_schema": {"schema": {...}}}`` for a value valid against the schema (Draft 2020-12
unless the schema's ``$schema`` names another draft; known ``format`` values are checked).
``strict`` does not change the check: a strict schema already says what it allows. An
answer fenced whole in a markdown code block (```json ... ```) is read inside the fence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import exceptions, validators
from jsonschema.protocols import Validator

_FENCED = re.compile(r"\A\s*(`{3,}|~{3,})[ \t]*[\w+.-]*[ \t]*\n(?P<body>.*?)\n[ \t]*\1\s*\Z", re.S)
_MAX_MESSAGE = 200
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_json_answer(text: str, response_format: Mapping[str, Any]) -> str | None:
    """None when ``text`` is what ``response_format`` asks for, else a short reason.

    Reasons read ``"not valid JSON: ..."``, ``"not a JSON object (an array)"``,
    ``"$.age: 'x' is not of type 'integer'"`` or ``"the schema is invalid: ..."``.
    Formats other than ``json_object`` and ``json_schema`` (``text``) are not checked.
    """
    kind = response_format.get("type")
    if kind not in ("json_object", "json_schema"):
        return None
    fenced = _FENCED.match(text)
    try:
        value = json.loads(fenced["body"] if fenced else text, parse_constant=_no_constant)
    except ValueError as exc:
        return _short(f"not valid JSON: {exc}")
    if kind == "json_object":
        return None if isinstance(value, dict) else f"not a JSON object ({_kind(value)})"
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    if schema is None:
        return None
    if not isinstance(schema, Mapping | bool):
        return "the schema is invalid: not an object"
    validator = _validator(json.dumps(schema, sort_keys=True, separators=(",", ":")))
    if isinstance(validator, str):
        return validator
    errors = list(validator.iter_errors(value))
    if not errors:
        return None
    error = exceptions.best_match(errors)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _short(f"{_path(error.absolute_path)}: {error.message}") + more


@lru_cache(maxsize=256)
def _validator(schema_key: str) -> Validator | str:
    """The compiled validator of a schema given as sorted, compact JSON; or why it is bad."""
    schema = json.loads(schema_key)
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        where = _path(exc.absolute_path)
        return _short(f"the schema is invalid: {where}: {exc.message}")
    validator: Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _path(parts: Any) -> str:
    """A JSONPath for a jsonschema error path: ``$.items[0].name``, ``$["a b"]``."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _short(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
