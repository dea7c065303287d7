"""Upstream failures reach the client as OpenAI-shaped errors with the matching status."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from tests.integration.conftest import Mock
from tests.servers import Process


@pytest.fixture
def client(gateway: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def ask(gateway: Process, model: str = "mock-gpt", **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    return httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize(
    ("upstream_status", "client_status", "error_type"),
    [
        (429, 429, "rate_limit_error"),
        (500, 502, "upstream_error"),
        (503, 503, "service_unavailable"),
        (400, 400, "invalid_request_error"),
        (401, 401, "authentication_error"),
    ],
)
@pytest.mark.parametrize("model", ["mock-gpt", "mock-claude"])
def test_upstream_status_is_mapped(
    gateway: Process,
    upstream: Mock,
    model: str,
    upstream_status: int,
    client_status: int,
    error_type: str,
) -> None:
    with upstream.behaving(fail_rate=1.0, fail_status=upstream_status, fail_mode="status"):
        resp = ask(gateway, model)
    assert resp.status_code == client_status
    error = resp.json()["error"]
    assert error["type"] == error_type
    assert set(error) == {"message", "type", "param", "code"}
    assert resp.headers["x-request-id"]
    assert resp.headers["x-modelway-deployment"] in (
        "openai:upstream-gpt",
        "anthropic:upstream-claude",
    )
    if upstream_status == 429:
        assert resp.headers["retry-after"] == "1"
    assert "secret" not in resp.text


def test_anthropic_overloaded_is_503(gateway: Process, upstream: Mock) -> None:
    with upstream.behaving(fail_rate=1.0, fail_status=529, fail_mode="status"):
        resp = ask(gateway, "mock-claude")
    assert resp.status_code == 503
    assert resp.json()["error"]["type"] == "service_unavailable"


def test_connection_reset_is_502(gateway: Process, upstream: Mock) -> None:
    with upstream.behaving(fail_rate=1.0, fail_mode="reset"):
        resp = ask(gateway)
    assert resp.status_code == 502
    assert "connection closed" in resp.json()["error"]["message"]


def test_hanging_upstream_times_out_with_504(gateway: Process, upstream: Mock) -> None:
    with upstream.behaving(fail_rate=1.0, fail_mode="hang"):
        resp = ask(gateway, "slow-gpt")
    assert resp.status_code == 504
    assert resp.json()["error"]["type"] == "timeout"


def test_unreachable_upstream_is_503(gateway: Process) -> None:
    resp = ask(gateway, "dead-gpt")
    assert resp.status_code == 503
    assert "cannot connect" in resp.json()["error"]["message"]


def test_refused_stream_gets_a_status_not_a_broken_stream(gateway: Process, upstream: Mock) -> None:
    with upstream.behaving(fail_rate=1.0, fail_status=429, fail_mode="status"):
        resp = ask(gateway, stream=True)
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("model", ["mock-gpt", "mock-claude"])
def test_stream_cut_midway_ends_with_an_error_and_no_done(
    gateway: Process, upstream: Mock, model: str
) -> None:
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": "a b c d e f g h i j k l"}],
    }
    with (
        upstream.behaving(fail_rate=1.0, fail_mode="cut"),
        httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=30) as resp,
    ):
        assert resp.status_code == 200
        frames = [line.removeprefix("data: ") for line in resp.iter_lines() if line]
    assert "[DONE]" not in frames
    last = orjson.loads(frames[-1])
    assert last["error"]["type"] == "upstream_error"
    assert any(orjson.loads(f).get("choices") for f in frames[:-1])


def test_client_disconnect_mid_stream_cancels_cleanly(
    gateway: Process, upstream: Mock, client: openai.OpenAI
) -> None:
    body = {"model": "mock-gpt", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    headers = {"x-request-id": "disconnect-test-1"}
    with upstream.behaving(reply="lorem", lorem_tokens=200, tokens_per_second=20):
        with httpx.stream(
            "POST", gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
        ) as resp:
            lines = resp.iter_lines()
            got = [next(lines) for _ in range(3)]
        assert got[0].startswith("data: ")
        line = gateway.request_log("disconnect-test-1")
    assert line["status"] == 499 and line["error_type"] == "client_closed"
    # The server goes on serving.
    reply = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "still here"}]
    )
    assert reply.choices[0].message.content == "still here"
