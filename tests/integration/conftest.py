from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers import Process, free_port, running

SECRETS = ("sk-test-openai-secret", "sk-ant-test-secret", "azure-test-secret")


class Mock:
    """Controls for the mock upstream: scripting failures, reading what it received."""

    def __init__(self, url: str) -> None:
        self.url = url

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(self.url + "/_mock/stats").json()
        return data

    def reset(self) -> None:
        httpx.post(self.url + "/_mock/reset").raise_for_status()

    def last_request(self) -> dict[str, Any]:
        requests: list[dict[str, Any]] = self.stats()["last_requests"]
        return requests[-1]

    @contextlib.contextmanager
    def behaving(self, **options: Any) -> Iterator[None]:
        before = httpx.post(self.url + "/_mock/config", json={}).json()
        httpx.post(self.url + "/_mock/config", json=options).raise_for_status()
        try:
            yield
        finally:
            restore = {k: before[k] for k in options}
            httpx.post(self.url + "/_mock/config", json=restore).raise_for_status()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mock]:
    port = free_port()
    log = tmp_path_factory.mktemp("mock") / "mock.log"
    args = ["mock-upstream", "--port", str(port), "--seed", "7"]
    with running(args, log, port, "/health") as proc:
        yield Mock(proc.url)


# These groups test how each failure is reported, so they neither retry nor trip a breaker
# (tests/integration/test_routing.py covers both).
NO_RESILIENCE = {"retries": 0, "breaker": {"consecutive_failures": 0, "minimum_requests": 10**6}}


def gateway_config(mock_url: str) -> dict[str, Any]:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    config = {
        "server": {"max_body_bytes": 1024 * 1024, "health_cache_seconds": 0},
        "models": [
            {
                "name": "mock-gpt",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "upstream-gpt",
                        "base_url": f"{mock_url}/v1",
                        "api_key": "${TEST_OPENAI_KEY}",
                    }
                ],
            },
            {
                "name": "mock-claude",
                "deployments": [
                    {
                        "provider": "anthropic",
                        "model": "upstream-claude",
                        "base_url": mock_url,
                        "api_key": "sk-ant-test-secret",
                    }
                ],
            },
            {
                "name": "azure-gpt",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "gpt4o-deploy",
                        "base_url": f"{mock_url}/openai/deployments/gpt4o-deploy",
                        "api_key": "azure-test-secret",
                        "api_version": "2024-10-21",
                    }
                ],
            },
            {
                "name": "slow-gpt",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "slow",
                        "base_url": f"{mock_url}/v1",
                        "timeout_seconds": 1,
                    }
                ],
            },
            {
                "name": "dead-gpt",
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "x",
                        "base_url": dead,
                        "connect_timeout_seconds": 1,
                    }
                ],
            },
            {
                "name": "smollm2-135m-instruct",
                "deployments": [
                    {
                        "provider": "local",
                        "context_size": 512,
                    }
                ],
            },
        ],
    }
    for group in config["models"]:
        group["routing"] = NO_RESILIENCE
    return config


@pytest.fixture(scope="session")
def gateway(
    upstream: Mock,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_session: pytest.MonkeyPatch,
) -> Iterator[Process]:
    folder = tmp_path_factory.mktemp("gateway")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(gateway_config(upstream.url)))
    monkeypatch_session.setenv("TEST_OPENAI_KEY", "sk-test-openai-secret")
    port = free_port()
    args = ["serve", "--config", str(config), "--port", str(port)]
    with running(args, folder / "gateway.log", port, "/health/live") as proc:
        yield proc


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def gateway_log(gateway: Process) -> Path:
    return gateway.log_path
