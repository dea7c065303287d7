"""The embedded engine under concurrency, through the HTTP API with the real model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
import yaml

from tests.servers import Process, free_port, running

MODEL = "smollm2"
TINY = "smollm2-single"  # one slot and a one-place queue: for the capacity tests


@pytest.fixture(scope="module")
def engine_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    folder = tmp_path_factory.mktemp("engine")
    config = {
        "models": [
            {
                "name": MODEL,
                "routing": {"retries": 0},
                "deployments": [
                    {
                        "provider": "local",
                        "context_size": 512,
                        "max_parallel": 8,
                        "queue_size": 16,
                    }
                ],
            },
            {
                "name": TINY,
                "routing": {"retries": 0},
                "deployments": [
                    {
                        "provider": "local",
                        "context_size": 256,
                        "max_parallel": 1,
                        "queue_size": 1,
                        "batch_size": 64,
                    }
                ],
            },
        ],
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    args = ["serve", "--config", str(path), "--port", str(port)]
    with running(args, folder / "gateway.log", port, "/health/live") as proc:
        yield proc


@pytest.fixture
def client(engine_gateway: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=engine_gateway.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture
def aclient(engine_gateway: Process) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=engine_gateway.url + "/v1", api_key="unused", max_retries=0)


def stats(gateway: Process, model: str = MODEL) -> dict[str, Any]:
    body = httpx.get(gateway.url + "/engine/stats").json()
    found: dict[str, Any] = body["deployments"][f"local:{model}"]
    return found


def readable(text: str) -> bool:
    """Coherent enough: mostly letters, spaces and punctuation, not byte soup."""
    if not text.strip():
        return False
    good = sum(c.isalnum() or c.isspace() or c in ".,;:!?'\"-()" for c in text)
    return good / len(text) > 0.8


async def test_concurrent_streams_all_complete_with_exact_usage(
    aclient: openai.AsyncOpenAI, engine_gateway: Process
) -> None:
    async def one(i: int) -> tuple[str, Any]:
        stream = await aclient.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Tell me a fact about the number {i}."}],
            max_tokens=40,
            temperature=0.7,
            seed=i,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return text, chunks[-1].usage

    results = await asyncio.gather(*(one(i) for i in range(8)))
    for text, usage in results:
        assert usage is not None
        assert usage.completion_tokens == 40
        assert usage.prompt_tokens > 10
        assert usage.total_tokens == usage.prompt_tokens + 40
        assert readable(text)
    assert stats(engine_gateway)["running"] == 0


def test_greedy_alone_repeats_exactly_and_batched_stays_coherent(
    client: openai.OpenAI, aclient: openai.AsyncOpenAI
) -> None:
    messages = [{"role": "user", "content": "List three animals that live in the sea."}]

    def alone() -> str:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            temperature=0,
            max_tokens=32,  # type: ignore[arg-type]
        )
        return reply.choices[0].message.content or ""

    first = alone()
    assert readable(first)
    assert alone() == first and alone() == first

    async def batched() -> list[str]:
        replies = await asyncio.gather(
            *(
                aclient.chat.completions.create(
                    model=MODEL,
                    messages=messages,
                    temperature=0,
                    max_tokens=32,  # type: ignore[arg-type]
                )
                for _ in range(4)
            )
        )
        return [r.choices[0].message.content or "" for r in replies]

    for text in asyncio.run(batched()):
        assert readable(text)


def test_seeded_sampling_is_reproducible(client: openai.OpenAI) -> None:
    def ask(seed: int) -> str:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Invent a name for a cat."}],
            temperature=1.0,
            seed=seed,
            max_tokens=16,
        )
        return reply.choices[0].message.content or ""

    assert ask(1234) == ask(1234)


def test_stop_string_split_across_tokens_is_cut(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "temperature": 0,
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "Write two sentences about rain."}],
    }
    free = client.chat.completions.create(**kwargs).choices[0].message.content or ""
    stop = free[10:16]  # six characters: usually spread over more than one token
    cut = client.chat.completions.create(**kwargs, stop=[stop])
    assert cut.choices[0].message.content == free[: free.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_json_schema_output_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "population": {"type": "integer"},
            "coastal": {"type": "boolean"},
        },
        "required": ["city", "population", "coastal"],
    }
    for seed in (1, 2, 3):
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Describe a city as JSON."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": schema},
            },
            temperature=0.8,
            seed=seed,
            max_tokens=100,
        )
        jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    def ask(max_tokens: int) -> Any:
        return client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": 'Return {"name": ...} as JSON for a person called Ann.'}
            ],
            response_format={"type": "json_object"},
            temperature=0,
            max_tokens=max_tokens,
        ).choices[0]

    whole = ask(300)
    assert whole.finish_reason == "stop"
    assert isinstance(json.loads(whole.message.content or ""), dict)
    # Cut short, the answer says so (as OpenAI's JSON mode does) rather than pretending.
    assert ask(3).finish_reason == "length"


def test_forced_tool_call_is_well_formed(client: openai.OpenAI) -> None:
    params = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
    }
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": params}},
        {"type": "function", "function": {"name": "get_time", "parameters": params}},
    ]
    for stream in (False, True):
        kwargs: dict[str, Any] = {
            "model": MODEL,
            "tools": tools,
            "tool_choice": "required",
            "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
            "temperature": 0,
            "max_tokens": 60,
        }
        if stream:
            chunks = list(client.chat.completions.create(**kwargs, stream=True))
            calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
            name, arguments = calls[0].function.name, calls[0].function.arguments  # type: ignore[union-attr]
        else:
            reply = client.chat.completions.create(**kwargs)
            call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
            finish = reply.choices[0].finish_reason
            name, arguments = call.function.name, call.function.arguments  # type: ignore[union-attr]
        assert finish == "tool_calls"
        assert name in ("get_weather", "get_time")
        jsonschema.validate(json.loads(arguments or ""), params)


def test_cancelling_one_stream_leaves_the_others_whole(
    engine_gateway: Process, aclient: openai.AsyncOpenAI
) -> None:
    async def run() -> list[Any]:
        async def full(i: int) -> Any:
            stream = await aclient.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"Story {i}, please."}],
                max_tokens=48,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={"ignore_eos": True},
            )
            return [c async for c in stream][-1].usage

        async def abandoned() -> None:
            stream = await aclient.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "A long story, please."}],
                max_tokens=400,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            seen = 0
            async for _ in stream:
                seen += 1
                if seen == 3:
                    break
            await stream.close()

        results = await asyncio.gather(full(1), full(2), abandoned(), full(3))
        return [r for r in results if r is not None]

    usages = asyncio.run(run())
    assert [u.completion_tokens for u in usages] == [48, 48, 48]
    deadline = asyncio.run(_wait_idle(engine_gateway))
    assert deadline


async def _wait_idle(gateway: Process) -> bool:
    for _ in range(100):
        if stats(gateway)["running"] == 0:
            return True
        await asyncio.sleep(0.05)
    return False


def test_prefix_cache_is_hit_on_a_repeated_system_prompt(
    client: openai.OpenAI, engine_gateway: Process
) -> None:
    system = "You are a meticulous assistant for a shipping company. " * 6
    before = stats(engine_gateway)["cached_prompt_tokens"]
    for question in ("Where is my parcel?", "How long does delivery take?"):
        client.chat.completions.create(
            model=MODEL,
            max_tokens=4,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        )
    reused = stats(engine_gateway)["cached_prompt_tokens"] - before
    assert reused >= 60  # the system prompt is ~70 tokens


def test_full_queue_is_429_with_retry_after(engine_gateway: Process) -> None:
    body = {
        "model": TINY,
        "max_tokens": 60,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": "Talk."}],
    }

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=engine_gateway.url, timeout=60) as http:
            return list(
                await asyncio.gather(
                    *(http.post("/v1/chat/completions", json=body) for _ in range(6))
                )
            )

    statuses = [r.status_code for r in asyncio.run(burst())]
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1
    assert set(statuses) <= {200, 429}
    refused = next(r for r in asyncio.run(burst()) if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


def test_hundreds_of_simultaneous_connections(engine_gateway: Process) -> None:
    body = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}

    async def flood() -> list[int]:
        limits = httpx.Limits(max_connections=500)
        async with httpx.AsyncClient(
            base_url=engine_gateway.url, timeout=120, limits=limits
        ) as http:
            responses = await asyncio.gather(
                *(http.post("/v1/chat/completions", json=body) for _ in range(500))
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(flood())
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 24  # the 8 slots and the 16-place queue at least
    reply = httpx.post(engine_gateway.url + "/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 200


def test_disconnect_during_prefill_is_a_clean_cancel(
    engine_gateway: Process, client: openai.OpenAI
) -> None:
    long_prompt = "The history of shipping routes in the North Sea is long. " * 30

    async def abandon() -> None:
        async with httpx.AsyncClient(base_url=engine_gateway.url, timeout=30) as http:
            request = http.post(
                "/v1/chat/completions",
                json={
                    "model": MODEL,
                    "stream": True,
                    "max_tokens": 50,
                    "messages": [{"role": "user", "content": long_prompt}],
                },
            )
            task = asyncio.ensure_future(request)
            await asyncio.sleep(0.02)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(abandon())
    assert asyncio.run(_wait_idle(engine_gateway))
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Still there?"}], max_tokens=5
    )
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
                }
            },
            "response_format",
        ),
        ({"grammar": "root ::= [unclosed"}, "grammar"),
        ({"logit_bias": {"99999999": 5}}, "logit_bias"),
        ({"top_k": -1}, "top_k"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
    ],
)
def test_bad_engine_parameters_are_400(
    engine_gateway: Process, extra: dict[str, Any], param: str
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], **extra}
    resp = httpx.post(engine_gateway.url + "/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_grammar_extension_constrains_output(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Yes or no?"}],
        max_tokens=5,
        extra_body={"grammar": 'root ::= "yes" | "no"'},
    )
    assert reply.choices[0].message.content in ("yes", "no")


def test_engine_stats_shape(engine_gateway: Process) -> None:
    figures = stats(engine_gateway)
    for key in (
        "queue_depth",
        "running",
        "kv_cells_used",
        "kv_cells_total",
        "prompt_tokens",
        "generated_tokens",
        "cached_prompt_tokens",
        "ttft_p50_ms",
        "tpot_p50_ms",
    ):
        assert key in figures
    assert figures["kv_cells_total"] == 512 * 8
    assert Path(engine_gateway.log_path).exists()
