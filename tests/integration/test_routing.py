"""Retries, fallbacks, timeouts and circuit breakers against several faulty mock upstreams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.integration.conftest import Mock
from tests.servers import Process, free_port, running

MOCKS = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def mocks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Mock]]:
    folder = tmp_path_factory.mktemp("mocks")
    with contextlib.ExitStack() as stack:
        found = {}
        for name in MOCKS:
            port = free_port()
            args = ["mock-upstream", "--port", str(port), "--seed", str(ord(name))]
            proc = stack.enter_context(running(args, folder / f"{name}.log", port, "/health"))
            found[name] = Mock(proc.url)
        yield found


def deployment(mock: Mock, name: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "id": name, "model": "m", "base_url": f"{mock.url}/v1", **extra}


@pytest.fixture(scope="module")
def gateway(mocks: dict[str, Mock], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    a, b, c, d = (mocks[n] for n in MOCKS)
    fast_breaker = {"consecutive_failures": 3, "cooldown_seconds": 1.5, "minimum_requests": 100}
    config = {
        "models": [
            {
                "name": "chaos",
                "routing": {"retries": 4, "backoff_initial_seconds": 0.01},
                "deployments": [deployment(a, "a"), deployment(b, "b"), deployment(c, "c")],
            },
            {
                "name": "hangs",
                "routing": {"retries": 2, "strategy": "priority"},
                "deployments": [
                    deployment(d, "d", timeout_seconds=0.5, priority=0),
                    deployment(c, "c2", priority=1),
                ],
            },
            {
                "name": "breaks",
                "routing": {"retries": 1, "strategy": "priority", "breaker": fast_breaker},
                "deployments": [deployment(d, "d2", priority=0), deployment(c, "c3", priority=1)],
            },
            {
                "name": "primary",
                "routing": {"retries": 1, "fallbacks": ["backup"], "backoff_initial_seconds": 0.01},
                "deployments": [deployment(d, "d3")],
            },
            {"name": "backup", "deployments": [deployment(c, "c4")]},
            {
                "name": "lonely",
                "routing": {"retries": 2, "backoff_initial_seconds": 0.01},
                "deployments": [deployment(d, "d4")],
            },
            {
                "name": "mixed",
                "routing": {
                    "retries": 3,
                    "fallbacks": ["external-only"],
                    "backoff_initial_seconds": 0.01,
                },
                "deployments": [
                    deployment(a, "ext", tags=["external"], weight=9),
                    deployment(d, "priv", tags=["private"]),
                ],
            },
            {"name": "external-only", "deployments": [deployment(b, "ext2", tags=["external"])]},
            {
                "name": "narrow",
                "routing": {"retries": 0, "queue_size": 2, "queue_timeout_seconds": 10},
                "deployments": [deployment(c, "c5", max_parallel=1)],
            },
            {
                "name": "canary",
                "routing": {"affinity": True},
                "deployments": [
                    deployment(a, "stable", weight=95),
                    deployment(b, "canary", weight=5),
                ],
            },
            {
                "name": "first-token",
                "routing": {"retries": 1, "strategy": "priority"},
                "deployments": [
                    deployment(d, "slow-start", first_token_timeout_seconds=0.5, priority=0),
                    deployment(c, "quick", priority=1),
                ],
            },
            {
                "name": "shadowed",
                "deployments": [
                    deployment(c, "live"),
                    deployment(b, "shadow-ext", shadow=True, tags=["external"]),
                ],
            },
            {
                "name": "probed",
                "routing": {
                    "strategy": "priority",
                    "breaker": {"consecutive_failures": 2, "cooldown_seconds": 60},
                },
                "deployments": [
                    {
                        "provider": "openai",
                        "id": "gone",
                        "model": "m",
                        "priority": 0,
                        "base_url": f"http://127.0.0.1:{free_port()}/v1",
                        "health_check_seconds": 0.2,
                    },
                    deployment(c, "present", priority=1),
                ],
            },
            {
                "name": "guarded",
                "routing": {
                    "retries": 2,
                    "backoff_initial_seconds": 0.01,
                    "rollout_guard": {"minimum_requests": 10, "error_rate_margin": 0.2},
                    "breaker": {"consecutive_failures": 0, "minimum_requests": 10**6},
                },
                "deployments": [
                    deployment(c, "v1"),
                    deployment(a, "v2-canary", canary=True),
                ],
            },
            {
                "name": "sticky",
                "routing": {"affinity": True},
                "deployments": [deployment(a, "r1"), deployment(b, "r2"), deployment(c, "r3")],
            },
            {
                "name": "quota",
                "routing": {"retries": 0, "queue_timeout_seconds": 0.3},
                "deployments": [deployment(c, "c6", rpm=2)],
            },
        ],
    }
    folder = tmp_path_factory.mktemp("routing")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    with running(
        ["serve", "--config", str(path), "--port", str(port)],
        folder / "gateway.log",
        port,
        "/health/live",
    ) as proc:
        yield proc


@pytest.fixture(autouse=True)
def healthy(mocks: dict[str, Mock]) -> Iterator[None]:
    for mock in mocks.values():
        mock.reset()
    yield
    for mock in mocks.values():
        httpx.post(
            mock.url + "/_mock/config",
            json={"fail_rate": 0.0, "fail_mode": "status", "latency_ms": 0.0, "ttft_ms": 0.0},
        )


def configure(mock: Mock, **options: Any) -> None:
    httpx.post(mock.url + "/_mock/config", json=options).raise_for_status()


def served(mock: Mock) -> int:
    return int(mock.stats()["requests_total"])


def ask(gateway: Process, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}], **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=60)


def test_every_request_succeeds_while_two_of_three_deployments_fail_often(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    async def burst(n: int) -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key="x", max_retries=0
        ) as client:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="chaos", messages=[{"role": "user", "content": f"hello {i}"}]
                    )
                    for i in range(n)
                )
            )
        return [r.choices[0].message.content or "" for r in replies]

    phases = [
        ({"fail_rate": 0.3, "fail_status": 500}, {"fail_rate": 0.3, "fail_mode": "reset"}),
        ({"fail_rate": 0.3, "fail_status": 429}, {"fail_rate": 0.3, "fail_status": 503}),
    ]
    answers: list[str] = []
    for options_a, options_b in phases:
        configure(mocks["a"], **options_a)
        configure(mocks["b"], **options_b)
        for _ in range(3):
            answers += asyncio.run(burst(50))
    assert len(answers) == 300
    assert all(text.startswith("hello ") for text in answers)
    injected = sum(mocks[n].stats()["failures_injected"] for n in ("a", "b"))
    assert injected > 30  # the faults really happened, and were absorbed


def test_a_hanging_deployment_is_timed_out_and_bypassed(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_mode="hang")
    for _ in range(3):
        resp = ask(gateway, "hangs")
        assert resp.status_code == 200
        assert resp.headers["x-modelway-deployment"] == "c2"
    assert served(mocks["d"]) >= 1


def test_the_breaker_keeps_traffic_off_a_failing_deployment_until_half_open(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_status=500)
    for _ in range(10):
        assert ask(gateway, "breaks").status_code == 200
    opened_after = served(mocks["d"])
    assert opened_after == 3  # three consecutive failures open it; nothing more reached it
    for _ in range(10):
        resp = ask(gateway, "breaks")
        assert resp.status_code == 200 and resp.headers["x-modelway-deployment"] == "c3"
    assert served(mocks["d"]) == opened_after
    time.sleep(1.7)  # past the cool-down: one probe is let through, fails, and it re-opens
    assert ask(gateway, "breaks").status_code == 200
    assert served(mocks["d"]) == opened_after + 1
    configure(mocks["d"], fail_rate=0.0)
    time.sleep(3.2)  # the cool-down doubled after the failed probe
    for _ in range(4):
        ask(gateway, "breaks")
    assert served(mocks["d"]) > opened_after + 1  # probes succeeded: it is back in use


def test_fallback_group_serves_when_the_primary_fails(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_status=503)
    resp = ask(gateway, "primary")
    assert resp.status_code == 200
    assert resp.headers["x-modelway-fallbacks"] == "primary"
    assert resp.headers["x-modelway-deployment"] == "c4"
    assert served(mocks["d"]) == 2  # the first attempt and one retry


def test_a_stream_falls_back_before_its_first_byte(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_status=500)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="primary", messages=[{"role": "user", "content": "stream me"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "stream me"


def test_no_retry_for_a_request_the_upstream_refused(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_status=400)
    resp = ask(gateway, "lonely")
    assert resp.status_code == 400
    assert served(mocks["d"]) == 1


def test_retries_the_only_deployment_then_gives_up(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_status=502)
    resp = ask(gateway, "lonely")
    assert resp.status_code == 502
    assert served(mocks["d"]) == 3


def test_request_deadline_header(gateway: Process, mocks: dict[str, Mock]) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_mode="hang")
    started = time.monotonic()
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        timeout=30,
        json={"model": "lonely", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-modelway-timeout-ms": "300"},
    )
    assert resp.status_code == 504
    assert time.monotonic() - started < 10
    bad = httpx.post(
        gateway.url + "/v1/chat/completions",
        timeout=30,
        json={"model": "lonely", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-modelway-timeout-ms": "soon"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-modelway-timeout-ms"


CONFIDENTIAL = {"x-modelway-data-class": "confidential"}


def test_confidential_requests_only_reach_private_deployments(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    for _ in range(10):
        resp = httpx.post(
            gateway.url + "/v1/chat/completions",
            headers=CONFIDENTIAL,
            timeout=30,
            json={"model": "mixed", "messages": [{"role": "user", "content": "secret"}]},
        )
        assert resp.status_code == 200 and resp.headers["x-modelway-deployment"] == "priv"
    assert served(mocks["a"]) == 0 and served(mocks["b"]) == 0
    # Public traffic may use either (the external one has 9x the weight).
    for _ in range(10):
        ask(gateway, "mixed")
    assert served(mocks["a"]) > 0


@pytest.mark.parametrize(
    "fault",
    [{"fail_status": 503}, {"fail_status": 429}, {"fail_mode": "reset"}, {"fail_mode": "hang"}],
)
def test_confidential_requests_never_leave_when_the_private_side_fails(
    gateway: Process, mocks: dict[str, Mock], fault: dict[str, Any]
) -> None:
    configure(mocks["d"], fail_rate=1.0, **fault)
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        timeout=30,
        headers={**CONFIDENTIAL, "x-modelway-timeout-ms": "1500"},
        json={
            "model": "mixed",
            "messages": [{"role": "user", "content": "secret"}],
            "stream": fault.get("fail_mode") == "reset",
        },
    )
    assert resp.status_code in (429, 502, 503, 504)
    assert served(mocks["a"]) == 0 and served(mocks["b"]) == 0


def test_unknown_data_class_is_400(gateway: Process) -> None:
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"x-modelway-data-class": "secretish"},
        json={"model": "mixed", "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    )
    assert resp.status_code == 400


def test_readiness_is_false_while_a_groups_only_deployment_is_open(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], fail_rate=1.0, fail_status=500)
    for _ in range(4):  # three attempts per request: the breaker opens on the fifth failure
        ask(gateway, "lonely")
    ready = httpx.get(gateway.url + "/health/ready").json()
    assert ready["models"]["lonely"] is False
    assert ready["models"]["chaos"] is True


async def _post_all(
    gateway: Process, bodies: list[tuple[dict[str, Any], dict[str, str]]], gap: float = 0.0
) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        tasks = []
        for body, headers in bodies:
            tasks.append(
                asyncio.create_task(http.post("/v1/chat/completions", json=body, headers=headers))
            )
            await asyncio.sleep(gap)
        return list(await asyncio.gather(*tasks))


def _chat(model: str, text: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def test_requests_wait_for_a_deployment_at_its_limit_and_overflow_is_429(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["c"], latency_ms=300)
    bodies = [(_chat("narrow", f"n{i}"), {}) for i in range(5)]
    statuses = sorted(r.status_code for r in asyncio.run(_post_all(gateway, bodies)))
    assert statuses == [200, 200, 200, 429, 429]  # one running, two queued, two refused


def test_the_queue_serves_higher_priority_first(gateway: Process, mocks: dict[str, Mock]) -> None:
    configure(mocks["c"], latency_ms=300)
    bodies = [
        (_chat("narrow", "first"), {}),
        (_chat("narrow", "low"), {"x-modelway-priority": "0"}),
        (_chat("narrow", "high"), {"x-modelway-priority": "10"}),
    ]
    responses = asyncio.run(_post_all(gateway, bodies, gap=0.05))
    assert [r.status_code for r in responses] == [200, 200, 200]
    order = [r["body"]["messages"][0]["content"] for r in mocks["c"].stats()["last_requests"]]
    assert order[-3:] == ["first", "high", "low"]


def test_requests_per_minute_quota_holds(gateway: Process, mocks: dict[str, Mock]) -> None:
    assert ask(gateway, "quota").status_code == 200
    assert ask(gateway, "quota").status_code == 200
    third = ask(gateway, "quota")
    assert third.status_code == 429
    assert int(third.headers["retry-after"]) >= 50  # until the one-minute window frees
    assert served(mocks["c"]) == 2


def test_canary_split_holds_its_weights_and_is_sticky_per_user(gateway: Process) -> None:
    async def run() -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
            sem = asyncio.Semaphore(32)

            async def one(user: str) -> None:
                async with sem:
                    body = {**_chat("canary", "hi"), "user": user}
                    resp = await http.post("/v1/chat/completions", json=body)
                    seen.setdefault(user, []).append(resp.headers["x-modelway-deployment"])

            users = [f"user-{i}" for i in range(1000)]
            await asyncio.gather(*(one(u) for u in users + users[:100] + users[:100]))
        return seen

    seen = asyncio.run(run())
    on_canary = sum(1 for picks in seen.values() if picks[0] == "canary")
    assert 30 <= on_canary <= 75  # 5% of 1000 users, within statistical tolerance
    assert all(len(set(picks)) == 1 for picks in seen.values())  # each user sees one version


def test_a_stream_without_a_first_token_in_time_moves_on(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["d"], ttft_ms=3000)
    body = {**_chat("first-token", "quick please"), "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["x-modelway-deployment"] == "quick"
        assert any("quick" in line for line in resp.iter_lines())


def test_shadow_gets_a_copy_and_the_client_never_waits_for_it(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["b"], latency_ms=500)
    started = time.monotonic()
    for _ in range(4):
        resp = ask(gateway, "shadowed")
        assert resp.status_code == 200 and resp.headers["x-modelway-deployment"] == "live"
    assert time.monotonic() - started < 1.5  # four shadow calls of 0.5 s were not awaited
    for _ in range(50):
        if served(mocks["b"]) == 4:
            break
        time.sleep(0.1)
    assert served(mocks["b"]) == 4
    assert mocks["b"].last_request()["body"].get("stream") in (None, False)
    lines: list[dict[str, Any]] = []
    for _ in range(50):  # each shadow answer takes 0.5 s, and logs are flushed every 0.2 s
        lines = [line for line in gateway.log_lines() if line.get("event") == "shadow"]
        if len(lines) >= 4:
            break
        time.sleep(0.1)
    assert len(lines) == 4
    assert {line["deployment"] for line in lines} == {"shadow-ext"}
    assert {line["status"] for line in lines} == {200}


def test_confidential_requests_are_not_copied_to_an_external_shadow(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers=CONFIDENTIAL,
        timeout=30,
        json={"model": "shadowed", "messages": [{"role": "user", "content": "secret"}]},
    )
    # The group has no private deployment, so the request is refused, and nothing leaks.
    assert resp.status_code == 503
    time.sleep(0.3)
    assert served(mocks["b"]) == 0


def test_background_probes_take_a_dead_deployment_out_before_traffic_does(
    gateway: Process,
) -> None:
    for _ in range(40):  # the probes run every 0.2 s; two failures open the circuit
        if httpx.get(gateway.url + "/health/ready").json()["models"]["probed"] is True:
            break
        time.sleep(0.1)
    logs = [line for line in gateway.log_lines() if line.get("event") == "circuit_breaker"]
    assert any(line["deployment"] == "gone" and line["new"] == "open" for line in logs)
    resp = ask(gateway, "probed")
    assert resp.status_code == 200 and resp.headers["x-modelway-deployment"] == "present"


def test_rollout_guard_holds_back_a_canary_that_fails_more(
    gateway: Process, mocks: dict[str, Mock]
) -> None:
    configure(mocks["a"], fail_rate=0.6, fail_status=500)
    for _ in range(60):
        assert ask(gateway, "guarded").status_code == 200  # retries hide the canary's faults
        if served(mocks["a"]) >= 14:
            break
    held_at = served(mocks["a"])
    for _ in range(30):
        resp = ask(gateway, "guarded")
        assert resp.status_code == 200 and resp.headers["x-modelway-deployment"] == "v1"
    assert served(mocks["a"]) == held_at
    for _ in range(30):
        events = [line for line in gateway.log_lines() if line.get("event") == "rollout_guard"]
        if events:
            break
        time.sleep(0.1)
    assert events[0]["deployment"] == "v2-canary"
    assert events[0]["reason"].startswith("failure rate")


def test_requests_sharing_a_long_prompt_prefix_stay_on_one_replica(gateway: Process) -> None:
    system = "You answer questions about the shipping manual below. " + "Manual text. " * 200
    picked = set()
    for question in ("Where is my parcel?", "How are returns handled?", "What is express?"):
        resp = httpx.post(
            gateway.url + "/v1/chat/completions",
            timeout=30,
            json={
                "model": "sticky",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": question},
                ],
            },
        )
        picked.add(resp.headers["x-modelway-deployment"])
    assert len(picked) == 1


def test_queue_wait_is_in_the_request_log(gateway: Process, mocks: dict[str, Mock]) -> None:
    configure(mocks["c"], latency_ms=300)
    bodies = [
        (_chat("narrow", "w1"), {"x-request-id": "queue-a"}),
        (_chat("narrow", "w2"), {"x-request-id": "queue-b"}),
    ]
    asyncio.run(_post_all(gateway, bodies, gap=0.05))
    assert gateway.request_log("queue-b")["queue_ms"] > 100
