"""Rate limits, token reservation, budgets and cost, against a real gateway (SQLite,
in-memory counters) and the mock upstream, whose usage the expected costs come from."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from modelway.accounting.tokens import openai_counter
from tests.integration.access_gateway import AdminClient, access_config, chat, start_gateway
from tests.integration.conftest import Mock
from tests.servers import Process

IN, OUT = Decimal("0.001"), Decimal("0.002")  # USD per token, as access_config prices them


def parse_sse(raw: bytes) -> list[str]:
    """The data of each SSE event, in order."""
    return [
        line.removeprefix("data: ")
        for line in raw.decode().splitlines()
        if line.startswith("data: ")
    ]


def cost(prompt: int, completion: int) -> Decimal:
    return prompt * IN + completion * OUT


@pytest.fixture(scope="module")
def gateway(upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    folder = tmp_path_factory.mktemp("limits")
    proc = start_gateway(folder, access_config(upstream.url, state_dir=str(folder / "state")))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def admin(gateway: Process) -> AdminClient:
    return AdminClient(gateway.url)


def test_requests_per_minute_per_key(gateway: Process, admin: AdminClient) -> None:
    key = admin.key(limits={"rpm": 3})["key"]
    answers = [chat(gateway.url, key) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    refused = answers[3]
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert "3 requests per minute" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_team_limit_is_shared_by_its_keys(gateway: Process, admin: AdminClient) -> None:
    admin.team("rpm-team", limits={"rpm": 2})
    first, second = (admin.key(team="rpm-team")["key"] for _ in range(2))
    assert chat(gateway.url, first).status_code == 200
    assert chat(gateway.url, second).status_code == 200
    refused = chat(gateway.url, first)
    assert refused.status_code == 429 and "team" in refused.json()["error"]["message"]


def test_concurrent_requests_per_key(gateway: Process, admin: AdminClient) -> None:
    import asyncio

    key = admin.key(limits={"max_parallel": 2})["key"]

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            body = {"model": "slowish", "messages": [{"role": "user", "content": "x"}]}
            sends = [
                client.post(
                    gateway.url + "/v1/chat/completions",
                    json={**body, "model": "mock-gpt"},
                    headers={"authorization": f"Bearer {key}", "x-modelway-timeout-ms": "5000"},
                )
                for _ in range(6)
            ]
            return [r.status_code for r in await asyncio.gather(*sends)]

    # The mock answers at once, so hold it for a moment to make the requests overlap.
    import httpx as _h

    mock_url = gateway_mock_url(gateway)
    _h.post(mock_url + "/_mock/config", json={"latency_ms": 300}).raise_for_status()
    try:
        codes = asyncio.run(burst())
    finally:
        _h.post(mock_url + "/_mock/config", json={"latency_ms": 0}).raise_for_status()
    assert codes.count(200) == 2 and codes.count(429) == 4


def gateway_mock_url(gateway: Process) -> str:
    config = (gateway.log_path.parent / "config.yaml").read_text()
    start = config.index("base_url: ") + len("base_url: ")
    return config[start : config.index("\n", start)].removesuffix("/v1")


def _usage_tokens(response: httpx.Response) -> int:
    usage = response.json()["usage"]
    return int(usage["prompt_tokens"] + usage["completion_tokens"])


@pytest.mark.parametrize("stream", [False, True])
def test_tokens_are_reserved_then_reconciled_with_real_usage(
    gateway: Process, admin: AdminClient, stream: bool
) -> None:
    key = admin.key(limits={"tpm": 10_000})["key"]
    first = _call(gateway, key, stream, max_tokens=200)
    reserved = 10_000 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert reserved >= 200  # the prompt's tokens plus max_tokens
    used = first_usage = _usage_of(first, stream)
    time.sleep(0.1)  # settling runs just after the answer
    second = _call(gateway, key, stream, max_tokens=200)
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    # The first request now counts with what it really used, the second with its reservation.
    assert remaining == 10_000 - used - reserved, (remaining, used, reserved, first_usage)


def _call(gateway: Process, key: str, stream: bool, **extra: Any) -> httpx.Response:
    if stream:
        extra["stream"] = True
        extra["stream_options"] = {"include_usage": True}
    response = chat(gateway.url, key, text="count these five words", **extra)
    assert response.status_code == 200, response.text
    return response


def _usage_of(response: httpx.Response, stream: bool) -> int:
    if not stream:
        return _usage_tokens(response)
    events = [e for e in parse_sse(response.content) if e != "[DONE]"]
    usage = orjson.loads(events[-1])["usage"]
    return int(usage["prompt_tokens"] + usage["completion_tokens"])


def test_an_oversized_token_request_is_refused(gateway: Process, admin: AdminClient) -> None:
    key = admin.key(limits={"tpm": 100})["key"]
    refused = chat(gateway.url, key, max_tokens=500)
    assert refused.status_code == 429
    assert "tokens" in refused.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_cost_matches_the_upstreams_usage(
    gateway: Process, admin: AdminClient, stream: bool
) -> None:
    key = admin.key(name=f"cost-{stream}")
    response = _call(gateway, key["key"], stream, max_tokens=50)
    events = [] if not stream else [e for e in parse_sse(response.content) if e != "[DONE]"]
    usage = orjson.loads(events[-1])["usage"] if stream else response.json()["usage"]
    expected = cost(usage["prompt_tokens"], usage["completion_tokens"])
    if not stream:
        assert Decimal(response.headers["x-modelway-cost-usd"]) == expected
    row = _spend_row(admin, key["id"])
    assert Decimal(row["cost_usd"]) == expected
    assert row["prompt_tokens"] == usage["prompt_tokens"]
    assert row["completion_tokens"] == usage["completion_tokens"]
    assert row["requests"] == 1


def test_spend_report_groups_and_csv(gateway: Process, admin: AdminClient) -> None:
    admin.team("report-team", tags={"project": "apollo"})
    key = admin.key(team="report-team", tags={"env": "prod"})
    for _ in range(3):
        assert chat(gateway.url, key["key"]).status_code == 200
    by_team = admin.ok("GET", "/admin/spend", params={"group_by": "team"})["data"]
    team_id = admin.ok("GET", "/admin/teams/report-team")["id"]
    assert next(r for r in by_team if r["group"] == team_id)["requests"] == 3
    by_tag = admin.ok("GET", "/admin/spend", params={"group_by": "tag", "tag": "project"})["data"]
    assert next(r for r in by_tag if r["group"] == "apollo")["requests"] == 3
    by_day = admin.ok("GET", "/admin/spend", params={"group_by": "day"})["data"]
    assert by_day[0]["group"] == time.strftime("%Y-%m-%d", time.gmtime())
    later = admin.ok("GET", "/admin/spend", params={"group_by": "key", "since": "2999-01-01"})
    assert later["data"] == [] and later["total_cost_usd"] == "0.000000000"
    csv = admin.http.get("/admin/spend", params={"group_by": "model", "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    header, *rows = csv.text.strip().splitlines()
    assert header == (
        "model,requests,prompt_tokens,completion_tokens,cached_tokens,cost_usd,cache_hits,saved_usd"
    )
    assert any(r.startswith("mock-gpt,") for r in rows)
    bad = admin.http.get("/admin/spend", params={"group_by": "colour"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"


def test_a_hard_budget_refuses_before_calling_the_provider(
    gateway: Process, admin: AdminClient
) -> None:
    key = admin.key(budgets=[{"limit_usd": 0.05, "period": "day"}])
    codes = []
    for _ in range(20):
        response = chat(gateway.url, key["key"], max_tokens=5)
        codes.append(response.status_code)
        if response.status_code == 429:
            break
    assert codes[0] == 200 and codes[-1] == 429
    error = response.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
    assert "per day" in error["message"]
    assert int(response.headers["retry-after"]) <= 86400
    spend = admin.ok("GET", "/admin/spend", params={"group_by": "key"})["data"]
    spent = Decimal(next(r for r in spend if r["group"] == key["id"])["cost_usd"])
    assert Decimal("0") < spent <= Decimal("0.05")


def test_a_hard_budget_ends_a_stream_with_an_error_event(
    gateway: Process, admin: AdminClient
) -> None:
    # long-gpt answers 600 tokens; with no max_tokens the stream reserves 256 at first
    # ($0.52 with the prompt) and must reserve 512 more ($1.02) past that: over $1.00.
    key = admin.key(budgets=[{"limit_usd": 1.0, "period": "month"}])
    body = {
        "model": "long-gpt",
        "messages": [{"role": "user", "content": "a long story please"}],
        "stream": True,
    }
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key['key']}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        raw = response.read()
    events = list(parse_sse(raw))
    assert "[DONE]" not in events
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "insufficient_quota"
    text = "".join(
        (c["choices"][0]["delta"].get("content") or "")
        for c in map(orjson.loads, events[:-1])
        if c.get("choices")
    )
    # Cut once the first 256 reserved tokens were used up, long before the 600.
    delivered = openai_counter().count(text)
    assert 230 < delivered < 600
    row = _spend_row(admin, key["id"])
    # The upstream sent no usage for the cut stream: its tokens were counted as they came
    # (the offline BPE splits some of the mock's words in two), and priced.
    assert row["completion_tokens"] >= delivered - 5  # counted chunk by chunk
    assert Decimal(row["cost_usd"]) == cost(row["prompt_tokens"], row["completion_tokens"])
    assert Decimal(row["cost_usd"]) <= Decimal("1.0")


def _spend_row(admin: AdminClient, key_id: str) -> dict[str, Any]:
    """The key's spend row; a stream's row is recorded as its generator closes, which
    may be just after the client read the last event."""
    deadline = time.monotonic() + 5
    while True:
        spend = admin.ok("GET", "/admin/spend", params={"group_by": "key"})["data"]
        for row in spend:
            if row["group"] == key_id:
                return dict(row)
        assert time.monotonic() < deadline, "no ledger row for the key"
        time.sleep(0.05)


def test_waiting_requests_are_shared_fairly_between_teams_and_by_priority(
    gateway: Process, admin: AdminClient
) -> None:
    import asyncio

    admin.team("noisy")
    admin.team("quiet")
    admin.team("urgent", priority=5)
    keys = {name: admin.key(team=name)["key"] for name in ("noisy", "quiet", "urgent")}
    arrivals = [("noisy", f"n{i}") for i in range(5)] + [("quiet", "q0"), ("quiet", "q1")]
    arrivals.append(("urgent", "u0"))
    finished: list[str] = []

    async def send(client: httpx.AsyncClient, team: str, name: str) -> None:
        body = {"model": "one-at-a-time", "messages": [{"role": "user", "content": name}]}
        headers = {"authorization": f"Bearer {keys[team]}"}
        response = await client.post(
            gateway.url + "/v1/chat/completions", json=body, headers=headers
        )
        assert response.status_code == 200, response.text
        finished.append(name)

    async def run() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            tasks = []
            for team, name in arrivals:
                tasks.append(asyncio.create_task(send(client, team, name)))
                await asyncio.sleep(0.01)  # arrive in this order
            await asyncio.gather(*tasks)

    asyncio.run(run())
    # n0 was running; the urgent team's priority goes first; then the quiet team's
    # requests take turns with the noisy team's instead of waiting behind all of them.
    assert finished == ["n0", "u0", "n1", "q0", "n2", "q1", "n3", "n4"]
