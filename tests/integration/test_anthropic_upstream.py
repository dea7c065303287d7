"""The openai SDK through the gateway to an Anthropic Messages upstream (the mock)."""

from __future__ import annotations

import openai
import pytest

from tests.integration.conftest import Mock
from tests.servers import Process


@pytest.fixture
def client(gateway: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def test_chat_is_translated_both_ways(client: openai.OpenAI, upstream: Mock) -> None:
    reply = client.chat.completions.create(
        model="mock-claude",
        messages=[
            {"role": "system", "content": "You answer in haiku."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "tell me about the sea"},
        ],
        max_tokens=100,
        stop=["never"],
    )
    assert reply.choices[0].message.content == "tell me about the sea"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    # Mock tokens are words: system 4 + messages 2 + 2 + 5.
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (13, 5)
    sent = upstream.last_request()
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == "sk-ant-test-secret"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    body = sent["body"]
    assert body["model"] == "upstream-claude"
    assert body["system"] == "You answer in haiku."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 100 and body["stop_sequences"] == ["never"]


def test_stream_becomes_openai_chunks_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="mock-claude",
            messages=[{"role": "user", "content": "waves on the shore"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "waves on the shore"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 4)


def test_max_tokens_maps_to_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="mock-claude",
        messages=[{"role": "user", "content": "one two three four"}],
        max_completion_tokens=2,
    )
    assert reply.choices[0].message.content == "one two"
    assert reply.choices[0].finish_reason == "length"


def test_tools_round_trip(client: openai.OpenAI, upstream: Mock) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look something up",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    reply = client.chat.completions.create(
        model="mock-claude",
        messages=[{"role": "user", "content": "look up tides"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "lookup"}},
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    body = upstream.last_request()["body"]
    assert body["tools"][0]["name"] == "lookup"
    assert body["tools"][0]["input_schema"] == tools[0]["function"]["parameters"]
    assert body["tool_choice"] == {"type": "tool", "name": "lookup"}

    # Send the tool result back: it reaches Anthropic as a tool_result block.
    client.chat.completions.create(
        model="mock-claude",
        messages=[
            {"role": "user", "content": "look up tides"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "high tide at 6"},
        ],  # type: ignore[list-item]
        tools=tools,  # type: ignore[arg-type]
    )
    messages = upstream.last_request()["body"]["messages"]
    assert messages[1]["content"][0]["type"] == "tool_use"
    assert messages[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": "high tide at 6",
    }


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="mock-claude",
            messages=[{"role": "user", "content": "call it"}],
            tools=[{"type": "function", "function": {"name": "ping", "parameters": {}}}],
            tool_choice="required",
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function is not None and calls[0].function.name == "ping"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["tool_calls"]


def test_images_become_anthropic_image_blocks(client: openai.OpenAI, upstream: Mock) -> None:
    client.chat.completions.create(
        model="mock-claude",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            }
        ],  # type: ignore[list-item]
    )
    blocks = upstream.last_request()["body"]["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }


def test_unsupported_parameter_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="mock-claude", messages=[{"role": "user", "content": "x"}], n=3
        )
    assert info.value.body["param"] == "n"  # type: ignore[index]


def test_completions_are_refused_for_anthropic(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="mock-claude", prompt="x")
    assert "does not support text completions" in info.value.message
