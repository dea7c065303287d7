"""The mock upstream, driven by the official OpenAI and Anthropic SDKs and raw HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import pytest_asyncio

from modelway.testing import MockOptions, RunningMock, start_mock_upstream
from tests.openapi_schema import errors

SEED = 7
HELLO: list[Any] = [{"role": "user", "content": "say hello to the world"}]


@pytest_asyncio.fixture(scope="module")
async def mock() -> AsyncIterator[RunningMock]:
    running = await start_mock_upstream(MockOptions(seed=SEED))
    yield running
    await running.close()


@pytest.fixture(autouse=True)
def fresh_mock(mock: RunningMock) -> None:
    mock.state.set_options(MockOptions(seed=SEED), reseed=True)
    mock.state.reset_stats()


@pytest_asyncio.fixture
async def oai(mock: RunningMock) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=f"{mock.url}/v1", api_key="sk-test", max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def claude(mock: RunningMock) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=mock.url, api_key="sk-ant-test", max_retries=0)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def http(mock: RunningMock) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mock.url, timeout=5.0) as client:
        yield client


async def sse_payloads(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[str]:
    async with http.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]


def assert_valid(schema: str, body: Any) -> None:
    problems = errors(schema, body)
    assert not problems, problems


# --- OpenAI protocol -------------------------------------------------------------------------


async def test_chat_echoes_last_user_message(oai: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "echo"}, {"type": "text", "text": "me"}],
        },
    ]
    result = await oai.chat.completions.create(model="any-model", messages=messages)
    assert result.model == "any-model"
    assert result.object == "chat.completion"
    choice = result.choices[0]
    assert choice.message.content == "echo me"
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (6, 2)
    assert result.usage.total_tokens == 8


async def test_chat_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "say hello to the world"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.prompt_tokens == 5


async def test_completions(oai: openai.AsyncOpenAI) -> None:
    result = await oai.completions.create(model="m", prompt="one two three")
    assert result.object == "text_completion"
    assert result.choices[0].text == "one two three"
    assert result.usage is not None and result.usage.total_tokens == 6
    stream = await oai.completions.create(
        model="m", prompt="one two three", stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_embeddings_float_and_base64(oai: openai.AsyncOpenAI) -> None:
    default = await oai.embeddings.create(model="emb", input=["alpha", "beta gamma"])
    floats = await oai.embeddings.create(model="emb", input=["alpha"], encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 8
    assert default.data[0].embedding == floats.data[0].embedding
    assert default.data[0].embedding != default.data[1].embedding
    assert default.usage.prompt_tokens == 3
    sized = await oai.embeddings.create(model="emb", input="alpha", dimensions=32)
    assert len(sized.data[0].embedding) == 32
    assert abs(sum(v * v for v in sized.data[0].embedding) - 1.0) < 1e-5


async def test_models_list(oai: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in oai.models.list()]
    assert ids == ["mock-gpt-4o-mini", "mock-claude"]


async def test_azure_style_path(mock: RunningMock) -> None:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=mock.url, api_version="2024-10-21", api_key="k", max_retries=0
    )
    result = await client.chat.completions.create(model="dep1", messages=HELLO)
    await client.close()
    assert result.choices[0].message.content == "say hello to the world"
    last = mock.state.stats.snapshot()["last_requests"][-1]
    assert last["path"] == "/openai/deployments/dep1/chat/completions"
    assert last["query"] == "api-version=2024-10-21"


async def test_openai_tool_call(oai: openai.AsyncOpenAI) -> None:
    tools: list[Any] = [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
    ]
    args = '{"city": "Paris"}'
    result = await oai.chat.completions.create(
        model="m",
        messages=HELLO,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "weather"}},
        extra_headers={"x-mock-tool-arguments": args},
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert (call.function.name, call.function.arguments) == ("weather", args)

    followup: list[Any] = [
        *HELLO,
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    stream = await oai.chat.completions.create(
        model="m", messages=followup, tools=tools, tool_choice="required", stream=True
    )
    chunks = [chunk async for chunk in stream]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].function is not None and deltas[0].function.name == "lookup"
    assert "".join((d.function.arguments or "") for d in deltas if d.function) == "{}"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_max_tokens_and_stop(oai: openai.AsyncOpenAI) -> None:
    cut = await oai.chat.completions.create(model="m", messages=HELLO, max_tokens=2)
    assert cut.choices[0].message.content == "say hello"
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 2
    newer = await oai.chat.completions.create(model="m", messages=HELLO, max_completion_tokens=3)
    assert newer.choices[0].message.content == "say hello to"
    several = await oai.chat.completions.create(model="m", messages=HELLO, n=2, max_tokens=1)
    assert [c.index for c in several.choices] == [0, 1]
    assert several.usage is not None and several.usage.completion_tokens == 2
    stopped = await oai.chat.completions.create(model="m", messages=HELLO, stop=["zzz", " to"])
    assert stopped.choices[0].message.content == "say hello"
    assert stopped.choices[0].finish_reason == "stop"


async def test_content_and_token_headers(oai: openai.AsyncOpenAI, mock: RunningMock) -> None:
    exact = "Exactly  this\ttext!"
    result = await oai.chat.completions.create(
        model="m", messages=HELLO, extra_headers={"x-mock-content": exact}
    )
    assert result.choices[0].message.content == exact
    assert result.usage is not None and result.usage.completion_tokens == 3
    lorem = await oai.chat.completions.create(
        model="m", messages=HELLO, extra_headers={"x-mock-tokens": "12"}
    )
    assert lorem.usage is not None and lorem.usage.completion_tokens == 12
    assert len((lorem.choices[0].message.content or "").split()) == 12

    mock.state.set_options(MockOptions(seed=1, reply="lorem", lorem_tokens=4), reseed=True)
    first = await oai.chat.completions.create(model="m", messages=HELLO)
    mock.state.set_options(MockOptions(seed=1, reply="lorem", lorem_tokens=4), reseed=True)
    again = await oai.chat.completions.create(model="m", messages=HELLO)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert len((first.choices[0].message.content or "").split()) == 4


# --- Anthropic protocol ----------------------------------------------------------------------


async def test_anthropic_message(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-x",
        max_tokens=100,
        system="you are terse",
        messages=[
            {"role": "user", "content": "hi there"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "repeat after me"}]},
        ],
    )
    assert message.model == "claude-x" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text" and message.content[0].text == "repeat after me"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 3)


async def test_anthropic_stream(claude: anthropic.AsyncAnthropic, http: httpx.AsyncClient) -> None:
    async with claude.messages.stream(
        model="claude-x",
        max_tokens=100,
        messages=[{"role": "user", "content": "stream these four words"}],
        extra_headers={"anthropic-version": "2023-06-01"},
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "stream these four words"
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 4)

    body = {"model": "c", "max_tokens": 9, "stream": True, "messages": HELLO}
    async with http.stream("POST", "/v1/messages", json=body) as response:
        events = [line[7:] async for line in response.aiter_lines() if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_anthropic_tool_use(claude: anthropic.AsyncAnthropic) -> None:
    tools: list[Any] = [
        {"name": "first", "input_schema": {"type": "object"}},
        {"name": "get_weather", "input_schema": {"type": "object"}},
    ]
    message = await claude.messages.create(
        model="c",
        max_tokens=50,
        messages=HELLO,
        tools=tools,
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_headers={"x-mock-tool-arguments": '{"city": "Oslo", "days": 3}'},
    )
    block = message.content[0]
    assert message.stop_reason == "tool_use"
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "Oslo", "days": 3}

    conversation: list[Any] = [
        *HELLO,
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "rain"}],
        },
    ]
    async with claude.messages.stream(
        model="c", max_tokens=50, messages=conversation, tools=tools, tool_choice={"type": "any"}
    ) as stream:
        final = await stream.get_final_message()
    streamed = final.content[0]
    assert streamed.type == "tool_use" and streamed.name == "first" and streamed.input == {}
    assert final.stop_reason == "tool_use"


async def test_anthropic_limits(claude: anthropic.AsyncAnthropic, http: httpx.AsyncClient) -> None:
    cut = await claude.messages.create(model="c", max_tokens=2, messages=HELLO)
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 2
    stopped = await claude.messages.create(
        model="c", max_tokens=50, messages=HELLO, stop_sequences=["the"]
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "the"
    assert stopped.content[0].type == "text" and stopped.content[0].text == "say hello to "

    missing = await http.post("/v1/messages", json={"model": "c", "messages": HELLO})
    assert missing.status_code == 400
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "invalid_request_error"
    bad_json = await http.post("/v1/messages", content=b"{nope")
    assert bad_json.status_code == 400 and bad_json.json()["type"] == "error"


# --- Faults and timing -----------------------------------------------------------------------


async def test_status_faults(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, http: httpx.AsyncClient
) -> None:
    with pytest.raises(openai.RateLimitError) as rate_limited:
        await oai.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-mock-fail-status": "429"}
        )
    assert rate_limited.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        await claude.messages.create(
            model="c", max_tokens=5, messages=HELLO, extra_headers={"x-mock-fail-status": "529"}
        )
    assert overloaded.value.status_code == 529
    assert overloaded.value.response.headers["retry-after"] == "1"
    assert overloaded.value.response.json()["error"]["type"] == "overloaded_error"

    bad = await http.post("/v1/chat/completions", content=b"not json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}


async def test_reset_fault(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(
            model="m", messages=HELLO, extra_headers={"x-mock-fail-mode": "reset"}
        )


async def test_cut_fault(http: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": HELLO, "stream": True}
    received: list[str] = []
    with pytest.raises(httpx.HTTPError):
        async with http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"x-mock-fail-mode": "cut"}
        ) as response:
            async for line in response.aiter_lines():
                received.append(line)
    data = [line for line in received if line.startswith("data: ")]
    assert data and "data: [DONE]" not in data
    assert len(data) < 7  # role chunk + 5 tokens + finish chunk when complete


async def test_hang_fault(oai: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await oai.chat.completions.create(
            model="m", messages=HELLO, timeout=0.3, extra_headers={"x-mock-fail-mode": "hang"}
        )
    assert time.monotonic() - started < 2.0


async def test_timing_headers(oai: openai.AsyncOpenAI) -> None:
    started = time.monotonic()
    await oai.chat.completions.create(
        model="m", messages=HELLO, extra_headers={"x-mock-latency-ms": "150"}
    )
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    stream = await oai.chat.completions.create(
        model="m",
        messages=HELLO,
        stream=True,
        extra_headers={"x-mock-ttft-ms": "100", "x-mock-tokens-per-second": "50"},
    )
    async for _ in stream:
        pass
    # 100 ms to the first token, then 4 more tokens 20 ms apart.
    assert time.monotonic() - started >= 0.18


async def test_config_stats_and_reset(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}
    config = await http.post("/_mock/config", json={"fail_rate": 1, "fail_status": 503})
    assert config.status_code == 200
    assert config.json()["fail_rate"] == 1.0 and config.json()["fail_status"] == 503
    failed = await http.post("/v1/chat/completions", json={"model": "m1", "messages": HELLO})
    assert failed.status_code == 503 and failed.headers["retry-after"] == "1"
    await http.post("/_mock/config", json={"fail_rate": 0})
    ok = await http.post("/v1/embeddings", json={"model": "m2", "input": "x"})
    assert ok.status_code == 200
    unknown = await http.post("/_mock/config", json={"no_such_option": 1})
    assert unknown.status_code == 400

    stats = (await http.get("/_mock/stats")).json()
    assert stats["requests_total"] == 2
    assert stats["by_path"] == {"/v1/chat/completions": 1, "/v1/embeddings": 1}
    assert stats["by_model"] == {"m1": 1, "m2": 1}
    assert stats["failures_injected"] == 1
    assert [r["body"]["model"] for r in stats["last_requests"]] == ["m1", "m2"]
    assert stats["last_requests"][0]["method"] == "POST"

    await http.post("/_mock/reset")
    assert (await http.get("/_mock/stats")).json()["requests_total"] == 0


async def test_fail_rate_is_seeded(http: httpx.AsyncClient) -> None:
    async def outcomes() -> list[int]:
        await http.post("/_mock/config", json={"fail_rate": 0.5, "seed": 3})
        body = {"model": "m", "messages": HELLO}
        return [(await http.post("/v1/chat/completions", json=body)).status_code for _ in range(20)]

    first = await outcomes()
    assert first == await outcomes()
    assert 200 in first and 500 in first


# --- Bodies against the official OpenAI spec -------------------------------------------------


async def test_openai_bodies_match_spec(http: httpx.AsyncClient) -> None:
    chat = await http.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})
    assert_valid("CreateChatCompletionResponse", chat.json())
    tools = [{"type": "function", "function": {"name": "f"}}]
    tool_body = {"model": "m", "messages": HELLO, "tools": tools, "tool_choice": "required"}
    tool_call = await http.post("/v1/chat/completions", json=tool_body)
    assert_valid("CreateChatCompletionResponse", tool_call.json())

    for body in (
        {"model": "m", "messages": HELLO, "stream": True, "n": 2},
        {
            "model": "m",
            "messages": HELLO,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        {**tool_body, "stream": True},
    ):
        payloads = await sse_payloads(http, "/v1/chat/completions", body)
        assert payloads[-1] == "[DONE]"
        for payload in payloads[:-1]:
            assert_valid("CreateChatCompletionStreamResponse", orjson.loads(payload))

    completion = await http.post("/v1/completions", json={"model": "m", "prompt": "a b c"})
    assert_valid("CreateCompletionResponse", completion.json())
    stream_body = {"model": "m", "prompt": "a b", "stream": True, "max_tokens": 1}
    for payload in (await sse_payloads(http, "/v1/completions", stream_body))[:-1]:
        chunk = orjson.loads(payload)
        # The spec shares this schema with streamed chunks but forgets their null finish_reason.
        for choice in chunk["choices"]:
            if choice["finish_reason"] is None:
                choice["finish_reason"] = "stop"
        assert_valid("CreateCompletionResponse", chunk)

    for fmt in ("float", "base64"):
        emb_body = {"model": "e", "input": ["a", "b"], "encoding_format": fmt}
        embedding = await http.post("/v1/embeddings", json=emb_body)
        if fmt == "float":
            assert_valid("CreateEmbeddingResponse", embedding.json())
        else:
            assert isinstance(embedding.json()["data"][0]["embedding"], str)
    assert_valid("ListModelsResponse", (await http.get("/v1/models")).json())
