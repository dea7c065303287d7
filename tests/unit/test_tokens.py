import socket
from typing import Any

import pytest
import tiktoken.registry
from structlog.testing import capture_logs

from modelway.accounting.tokens import (
    CallableCounter,
    EstimateCounter,
    TiktokenCounter,
    max_output_tokens,
    openai_counter,
    prompt_tokens,
    prompt_tokens_async,
)
from modelway.protocol.openai_chat import ChatRequest
from modelway.protocol.openai_completions import CompletionRequest
from modelway.protocol.openai_embeddings import EmbeddingRequest

# Counting characters makes the per-message accounting visible in the numbers.
CHARS = CallableCounter(len)


def chat(*messages: dict[str, Any], **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "gpt-4o", "messages": list(messages), **fields})


def test_tiktoken_counts_cl100k_tokens() -> None:
    counter = openai_counter()
    assert counter.count("tiktoken is great!") == 6
    assert counter.count("hello world") == 2
    assert counter.count("") == 0
    # Special-token text in user input is ordinary text, not an error.
    assert counter.count("<|endoftext|>") > 1


def test_openai_counter_is_one_shared_instance() -> None:
    assert openai_counter() is openai_counter()


def test_chat_count_matches_openai_cookbook_example() -> None:
    # The cookbook's example, which the API bills as 129 prompt tokens on cl100k models.
    request = chat(
        {
            "role": "system",
            "content": "You are a helpful, pattern-following assistant that translates "
            "corporate jargon into plain English.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "New synergies will help drive top-line growth.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Things working well together will increase revenue.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "Let's circle back when we have more time to touch base on "
            "opportunities for increased leverage.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Let's talk later when we're less busy about how to do better.",
        },
        {
            "role": "user",
            "content": "This late pivot means we don't have time to boil the ocean for the "
            "client deliverable.",
        },
    )
    assert prompt_tokens(request, openai_counter()) == 129


def test_chat_overhead_per_message_name_and_reply() -> None:
    one = chat({"role": "user", "content": "abc"})
    assert prompt_tokens(one, CHARS) == 3 + len("user") + 3 + 3
    named = chat({"role": "user", "content": "abc", "name": "bob"})
    assert prompt_tokens(named, CHARS) == prompt_tokens(one, CHARS) + 1 + len("bob")


def test_multimodal_content_counts_its_text_parts() -> None:
    parts = chat(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is "},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": "this?"},
            ],
        }
    )
    plain = chat({"role": "user", "content": "what is this?"})
    assert prompt_tokens(parts, CHARS) == prompt_tokens(plain, CHARS)


def test_tool_definitions_and_tool_calls_are_counted() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    question = {"role": "user", "content": "weather?"}
    with_tools = chat(question, tools=tools)
    assert prompt_tokens(with_tools, CHARS) > prompt_tokens(chat(question), CHARS)

    call = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    answer = {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    base = prompt_tokens(chat(question), CHARS)
    full = prompt_tokens(chat(question, call, answer), CHARS)
    expected_call = 3 + len("assistant") + len("get_weather") + len('{"city": "Paris"}')
    expected_answer = 3 + len("tool") + len("call_1") + len("sunny")
    assert full == base + expected_call + expected_answer


def test_completion_prompts_of_every_shape() -> None:
    def count(prompt: Any) -> int:
        request = CompletionRequest.model_validate({"model": "m", "prompt": prompt})
        return prompt_tokens(request, CHARS)

    assert count("abcd") == 4
    assert count(["ab", "cde"]) == 5
    assert count([1, 2, 3]) == 3  # token ids
    assert count([[1, 2], [3]]) == 3


def test_embedding_inputs_are_counted_without_chat_overhead() -> None:
    request = EmbeddingRequest.model_validate({"model": "e", "input": ["hello", "world"]})
    assert prompt_tokens(request, openai_counter()) == 2


def test_max_output_tokens() -> None:
    question = {"role": "user", "content": "hi"}
    assert max_output_tokens(chat(question), default=256) == 256
    assert max_output_tokens(chat(question, max_tokens=100), default=256) == 100
    both = chat(question, max_tokens=100, max_completion_tokens=50)
    assert max_output_tokens(both, default=256) == 50
    # n choices may each generate up to the limit.
    assert max_output_tokens(chat(question, max_tokens=100, n=3), default=256) == 300
    completion = CompletionRequest.model_validate({"model": "m", "prompt": "x", "max_tokens": 7})
    assert max_output_tokens(completion, default=256) == 7
    embedding = EmbeddingRequest.model_validate({"model": "e", "input": "x"})
    assert max_output_tokens(embedding, default=256) == 0


def test_estimate_is_never_zero_for_text_and_honest_for_other_scripts() -> None:
    estimate = EstimateCounter()
    assert estimate.count("") == 0
    assert estimate.count("a") == 1
    assert estimate.count("abcdefgh") == 2
    # Three bytes a character: a CJK sentence is not estimated at a quarter token a char.
    assert estimate.count("这是一个测试") >= 4


def test_unavailable_encoding_falls_back_to_estimates_and_says_so_once() -> None:
    counter = TiktokenCounter("no-such-encoding")
    with capture_logs() as logs:
        assert counter.count("abcdefgh") == EstimateCounter().count("abcdefgh")
        assert counter.count("abcd") == 1
    assert not counter.exact
    assert [entry["event"] for entry in logs] == ["tokenizer unavailable; estimating token counts"]


def test_loading_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access while loading the tokenizer")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # load from the file again
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # and not from tiktoken's download cache
    counter = TiktokenCounter()
    assert counter.count("hello world") == 2
    assert counter.exact


def test_callable_counter_uses_the_function() -> None:
    assert CallableCounter(lambda text: 42).count("anything") == 42


async def test_async_count_equals_the_sync_count_short_or_long() -> None:
    counter = openai_counter()
    for text in ("short question", "long document. " * 2_000):
        request = chat({"role": "user", "content": text})
        assert await prompt_tokens_async(request, counter) == prompt_tokens(request, counter)
