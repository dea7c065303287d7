"""Grammars that constrain the embedded engine's output.

JSON mode, JSON schemas and forced tool calls all become one JSON schema, compiled to
GBNF by llama.cpp's converter (``json_schema_to_gbnf``). Its whitespace rule is a single
optional space, so a small model cannot wander off into endless blanks.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from modelway.engine.tool_calls import forced_functions, tool_call_schema
from modelway.protocol.errors import BadRequest

# The converter unrolls {min,max} bounds into nested groups, so large bounds make huge
# grammars (and deep recursion in llama.cpp's parser): cap them.
MAX_REPEAT = 1000
MAX_PATTERN_CHARS = 1000
MAX_GRAMMAR_CHARS = 256_000

_BOUND_KEYWORDS = ("minLength", "maxLength", "minItems", "maxItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_REGEX_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_REGEX_SHORTHAND = re.compile(r"\\[dDwWsSbB]")
# The converter's string characters admit raw control characters and its pattern `.`
# admits quotes; both would make invalid JSON, so those two rules are tightened.
_TIGHTER_RULES = {
    "char": r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})',
    "dot": r'[^"\\\x7F\x00-\x1F]',
}


@dataclass(frozen=True)
class Constraint:
    grammar: str  # GBNF text with a `root` rule
    kind: Literal["json_object", "json_schema", "tool_call"]


def constraint_for(
    response_format: dict[str, Any] | None,
    tools: list[dict[str, Any]] | None,
    tool_choice: str | dict[str, Any] | None,
) -> Constraint | None:
    """The grammar the output must follow, or None when nothing constrains it.

    A forced tool call (``tool_choice`` "required" or a named function) wins over a JSON
    ``response_format``; "auto" leaves the model free to answer in text or call a tool.
    """
    schema_format = _requested_format(response_format)
    forced = forced_functions(tools, tool_choice)
    if forced is not None:
        return Constraint(schema_grammar(tool_call_schema(forced), param="tools"), "tool_call")
    if schema_format is None:
        return None
    kind, schema = schema_format
    return Constraint(schema_grammar(schema, param="response_format"), kind)


def _requested_format(
    response_format: dict[str, Any] | None,
) -> tuple[Literal["json_object", "json_schema"], dict[str, Any]] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json_object", {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest(
                'response_format of type "json_schema" needs a JSON schema object at '
                'response_format.json_schema.schema, e.g. {"type": "json_schema", '
                '"json_schema": {"name": "answer", "schema": {"type": "object", ...}}}.',
                param="response_format",
            )
        return "json_schema", schema
    raise BadRequest(
        "response_format.type must be 'text', 'json_object' or 'json_schema'.",
        param="response_format",
    )


def schema_grammar(schema: dict[str, Any], *, param: str) -> str:
    """GBNF for ``schema``; BadRequest (with ``param``) when it cannot be honoured."""
    try:
        return _compile(json.dumps(schema, ensure_ascii=False), param)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"{param}: the JSON schema is not JSON: {exc}", param=param) from None
    except RecursionError:
        raise BadRequest(f"{param}: the JSON schema is nested too deeply.", param=param) from None


# Clients resend the same schemas and tools with every request; failures are not cached.
@lru_cache(maxsize=256)
def _compile(schema_json: str, param: str) -> str:
    schema = json.loads(schema_json)
    problem = schema_problem(schema)
    if problem is None:
        problem = _limits_problem(schema, "#")
    if problem is not None:
        raise BadRequest(f"{param}: invalid JSON schema: {problem}", param=param)
    try:
        grammar = _convert(schema_json)
    # The converter reports unsupported input with assorted exception types
    # (AssertionError, ValueError, KeyError, AttributeError, RecursionError, ...).
    except Exception as exc:
        reason = _shorten(str(exc) or type(exc).__name__)
        raise BadRequest(
            f"{param}: the JSON schema uses a feature the grammar converter does not "
            f"support ({reason}); simplify the schema.",
            param=param,
        ) from None
    if len(grammar) > MAX_GRAMMAR_CHARS or not grammar_parses(grammar):
        raise BadRequest(
            f"{param}: the JSON schema is too large or too complex to enforce; simplify it.",
            param=param,
        )
    return grammar


def _convert(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    lines = []
    for line in json_schema_to_gbnf(schema_json).splitlines():
        name, sep, _ = line.partition(" ::= ")
        lines.append(
            f"{name} ::= {_TIGHTER_RULES[name]}" if sep and name in _TIGHTER_RULES else line
        )
    return "\n".join(lines) + "\n"


def grammar_parses(grammar: str) -> bool:
    """Whether llama.cpp accepts ``grammar`` (parsing needs no vocabulary)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def _limits_problem(schema: Any, where: str) -> str | None:
    if not isinstance(schema, dict):
        return None
    for key in _BOUND_KEYWORDS:
        bound = schema.get(key)
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= MAX_REPEAT
        ):
            return f"{where}/{key} must be an integer from 0 to {MAX_REPEAT}"
    pattern = schema.get("pattern")
    if pattern is not None and (problem := _pattern_problem(pattern)):
        return f"{where}/pattern {problem}"
    children: list[tuple[str, Any]] = []
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            children += [(f"{where}/{key}/{k}", v) for k, v in schema[key].items()]
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            children += [(f"{where}/{key}/{i}", v) for i, v in enumerate(schema[key])]
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            children.append((f"{where}/{key}", schema[key]))
        elif key == "items" and isinstance(schema.get(key), list):
            children += [(f"{where}/items/{i}", v) for i, v in enumerate(schema[key])]
    for child_where, child in children:
        if problem := _limits_problem(child, child_where):
            return problem
    return None


def _pattern_problem(pattern: Any) -> str | None:
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN_CHARS:
        return f"must be a string of at most {MAX_PATTERN_CHARS} characters"
    if not (pattern.startswith("^") and pattern.endswith("$")):
        return 'must be anchored: start with "^" and end with "$"'
    if _REGEX_SHORTHAND.search(pattern):
        return r"may not use \d, \w, \s or \b; write character classes such as [0-9]"
    for match in _REGEX_QUANTIFIER.finditer(pattern):
        if any(n and int(n) > MAX_REPEAT for n in match.groups()):
            return f"has a repetition bound above {MAX_REPEAT}"
    return None


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@cache
def _jsonschema() -> Any:
    """The optional ``jsonschema`` package, or None when it is not installed."""
    try:
        return importlib.import_module("jsonschema")
    except ImportError:
        return None


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON schema (checked only when jsonschema is installed)."""
    jsonschema = _jsonschema()
    if jsonschema is None:
        return None
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        return _shorten(f"at #/{path}: {exc.message}" if path else str(exc.message))
    return None


def validate_json_output(text: str, response_format: dict[str, Any] | None) -> str | None:
    """None when ``text`` is JSON that meets ``response_format``; otherwise a short reason."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object" and not isinstance(value, dict):
        return "not a JSON object"
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    jsonschema = _jsonschema()
    if not isinstance(schema, dict) or jsonschema is None:
        return None
    if problem := schema_problem(schema):
        return f"the schema itself is invalid: {problem}"
    error = jsonschema.exceptions.best_match(
        jsonschema.validators.validator_for(schema)(schema).iter_errors(value)
    )
    if error is None:
        return None
    path = "/".join(str(p) for p in error.absolute_path)
    return _shorten(f"does not match the schema at #/{path}: {error.message}")
