"""Health endpoints and the one JSON log line per request."""

from __future__ import annotations

import httpx
import openai

from tests.integration.conftest import SECRETS
from tests.servers import Process


def test_live_and_ready(gateway: Process) -> None:
    live = httpx.get(gateway.url + "/health/live", headers={"x-request-id": "probe-1"})
    assert live.json() == {"status": "ok"} and live.headers["x-request-id"] == "probe-1"
    ready = httpx.get(gateway.url + "/health/ready")
    assert ready.headers["x-request-id"]
    # dead-gpt points at a closed port: the gateway is not ready, and says which group.
    assert ready.status_code == 503
    models = ready.json()["models"]
    assert models["dead-gpt"] is False
    assert models["mock-gpt"] is True and models["smollm2-135m-instruct"] is True


def test_one_log_line_per_request_with_the_fields(gateway: Process) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    secret_prompt = "my private prompt text 8472"
    client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": secret_prompt}],
        extra_headers={"x-request-id": "log-test-plain"},
    )
    list(
        client.chat.completions.create(
            model="mock-gpt",
            messages=[{"role": "user", "content": secret_prompt}],
            stream=True,
            extra_headers={"x-request-id": "log-test-stream"},
        )
    )
    plain = gateway.request_log("log-test-plain")
    streamed = gateway.request_log("log-test-stream")
    for line in (plain, streamed):
        assert line["level"] == "info" and line["status"] == 200
        assert line["model"] == "mock-gpt" and line["provider"] == "openai"
        assert line["deployment"] == "openai:upstream-gpt"
        assert line["prompt_tokens"] == 5 and line["completion_tokens"] == 5
        assert line["latency_ms"] >= line["upstream_ms"] > 0
        assert line["overhead_ms"] >= 0
        assert "timestamp" in line
    assert plain["stream"] is False and plain["ttft_ms"] is None
    assert streamed["stream"] is True and streamed["ttft_ms"] > 0


def test_failed_requests_are_logged_with_their_status(gateway: Process) -> None:
    httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-request-id": "log-test-404"},
    )
    line = gateway.request_log("log-test-404")
    assert line["status"] == 404 and line["error_type"] == "invalid_request_error"
    assert line["level"] == "warning"


def test_logs_hold_no_prompt_text_and_no_secret(gateway: Process) -> None:
    text = gateway.log_path.read_text()
    assert "my private prompt text 8472" not in text
    for secret in SECRETS:
        assert secret not in text


def test_requests_refused_before_routing_are_logged_too(gateway: Process) -> None:
    httpx.post(
        gateway.url + "/v1/chat/completions",
        content=b"{not json",
        headers={"x-request-id": "log-test-bad-json"},
    )
    line = gateway.request_log("log-test-bad-json")
    assert line["status"] == 400 and line["operation"] == "chat"
