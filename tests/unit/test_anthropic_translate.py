"""OpenAI <-> Anthropic Messages translation, both ways and streamed (no network)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelway.protocol import errors
from modelway.protocol.openai_chat import ChatChunk, ChatRequest
from modelway.providers.anthropic_translate import (
    AnthropicStreamTranslator,
    from_anthropic_response,
    read_anthropic_error,
    stream_error,
    to_anthropic_request,
)

WHERE = "upstream claude-test"


def translate(**fields: Any) -> dict[str, Any]:
    fields.setdefault("model", "claude-sonnet-4-5")
    fields.setdefault("messages", [{"role": "user", "content": "hi"}])
    return to_anthropic_request(ChatRequest.model_validate(fields), default_max_tokens=4096)


def dumped(chunk: ChatChunk) -> dict[str, Any]:
    return chunk.model_dump(exclude_unset=True)


# -- request ----------------------------------------------------------------------------


def test_minimal_request_uses_default_max_tokens() -> None:
    body = translate()
    assert body == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 4096,
    }


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert translate(max_tokens=10)["max_tokens"] == 10
    assert translate(max_tokens=10, max_completion_tokens=20)["max_tokens"] == 20


def test_system_and_developer_messages_join_into_system() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
        ]
    )
    assert body["system"] == "Be brief.\n\nBe kind."
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_consecutive_same_role_messages_merge() -> None:
    body = translate(
        messages=[
            {"role": "user", "content": "one"},
            {"role": "user", "content": [{"type": "text", "text": "two"}]},
            {"role": "assistant", "content": "three"},
            {"role": "assistant", "content": "four"},
            {"role": "user", "content": "five"},
        ]
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "five"}]},
    ]


def test_images_from_data_and_http_urls() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "compare"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KG"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KG"},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_malformed_data_url_is_a_bad_request() -> None:
    content = [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]
    with pytest.raises(errors.BadRequest) as info:
        translate(messages=[{"role": "user", "content": content}])
    assert info.value.param == "messages[0].content[0].image_url.url"


def test_unsupported_content_part_is_refused() -> None:
    content = [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]
    with pytest.raises(errors.UnsupportedParameter):
        translate(messages=[{"role": "user", "content": content}])


def test_tool_calls_and_tool_results_round() -> None:
    body = translate(
        messages=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "25C"}],
            },
            {"role": "user", "content": "thanks"},
        ]
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(body["messages"]) == 3


def test_assistant_text_precedes_its_tool_use() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}
    body = translate(
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
        ]
    )
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_arguments_are_a_bad_request(arguments: str) -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    with pytest.raises(errors.BadRequest) as info:
        translate(
            messages=[
                {"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [call]},
            ]
        )
    assert info.value.status == 400
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_message_without_call_id_is_a_bad_request() -> None:
    with pytest.raises(errors.BadRequest) as info:
        translate(messages=[{"role": "tool", "content": "x"}])
    assert info.value.param == "messages[0].tool_call_id"


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_tools_become_input_schemas() -> None:
    body = translate(tools=TOOLS)
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "tool", "name": "weather"},
        ),
    ],
)
def test_tool_choice_variants(choice: Any, expected: dict[str, Any]) -> None:
    assert translate(tools=TOOLS, tool_choice=choice)["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_use() -> None:
    body = translate(tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    body = translate(tools=TOOLS, parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    body = translate(tools=TOOLS, tool_choice="none", parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "none"}


def test_sampling_stop_and_user_fields() -> None:
    body = translate(temperature=0.3, top_p=0.9, stop="END", user="u-42", seed=7)
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-42"}
    assert "seed" not in body


def test_temperature_above_one_is_clamped() -> None:
    assert translate(temperature=1.7)["temperature"] == 1.0


def test_openai_only_fields_are_dropped() -> None:
    body = translate(
        presence_penalty=0.5,
        frequency_penalty=0.5,
        logit_bias={"50256": -100},
        metadata={"k": "v"},
        response_format={"type": "text"},
    )
    assert set(body) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_unsupported_parameters(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(errors.UnsupportedParameter) as info:
        translate(**fields)
    assert info.value.param == param
    assert info.value.status == 400


# -- response ---------------------------------------------------------------------------


def message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }
    return {**base, **fields}


def test_text_response() -> None:
    resp = from_anthropic_response(message(), WHERE)
    assert resp.id == "msg_01"
    assert resp.model == "claude-sonnet-4-5-20250929"
    assert resp.created > 0
    assert resp.choices[0].message.content == "Hello"
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.model_dump() == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
    }


def test_tool_use_response() -> None:
    content = [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {"city": "Paris"}},
    ]
    resp = from_anthropic_response(message(content=content, stop_reason="tool_use"), WHERE)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking."
    assert choice.message.tool_calls == [
        {
            "id": "toolu_9",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        }
    ]


def test_tool_use_only_response_has_null_content() -> None:
    content = [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]
    resp = from_anthropic_response(message(content=content, stop_reason="tool_use"), WHERE)
    assert resp.choices[0].message.content is None


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reasons(stop_reason: str | None, finish: str) -> None:
    resp = from_anthropic_response(message(stop_reason=stop_reason), WHERE)
    assert resp.choices[0].finish_reason == finish


def test_usage_counts_cache_tokens_as_prompt() -> None:
    usage = {
        "input_tokens": 5,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "output_tokens": 7,
    }
    resp = from_anthropic_response(message(usage=usage), WHERE)
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (125, 7)
    assert resp.usage.total_tokens == 132


def test_response_without_content_is_an_upstream_error() -> None:
    with pytest.raises(errors.UpstreamError):
        from_anthropic_response({"type": "message"}, WHERE)


def test_error_body_is_read() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    failure = read_anthropic_error(529, body)
    assert (failure.status, failure.message, failure.type) == (
        529,
        "Overloaded",
        "overloaded_error",
    )
    assert (
        read_anthropic_error(502, b"<html>bad gateway</html>").message == "<html>bad gateway</html>"
    )


# -- stream -----------------------------------------------------------------------------


def feed_all(
    translator: AnthropicStreamTranslator, events: list[dict[str, Any]]
) -> list[ChatChunk]:
    chunks: list[ChatChunk] = []
    for data in events:
        chunks.extend(translator.feed(data["type"], data))
    return chunks


START = {
    "type": "message_start",
    "message": {
        "id": "msg_s1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1},
    },
}


def test_stream_text_then_usage_last() -> None:
    translator = AnthropicStreamTranslator(WHERE, created=1700000000)
    chunks = feed_all(
        translator,
        [
            START,
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {"type": "ping"},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hel"},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "lo"},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 12},
            },
            {"type": "message_stop"},
            {"type": "some_future_event"},
        ],
    )
    translator.check_complete()
    bodies = [dumped(c) for c in chunks]
    assert all(b["id"] == "msg_s1" and b["model"] == "claude-sonnet-4-5-20250929" for b in bodies)
    assert all(b["created"] == 1700000000 for b in bodies)
    assert [b["choices"][0]["delta"] for b in bodies[:4]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert bodies[3]["choices"][0]["finish_reason"] == "stop"
    assert bodies[4]["choices"] == []
    assert bodies[4]["usage"] == {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}
    assert len(bodies) == 5


def test_stream_tool_use_with_input_json_delta() -> None:
    translator = AnthropicStreamTranslator(WHERE)
    tool_start = {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}},
    }
    second_start = {
        "type": "content_block_start",
        "index": 2,
        "content_block": {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}},
    }

    def json_delta(index: int, part: str) -> dict[str, Any]:
        delta = {"type": "input_json_delta", "partial_json": part}
        return {"type": "content_block_delta", "index": index, "delta": delta}

    chunks = feed_all(
        translator,
        [
            START,
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Ok."},
            },
            tool_start,
            json_delta(1, ""),
            json_delta(1, '{"city": '),
            json_delta(1, '"Paris"}'),
            second_start,
            json_delta(2, "{}"),
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 40},
            },
            {"type": "message_stop"},
        ],
    )
    deltas = [dumped(c)["choices"][0]["delta"] for c in chunks[:-1]]
    assert deltas[2] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "toolu_a",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ]
    }
    assert deltas[3] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}
    assert deltas[4] == {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}
    assert deltas[5]["tool_calls"][0]["index"] == 1
    assert deltas[5]["tool_calls"][0]["id"] == "toolu_b"
    assert deltas[6] == {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}
    assert dumped(chunks[7])["choices"][0]["finish_reason"] == "tool_calls"
    assert dumped(chunks[-1])["usage"]["completion_tokens"] == 40


def test_stream_error_event_raises_mapped_error() -> None:
    translator = AnthropicStreamTranslator(WHERE)
    translator.feed("message_start", START)
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(errors.Unavailable) as info:
        translator.feed("error", overloaded)
    assert info.value.retryable
    assert "Overloaded" in info.value.message


@pytest.mark.parametrize(
    ("kind", "error_type"),
    [
        ("rate_limit_error", errors.RateLimited),
        ("api_error", errors.UpstreamError),
        ("invalid_request_error", errors.BadRequest),
    ],
)
def test_stream_error_types(kind: str, error_type: type[errors.GatewayError]) -> None:
    error = stream_error({"type": "error", "error": {"type": kind, "message": "x"}}, WHERE)
    assert isinstance(error, error_type)


def test_stream_ending_early_raises() -> None:
    translator = AnthropicStreamTranslator(WHERE)
    delta = {"type": "text_delta", "text": "Hi"}
    feed_all(translator, [START, {"type": "content_block_delta", "index": 0, "delta": delta}])
    with pytest.raises(errors.UpstreamError, match="stream ended early"):
        translator.check_complete()


def test_usage_chunk_serialises_like_openai() -> None:
    translator = AnthropicStreamTranslator(WHERE, created=1)
    chunks = feed_all(
        translator,
        [
            START,
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens"},
                "usage": {"output_tokens": 2},
            },
            {"type": "message_stop"},
        ],
    )
    assert dumped(chunks[1])["choices"][0]["finish_reason"] == "length"
    assert orjson.loads(chunks[-1].model_dump_json(exclude_unset=True)) == {
        "id": "msg_s1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32},
    }
