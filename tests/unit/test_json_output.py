from typing import Any

import pytest

from modelway.guardrails.json_output import validate_json_answer

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "pets": {"type": "array", "items": {"type": "object", "required": ["kind"]}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
SCHEMA_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "person", "schema": PERSON, "strict": True},
}


def test_a_valid_answer_passes() -> None:
    assert validate_json_answer('{"name": "Ada", "age": 36}', SCHEMA_FORMAT) is None


def test_a_wrong_type_names_the_path_and_the_reason() -> None:
    message = validate_json_answer('{"name": "Ada", "age": "x"}', SCHEMA_FORMAT)
    assert message == "$.age: 'x' is not of type 'integer'"


def test_a_nested_error_has_a_jsonpath() -> None:
    answer = '{"name": "Ada", "age": 3, "pets": [{"kind": "cat"}, {"name": "Rex"}]}'
    assert validate_json_answer(answer, SCHEMA_FORMAT) == "$.pets[1]: 'kind' is a required property"


def test_a_missing_property_and_an_extra_one_are_reported() -> None:
    assert validate_json_answer('{"name": "Ada"}', SCHEMA_FORMAT) == (
        "$: 'age' is a required property"
    )
    extra = validate_json_answer('{"name": "Ada", "age": 3, "x": 1}', SCHEMA_FORMAT)
    assert extra is not None
    assert extra.startswith("$: Additional properties are not allowed")


def test_several_errors_are_counted() -> None:
    message = validate_json_answer('{"age": -1, "x": 1}', SCHEMA_FORMAT)
    assert message is not None
    assert message.endswith("more)")


def test_an_answer_fenced_whole_is_read_inside_the_fence() -> None:
    fenced = '```json\n{"name": "Ada", "age": 36}\n```'
    assert validate_json_answer(fenced, SCHEMA_FORMAT) is None
    assert validate_json_answer('  ```\n{"name": "Ada", "age": 36}\n```\n', SCHEMA_FORMAT) is None


def test_an_answer_only_partly_fenced_is_not_json() -> None:
    answer = 'Here you go:\n```json\n{"name": "Ada", "age": 36}\n```'
    message = validate_json_answer(answer, SCHEMA_FORMAT)
    assert message is not None
    assert message.startswith("not valid JSON: ")


@pytest.mark.parametrize("answer", ["Sure! Ada is 36.", '{"name": "Ada",', "NaN", ""])
def test_what_is_not_json_says_so(answer: str) -> None:
    message = validate_json_answer(answer, SCHEMA_FORMAT)
    assert message is not None
    assert message.startswith("not valid JSON: ")


def test_json_object_only_needs_an_object() -> None:
    json_object = {"type": "json_object"}
    assert validate_json_answer('{"anything": [1, 2]}', json_object) is None
    assert validate_json_answer("[1, 2]", json_object) == "not a JSON object (an array)"
    assert validate_json_answer('"text"', json_object) == "not a JSON object (a string)"
    message = validate_json_answer("{oops}", json_object)
    assert message is not None
    assert message.startswith("not valid JSON: ")


def test_plain_text_formats_are_not_checked() -> None:
    assert validate_json_answer("not json at all", {"type": "text"}) is None


def test_a_json_schema_format_without_a_schema_only_needs_json() -> None:
    no_schema = {"type": "json_schema", "json_schema": {"name": "anything"}}
    assert validate_json_answer("[1]", no_schema) is None
    assert validate_json_answer("[1", no_schema) is not None


def test_an_invalid_schema_is_reported_not_raised() -> None:
    bad = {"type": "json_schema", "json_schema": {"schema": {"type": "integr"}}}
    message = validate_json_answer("1", bad)
    assert message is not None
    assert message.startswith("the schema is invalid: $.type")


def test_the_draft_named_by_the_schema_is_used() -> None:
    # Draft 4 reads exclusiveMaximum as a boolean; Draft 2020-12 as a number
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "integer",
        "maximum": 10,
        "exclusiveMaximum": True,
    }
    fmt = {"type": "json_schema", "json_schema": {"schema": draft4}}
    assert validate_json_answer("9", fmt) is None
    assert validate_json_answer("10", fmt) is not None


def test_known_formats_are_checked() -> None:
    schema = {"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}}
    fmt = {"type": "json_schema", "json_schema": {"schema": schema}}
    assert validate_json_answer('{"mail": "ada@example.com"}', fmt) is None
    assert validate_json_answer('{"mail": "nope"}', fmt) == "$.mail: 'nope' is not a 'email'"


def test_keys_that_are_not_identifiers_are_quoted_in_the_path() -> None:
    schema = {"type": "object", "properties": {"first name": {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"schema": schema}}
    assert validate_json_answer('{"first name": 1}', fmt) == (
        "$[\"first name\"]: 1 is not of type 'string'"
    )


def test_long_messages_are_shortened() -> None:
    schema = {"type": "string"}
    fmt = {"type": "json_schema", "json_schema": {"schema": schema}}
    message = validate_json_answer("[" + ", ".join(["12345"] * 200) + "]", fmt)
    assert message is not None
    assert len(message) <= 200
    assert message.endswith("...")


def test_the_same_schema_is_compiled_once() -> None:
    from modelway.guardrails import json_output

    before = json_output._validator.cache_info().misses
    for _ in range(3):
        validate_json_answer('{"name": "Ada", "age": 1}', SCHEMA_FORMAT)
    reordered = {"type": "json_schema", "json_schema": {"schema": dict(reversed(PERSON.items()))}}
    validate_json_answer('{"name": "Ada", "age": 1}', reordered)
    assert json_output._validator.cache_info().misses - before <= 1
