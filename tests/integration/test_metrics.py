"""``/metrics`` after a scripted mix of traffic shows exactly what happened; the log
lines carry the same story; several processes sharing a metrics directory are one scrape."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.access_gateway import MASTER, AdminClient, chat, start_gateway
from tests.integration.conftest import Mock
from tests.servers import Process


def _deployment(mock: Mock, dep_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": dep_id,
        "provider": "openai",
        "model": "upstream-gpt",
        "base_url": f"{mock.url}/v1",
        **extra,
    }


def metrics_config(mock: Mock, state: Path) -> dict[str, Any]:
    failing = {"headers": {"x-mock-fail-status": "500"}}
    return {
        "state_dir": str(state),
        "auth": {"master_key": MASTER},
        "accounting": {"prices": {"openai/upstream-gpt": {"input": 1000, "output": 2000}}},
        # Only m-cached has a cache policy.
        "cache": {"default": None, "policies": {"exact": {}}, "models": {"m-cached": "exact"}},
        "models": [
            {"name": "m-ok", "deployments": [_deployment(mock, "ok")]},
            {"name": "m-cached", "deployments": [_deployment(mock, "cached")]},
            {
                "name": "m-bad-request",
                "routing": {"retries": 0},
                "deployments": [
                    _deployment(mock, "refuses", headers={"x-mock-fail-status": "400"})
                ],
            },
            {
                "name": "m-retry",
                "routing": {"strategy": "priority", "retries": 1, "backoff_initial_seconds": 0},
                "deployments": [
                    _deployment(mock, "flaky", priority=0, **failing),
                    _deployment(mock, "steady", priority=1),
                ],
            },
            {
                "name": "m-down",
                "routing": {"retries": 0},
                "deployments": [_deployment(mock, "broken", **failing)],
            },
            {
                "name": "m-fallback",
                "routing": {"retries": 0, "fallbacks": ["m-ok"]},
                "deployments": [_deployment(mock, "down", **failing)],
            },
        ],
    }


@pytest.fixture(scope="module")
def gateway(upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    folder = tmp_path_factory.mktemp("metrics")
    proc = start_gateway(folder, metrics_config(upstream, folder / "state"))
    try:
        yield proc
    finally:
        proc.stop()


def scrape(
    url: str, accept: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"accept": accept} if accept else {}
    response = httpx.get(url + "/metrics", headers=headers)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    total = 0.0
    for (sample_name, sample_labels), v in samples.items():
        if sample_name == name and set(labels.items()) <= set(sample_labels):
            total += v
    return total


def _stream(url: str, key: str, model: str) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "stream five words to me"}],
        "stream": True,
    }
    with httpx.stream(
        "POST", url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    ) as response:
        assert response.status_code == 200
        assert b"[DONE]" in response.read()


def test_metrics_count_exactly_what_the_traffic_did(gateway: Process) -> None:
    admin = AdminClient(gateway.url)
    key = admin.key(name="metrics")["key"]
    limited = admin.key(limits={"rpm": 1})["key"]
    for _ in range(3):
        assert chat(gateway.url, key, "m-ok").status_code == 200
    for _ in range(2):
        _stream(gateway.url, key, "m-ok")
    assert chat(gateway.url, key, "m-bad-request").status_code == 400
    retried = chat(gateway.url, key, "m-retry")
    assert retried.status_code == 200 and retried.headers["x-modelway-deployment"] == "steady"
    moved = chat(gateway.url, key, "m-fallback")
    assert moved.status_code == 200 and moved.headers["x-modelway-fallbacks"] == "m-fallback"
    assert [chat(gateway.url, limited, "m-ok").status_code for _ in range(2)] == [200, 429]
    cached = [chat(gateway.url, key, "m-cached", temperature=0) for _ in range(2)]
    assert [r.headers["x-modelway-cache"] for r in cached] == ["miss", "hit"]

    s = scrape(gateway.url)
    ok = {"model": "m-ok", "team": "default"}
    assert value(s, "modelway_requests_total", **ok, stream="false", status_class="2xx") == 4
    assert value(s, "modelway_requests_total", **ok, stream="true", status_class="2xx") == 2
    assert value(s, "modelway_requests_total", **ok, status_class="4xx") == 1
    assert value(s, "modelway_requests_total", model="m-bad-request", status_class="4xx") == 1
    assert value(s, "modelway_request_errors_total", error_type="invalid_request_error") == 1
    assert value(s, "modelway_request_errors_total", error_type="rate_limit_error") == 1
    assert value(s, "modelway_rate_limit_rejections_total", scope="key", limit="rpm") == 1
    assert value(s, "modelway_retries_total", model="m-retry") == 1
    assert value(s, "modelway_upstream_attempts_total", deployment="flaky", outcome="success") == 0
    assert value(s, "modelway_upstream_attempts_total", deployment="flaky") == 1
    assert value(s, "modelway_upstream_attempts_total", deployment="steady", outcome="success") == 1
    assert value(s, "modelway_fallbacks_total", model="m-fallback", fallback="m-ok") == 1
    # The second m-cached request came from the cache: one upstream call, a hit, a saving.
    assert value(s, "modelway_cache_lookups_total", model="m-cached", result="miss") == 1
    assert value(s, "modelway_cache_lookups_total", model="m-cached", result="hit") == 1
    assert value(s, "modelway_cache_lookups_total", model="m-ok") == 0  # no policy: no lookup
    assert value(s, "modelway_upstream_attempts_total", deployment="cached") == 1
    paid = value(s, "modelway_cost_usd_total", model="m-cached")
    assert value(s, "modelway_cache_saved_usd_total", model="m-cached") == pytest.approx(paid)
    # Histograms saw every answered request; streams alone have a time to first token.
    assert value(s, "modelway_request_duration_seconds_count", model="m-ok") == 7
    assert value(s, "modelway_time_to_first_token_seconds_count", model="m-ok") == 2
    assert value(s, "modelway_upstream_duration_seconds_count", deployment="ok") >= 6
    assert value(s, "modelway_gateway_overhead_seconds_count", model="m-ok") >= 6
    # Tokens and cost follow the mock's usage: 1 token in = $0.001, 1 token out = $0.002.
    tokens_in = value(s, "modelway_tokens_total", model="m-ok", type="input")
    tokens_out = value(s, "modelway_tokens_total", model="m-ok", type="output")
    assert tokens_in > 0 and tokens_out > 0
    cost = value(s, "modelway_cost_usd_total", model="m-ok", team="default")
    assert cost == pytest.approx(tokens_in * 0.001 + tokens_out * 0.002)
    # No key ids in any label.
    assert all("key_" not in str(labels) for _, labels in s)
    assert value(s, "process_resident_memory_bytes") > 0


def test_openmetrics_on_request(gateway: Process) -> None:
    response = httpx.get(
        gateway.url + "/metrics", headers={"accept": "application/openmetrics-text"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_state_gauges_are_sampled(gateway: Process) -> None:
    s = scrape(gateway.url)
    assert ("modelway_circuit_breaker_state", (("deployment", "ok"), ("model", "m-ok"))) in s
    assert value(s, "modelway_deployment_in_flight_requests", deployment="ok") == 0


def test_request_log_lines_carry_the_story(gateway: Process) -> None:
    admin = AdminClient(gateway.url)
    key = admin.key(name="logged")
    moved = chat(gateway.url, key["key"], "m-fallback")
    line = gateway.request_log(moved.headers["x-request-id"])
    assert line["key_id"] == key["id"] and line["team_id"] == "default"
    assert line["fallbacks"] == ["m-fallback"] and line["attempts"] == 2
    assert line["cost_usd"] > 0
    refused = chat(gateway.url, key["key"], "m-bad-request")
    error_line = gateway.request_log(refused.headers["x-request-id"])
    assert error_line["upstream_status"] == 400 and error_line["error"]
    for expected in ("miss", "hit"):
        answered = chat(gateway.url, key["key"], "m-cached", "log me", temperature=0)
        cache_line = gateway.request_log(answered.headers["x-request-id"])
        assert cache_line["cache"] == expected
    assert cache_line["saved_usd"] > 0 and "cost_usd" in cache_line
    for raw in gateway.log_path.read_bytes().splitlines():
        if raw.startswith(b"{"):
            orjson.loads(raw)  # every JSON line parses
    assert MASTER not in gateway.log_path.read_text()


def test_several_processes_are_one_scrape(upstream: Mock, tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    config = metrics_config(upstream, tmp_path / "state")
    first = start_gateway(tmp_path / "a", config, env=env)
    second = start_gateway(tmp_path / "b", config, env=env)
    try:
        for proc, n in ((first, 2), (second, 3)):
            for _ in range(n):
                assert chat(proc.url, MASTER, "m-ok").status_code == 200
        for proc in (first, second):
            s = scrape(proc.url)
            assert value(s, "modelway_requests_total", model="m-ok", status_class="2xx") == 5
    finally:
        first.stop()
        second.stop()
