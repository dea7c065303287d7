"""The openai SDK through the gateway to an OpenAI-compatible upstream (the mock)."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
import pytest

from tests.integration.conftest import Mock
from tests.openapi_schema import validate
from tests.servers import Process


@pytest.fixture
def client(gateway: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def test_chat_returns_what_the_upstream_answered(client: openai.OpenAI, upstream: Mock) -> None:
    upstream.reset()
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "tell me about lighthouses"},
        ],
        temperature=0.2,
        max_tokens=50,
        seed=3,
        user="u-1",
        metadata={"team": "search"},
    )
    reply = raw.parse()
    assert reply.choices[0].message.content == "tell me about lighthouses"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, 4)
    assert raw.headers["x-modelway-deployment"] == "openai:upstream-gpt"
    assert len(raw.headers["x-request-id"]) >= 16
    sent = upstream.last_request()
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "upstream-gpt"
    assert sent["headers"]["authorization"] == "Bearer sk-test-openai-secret"
    for field, value in {"temperature": 0.2, "max_tokens": 50, "seed": 3, "user": "u-1"}.items():
        assert sent["body"][field] == value
    assert sent["body"]["metadata"] == {"team": "search"}


def test_response_body_matches_the_openai_spec(gateway: Process) -> None:
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "spec check"}]}
    resp = httpx.post(gateway.url + "/v1/chat/completions", json=body)
    assert resp.status_code == 200
    validate("CreateChatCompletionResponse", resp.json())


def test_client_request_id_is_echoed(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-request-id": "trace-abc-123"},
    )
    assert raw.headers["x-request-id"] == "trace-abc-123"


def test_unknown_fields_reach_the_upstream_unchanged(client: openai.OpenAI, upstream: Mock) -> None:
    client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"guided_json": {"type": "object"}, "top_k": 7, "repetition_penalty": 1.1},
    )
    body = upstream.last_request()["body"]
    assert body["guided_json"] == {"type": "object"}
    assert body["top_k"] == 7 and body["repetition_penalty"] == 1.1


def test_stream_with_usage(client: openai.OpenAI, gateway: Process) -> None:
    stream = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]


def test_stream_frames_are_spec_valid_and_end_with_done(gateway: Process) -> None:
    body = {
        "model": "mock-gpt",
        "stream": True,
        "messages": [{"role": "user", "content": "alpha beta"}],
    }
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in resp.iter_lines() if line]
    assert frames[-1] == "data: [DONE]"
    for frame in frames[:-1]:
        chunk = orjson.loads(frame.removeprefix("data: "))
        validate("CreateChatCompletionStreamResponse", chunk)
        # The client did not ask for usage: no usage chunk, no usage field.
        assert "usage" not in chunk and chunk["choices"]


def test_upstream_is_always_asked_for_usage(client: openai.OpenAI, upstream: Mock) -> None:
    list(
        client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert upstream.last_request()["body"]["stream_options"] == {"include_usage": True}


def test_tools_pass_through(client: openai.OpenAI, upstream: Mock) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    reply = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "weather in Oslo?"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice="required",
    )
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(orjson.loads(call.function.arguments), dict)  # type: ignore[union-attr]
    assert call.id and call.type == "function"
    assert reply.choices[0].finish_reason == "tool_calls"
    sent = upstream.last_request()["body"]
    assert sent["tools"] == tools and sent["tool_choice"] == "required"


def test_tool_results_go_back_unchanged(client: openai.OpenAI, upstream: Mock) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "12C and rain"},
    ]
    client.chat.completions.create(model="mock-gpt", messages=messages)  # type: ignore[arg-type]
    assert upstream.last_request()["body"]["messages"] == messages


def test_content_parts_pass_through(client: openai.OpenAI, upstream: Mock) -> None:
    parts = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    reply = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": parts}],  # type: ignore[list-item]
    )
    assert reply.choices[0].message.content == "describe"
    assert upstream.last_request()["body"]["messages"][0]["content"] == parts


def test_response_format_and_max_completion_tokens(client: openai.OpenAI, upstream: Mock) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    reply = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "a b c d e f"}],
        response_format=schema,  # type: ignore[arg-type]
        max_completion_tokens=3,
        stop=["zzz"],
    )
    assert reply.choices[0].message.content == "a b c"
    assert reply.choices[0].finish_reason == "length"
    sent = upstream.last_request()["body"]
    assert sent["response_format"] == schema and sent["stop"] == ["zzz"]


def test_n_greater_than_one_reaches_openai_upstreams(client: openai.OpenAI, upstream: Mock) -> None:
    client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "x"}], n=2
    )
    assert upstream.last_request()["body"]["n"] == 2


def test_legacy_completions(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="mock-gpt", prompt="roses are red", max_tokens=2)
    assert reply.choices[0].text == "roses are"
    assert reply.choices[0].finish_reason == "length"
    chunks = list(
        client.completions.create(
            model="mock-gpt",
            prompt="violets are blue",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "violets are blue"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_embeddings(client: openai.OpenAI, gateway: Process) -> None:
    # The SDK asks for base64 by default and decodes it; ask for floats explicitly too.
    default = client.embeddings.create(model="mock-gpt", input=["first", "second"])
    floats = client.embeddings.create(
        model="mock-gpt", input=["first", "second"], encoding_format="float"
    )
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    for a, b in zip(default.data, floats.data, strict=True):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-6)
    raw = httpx.post(gateway.url + "/v1/embeddings", json={"model": "mock-gpt", "input": "x"})
    validate("CreateEmbeddingResponse", raw.json())


def test_models_list_and_retrieve(client: openai.OpenAI, gateway: Process) -> None:
    names = {m.id for m in client.models.list()}
    assert {"mock-gpt", "mock-claude", "smollm2-135m-instruct"} <= names
    assert client.models.retrieve("mock-claude").id == "mock-claude"
    validate("ListModelsResponse", httpx.get(gateway.url + "/v1/models").json())
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_azure_deployment_uses_api_version_and_api_key(
    client: openai.OpenAI, upstream: Mock
) -> None:
    reply = client.chat.completions.create(
        model="azure-gpt", messages=[{"role": "user", "content": "hello azure"}]
    )
    assert reply.choices[0].message.content == "hello azure"
    sent = upstream.last_request()
    assert sent["path"] == "/openai/deployments/gpt4o-deploy/chat/completions"
    assert sent["query"] == "api-version=2024-10-21"
    assert sent["headers"]["api-key"] == "azure-test-secret"
    assert "authorization" not in sent["headers"]


def test_base_url_without_v1_also_works(gateway: Process) -> None:
    client = openai.OpenAI(base_url=gateway.url, api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "no prefix"}]
    )
    assert reply.choices[0].message.content == "no prefix"


def test_stream_is_relayed_as_it_is_produced(gateway: Process, upstream: Mock) -> None:
    """Tokens reach the client as the upstream sends them, not buffered to the end."""
    body = {"model": "mock-gpt", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    arrivals: list[float] = []
    with (
        upstream.behaving(reply="lorem", lorem_tokens=10, tokens_per_second=20),
        httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=30) as resp,
    ):
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content":"' in line:
                arrivals.append(time.perf_counter())
    # The upstream spreads 10 tokens over ~0.45 s; buffered relaying would bunch them up.
    assert len(arrivals) >= 10
    assert arrivals[-1] - arrivals[0] > 0.2
