"""The response cache through running gateways, with the mock upstream as the provider
(its request counter shows whether a call was made) and the official openai SDK."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from modelway.config import bundled_embedding_path
from tests.integration.access_gateway import MASTER, AdminClient, start_gateway
from tests.integration.conftest import Mock
from tests.integration.test_metrics import _deployment as deployment
from tests.integration.test_metrics import scrape, value
from tests.servers import Process
from tests.services import redis_url

PHONE_ANSWER = "Call me at +1 415 555 2671 tomorrow."
needs_embeddings = pytest.mark.skipif(
    bundled_embedding_path() is None, reason="the embedding model package is not installed"
)


def cache_config(mock: Mock, state: Path, **top: Any) -> dict[str, Any]:
    lorem = {"headers": {"x-mock-tokens": "12"}}  # a different random answer per call
    return {
        "state_dir": str(state),
        "auth": {"master_key": MASTER, "refresh_seconds": 0.25},
        "accounting": {
            "prices": {"openai/upstream-gpt": {"input": 1000, "output": 2000}},
            "ledger_flush_seconds": 0.1,
        },
        "cache": {
            "policies": {"default": {}, "semantic": {"semantic": True}},
            "models": {"c-semantic": "semantic"},
        },
        "guardrails": {
            "default": None,
            "policies": {"redact-answers": {"output": {"pii": "redact"}}},
            "models": {"c-phone": "redact-answers"},
        },
        "models": [
            {"name": "c-lorem", "deployments": [deployment(mock, "lorem", **lorem)]},
            {"name": "c-semantic", "deployments": [deployment(mock, "sem", **lorem)]},
            {
                "name": "c-phone",
                "deployments": [
                    deployment(mock, "phone", headers={"x-mock-content": PHONE_ANSWER})
                ],
            },
            {"name": "all-minilm-l6-v2", "deployments": [{"provider": "local_embedding"}]},
        ],
        **top,
    }


@pytest.fixture(scope="module")
def gateway(upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    if bundled_embedding_path() is None:
        pytest.skip("the embedding model package is not installed")
    folder = tmp_path_factory.mktemp("cache")
    proc = start_gateway(folder, cache_config(upstream, folder / "state"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def keys(gateway: Process) -> dict[str, str]:
    admin = AdminClient(gateway.url)
    found = {}
    for team in ("red", "blue"):
        team_id = admin.team(f"cache-{team}")["id"]
        found[team] = admin.key(team=team_id)["key"]
    time.sleep(0.6)  # keys reach the serving path within auth.refresh_seconds
    return found


def client(gateway: Process, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def calls(mock: Mock) -> int:
    total: int = mock.stats()["requests_total"]
    return total


def ask(
    gateway: Process, key: str, text: str, model: str = "c-lorem", **extra: Any
) -> tuple[str, str | None, httpx.Headers]:
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **{"temperature": 0, **extra}
    )
    body = raw.parse()
    return body.choices[0].message.content or "", raw.headers.get("x-modelway-cache"), raw.headers


def ask_streamed(
    gateway: Process, key: str, text: str, model: str = "c-lorem"
) -> tuple[str, str | None, Any]:
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage = [], None
    for chunk in raw.parse():
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
        if chunk.usage is not None:
            usage = chunk.usage
    return "".join(parts), raw.headers.get("x-modelway-cache"), usage


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def test_a_repeated_request_is_answered_from_the_cache(
    gateway: Process, keys: dict[str, str], upstream: Mock
) -> None:
    question = unique("Tell me something random.")
    before = calls(upstream)
    first, state, _ = ask(gateway, keys["red"], question)
    assert state == "miss" and calls(upstream) == before + 1
    again, state, _ = ask(gateway, keys["red"], question)
    assert state == "hit" and again == first
    streamed, state, usage = ask_streamed(gateway, keys["red"], question)
    assert state == "hit" and streamed == first
    assert usage is not None and usage.completion_tokens > 0
    assert calls(upstream) == before + 1


def test_a_streamed_answer_is_cached_for_plain_requests_too(
    gateway: Process, keys: dict[str, str], upstream: Mock
) -> None:
    question = unique("Stream me something.")
    before = calls(upstream)
    streamed, state, _ = ask_streamed(gateway, keys["red"], question)
    assert state == "miss" and streamed
    plain, state, _ = ask(gateway, keys["red"], question)
    assert state == "hit" and plain == streamed
    again, state, _ = ask_streamed(gateway, keys["red"], question)
    assert state == "hit" and again == streamed
    assert calls(upstream) == before + 1


def test_another_team_never_sees_the_entry(
    gateway: Process, keys: dict[str, str], upstream: Mock
) -> None:
    question = unique("A team's own question.")
    red, _, _ = ask(gateway, keys["red"], question)
    before = calls(upstream)
    blue, state, _ = ask(gateway, keys["blue"], question)
    assert state == "miss" and calls(upstream) == before + 1
    assert blue != red


def test_no_cache_and_no_store(gateway: Process, keys: dict[str, str], upstream: Mock) -> None:
    question = unique("Controls.")
    first, _, _ = ask(gateway, keys["red"], question)
    before = calls(upstream)
    fresh, state, _ = ask(
        gateway, keys["red"], question, extra_headers={"cache-control": "no-cache"}
    )
    assert state == "bypass" and calls(upstream) == before + 1 and fresh != first
    # no-cache still stores: the fresh answer is the one served now.
    served, state, _ = ask(gateway, keys["red"], question)
    assert state == "hit" and served == fresh

    other = unique("Not to be kept.")
    ask(gateway, keys["red"], other, extra_headers={"cache-control": "no-store"})
    _, state, _ = ask(gateway, keys["red"], other, metadata={"cache_control": "no-store"})
    assert state == "miss"  # the first answer was not stored, nor the second
    _, state, _ = ask(gateway, keys["red"], other)
    assert state == "miss"


def test_a_ttl_can_be_set_per_request_and_a_bad_one_is_refused(
    gateway: Process, keys: dict[str, str]
) -> None:
    question = unique("Short-lived.")
    ask(gateway, keys["red"], question, extra_headers={"x-modelway-cache-ttl": "1"})
    time.sleep(1.2)
    _, state, _ = ask(gateway, keys["red"], question)
    assert state == "miss"
    with pytest.raises(openai.BadRequestError) as caught:
        ask(gateway, keys["red"], question, extra_headers={"x-modelway-cache-ttl": "forever"})
    assert caught.value.code == "invalid_cache_ttl"


def test_answers_that_vary_are_not_cached_by_default(
    gateway: Process, keys: dict[str, str], upstream: Mock
) -> None:
    question = unique("Be creative.")
    before = calls(upstream)
    for _ in range(2):
        _, state, _ = ask(gateway, keys["red"], question, temperature=0.9)
        assert state is None
    assert calls(upstream) == before + 2


def test_an_answer_a_guardrail_altered_is_not_cached(
    gateway: Process, keys: dict[str, str], upstream: Mock
) -> None:
    question = unique("How do I reach you?")
    before = calls(upstream)
    for _ in range(2):
        answer, state, _ = ask(gateway, keys["red"], question, model="c-phone")
        assert state == "miss" and "415 555 2671" not in answer
    for _ in range(2):  # redacted while streaming: not kept either
        streamed, state, _ = ask_streamed(gateway, keys["red"], question, model="c-phone")
        assert state == "miss" and "415 555 2671" not in streamed
    assert calls(upstream) == before + 4


@needs_embeddings
def test_a_paraphrase_is_a_semantic_hit_and_a_near_miss_is_not(
    gateway: Process, keys: dict[str, str], upstream: Mock
) -> None:
    key = keys["blue"]
    first, state, _ = ask(gateway, key, "What is the capital of France?", model="c-semantic")
    assert state == "miss"
    before = calls(upstream)
    again, state, headers = ask(
        gateway, key, "what is the capital city of France?", model="c-semantic"
    )
    assert state == "semantic-hit" and again == first
    assert float(headers["x-modelway-cache-similarity"]) >= 0.9
    assert calls(upstream) == before
    germany, state, _ = ask(gateway, key, "What is the capital of Germany?", model="c-semantic")
    assert state == "miss" and germany != first
    # The other team asks the same question: never another tenant's answer.
    _, state, _ = ask(
        gateway, keys["red"], "What is the capital city of France?", model="c-semantic"
    )
    assert state == "miss"


def test_hits_are_accounted_at_zero_cost_with_what_they_saved(
    gateway: Process, keys: dict[str, str]
) -> None:
    admin = AdminClient(gateway.url)
    key = admin.key(team=admin.team(f"cache-ledger-{uuid.uuid4().hex[:6]}")["id"])
    time.sleep(0.6)
    question = unique("Account for me.")
    ask(gateway, key["key"], question)
    for _ in range(2):
        _, state, _ = ask(gateway, key["key"], question)
        assert state == "hit"
    time.sleep(0.3)
    rows = admin.ok("GET", "/admin/spend", params={"group_by": "key"})["data"]
    row = next(r for r in rows if r["group"] == key["id"])
    assert row["requests"] == 3 and row["cache_hits"] == 2
    # One paid call; the two hits cost nothing and saved twice what it cost.
    assert row["saved_nano_usd"] == 2 * row["cost_nano_usd"] > 0
    samples = scrape(gateway.url)
    assert value(samples, "modelway_cache_lookups_total", model="c-lorem", result="hit") >= 2
    assert value(samples, "modelway_cache_saved_usd_total", model="c-lorem") > 0


def test_two_gateways_share_one_redis_cache(upstream: Mock, tmp_path: Path) -> None:
    url = redis_url()
    if bundled_embedding_path() is None:
        pytest.skip("the embedding model package is not installed")
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    procs = [
        start_gateway(
            tmp_path / f"g{i}",
            cache_config(
                upstream,
                tmp_path / f"state{i}",
                redis_url=url,
                cache={
                    "namespace": namespace,
                    "policies": {"default": {}, "semantic": {"semantic": True}},
                    "models": {"c-semantic": "semantic"},
                },
            ),
        )
        for i in range(2)
    ]
    try:
        first, second = procs
        key = MASTER  # the same caller on both replicas
        question = unique("Shared between replicas.")
        answer, state, _ = ask(first, key, question)
        assert state == "miss"
        before = calls(upstream)
        again, state, _ = ask(second, key, question)
        assert state == "hit" and again == answer and calls(upstream) == before

        france, state, _ = ask(first, key, "What is the capital of France?", model="c-semantic")
        assert state == "miss"
        deadline = time.monotonic() + 10
        while True:  # the second replica follows the first one's entries through Redis
            paraphrase, state, _ = ask(
                second, key, "what is the capital city of France?", model="c-semantic"
            )
            if state == "semantic-hit" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert state == "semantic-hit" and paraphrase == france
    finally:
        for proc in procs:
            proc.stop()


def test_upstream_embeddings_can_back_the_semantic_cache(upstream: Mock, tmp_path: Path) -> None:
    config = cache_config(upstream, tmp_path / "state")
    config["cache"]["semantic"] = {"embedding_model": "upstream-embeddings"}
    config["models"] = [
        *config["models"][:3],
        {"name": "upstream-embeddings", "deployments": [deployment(upstream, "embed")]},
    ]
    gateway = start_gateway(tmp_path, config)
    try:
        before = upstream.stats()["by_path"].get("/v1/embeddings", 0)
        question = unique("Tell me about caching.")
        first, state, _ = ask(gateway, MASTER, question, model="c-semantic")
        assert state == "miss"
        # The same words with other spacing: another exact key, the same question.
        again, state, headers = ask(gateway, MASTER, question + "   ", model="c-semantic")
        assert state == "semantic-hit" and again == first
        assert float(headers["x-modelway-cache-similarity"]) > 0.999
        assert upstream.stats()["by_path"].get("/v1/embeddings", 0) >= before + 2
    finally:
        gateway.stop()
