"""Real generations from the bundled SmolLM2 model through the HTTP API."""

from __future__ import annotations

import openai
import pytest

from tests.servers import Process

MODEL = "smollm2-135m-instruct"


@pytest.fixture
def client(gateway: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def test_greedy_generation_is_real_and_repeatable(client: openai.OpenAI) -> None:
    def ask() -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name three colours."}],
            temperature=0,
            max_tokens=24,
        )

    first, second = ask(), ask()
    text = first.choices[0].message.content
    assert text and len(text.split()) >= 2
    assert second.choices[0].message.content == text
    assert first.model == MODEL
    assert first.usage is not None
    assert first.usage.prompt_tokens > 5
    assert 0 < first.usage.completion_tokens <= 24
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.choices[0].finish_reason in ("stop", "length")


def test_streamed_generation_matches_the_non_streamed_one(client: openai.OpenAI) -> None:
    kwargs = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something about the moon."}],
        "temperature": 0,
        "max_tokens": 16,
    }
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(
        client.chat.completions.create(
            **kwargs,
            stream=True,
            stream_options={"include_usage": True},  # type: ignore[call-overload]
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_max_tokens_caps_the_answer(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a long story."}],
        temperature=0,
        max_tokens=5,
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"


def test_stop_string_is_cut_and_not_returned(client: openai.OpenAI) -> None:
    kwargs = {
        "model": MODEL,
        "temperature": 0,
        "max_tokens": 30,
        "messages": [{"role": "user", "content": "Count from one to ten in words."}],
    }
    free = client.chat.completions.create(**kwargs).choices[0].message.content  # type: ignore[call-overload]
    assert free and len(free) > 6
    stop = free[4:7]
    cut = client.chat.completions.create(**kwargs, stop=[stop])  # type: ignore[call-overload]
    assert cut.choices[0].message.content == free[: free.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_seeded_sampling_is_reproducible(client: openai.OpenAI) -> None:
    def ask(seed: int) -> str | None:
        return (
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Invent a word."}],
                temperature=1.0,
                seed=seed,
                max_tokens=12,
            )
            .choices[0]
            .message.content
        )

    assert ask(11) == ask(11)


def test_prompt_longer_than_the_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 700}]
        )
    assert info.value.code == "context_length_exceeded"


def test_max_tokens_beyond_the_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    assert info.value.code == "context_length_exceeded"
    assert "max_tokens" in info.value.message


def test_legacy_completion_on_the_embedded_model(client: openai.OpenAI) -> None:
    reply = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0
    )
    assert reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens <= 4


def test_images_are_refused_by_the_text_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                }
            ],
        )  # type: ignore[list-item]
    assert info.value.code == "unsupported_parameter"
