"""Starting gateways with authentication on, and talking to their admin API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.servers import Process, free_port, start

MASTER = "mw-master-test-key-0123456789"


def access_config(mock_url: str, **top: Any) -> dict[str, Any]:
    def openai_group(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "routing": {"retries": 0},
            "deployments": [
                {
                    "provider": "openai",
                    "model": "upstream-gpt",
                    "base_url": f"{mock_url}/v1",
                    **extra,
                }
            ],
        }

    return {
        "auth": {"master_key": MASTER, "refresh_seconds": 0.25},
        # USD per million tokens: 1 token in costs $0.001, 1 token out $0.002.
        "accounting": {
            "prices": {"openai/upstream-gpt": {"input": 1000, "output": 2000}},
            "ledger_flush_seconds": 0.1,
        },
        "models": [
            openai_group("mock-gpt"),
            openai_group("mock-gpt-mini"),
            openai_group("long-gpt", headers={"x-mock-tokens": "600"}),
            # One request at a time, 300 ms each: the rest wait in the group's queue.
            openai_group("one-at-a-time", headers={"x-mock-latency-ms": "300"}, max_parallel=1),
        ],
        **top,
    }


def start_gateway(
    folder: Path, config: dict[str, Any], env: dict[str, str] | None = None
) -> Process:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    args = ["serve", "--config", str(path), "--port", str(port)]
    return start(args, folder / "gateway.log", port, "/health/live", env=env)


class AdminClient:
    def __init__(self, url: str, key: str = MASTER) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"authorization": f"Bearer {key}"}, timeout=30
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()

    def key(self, **body: Any) -> dict[str, Any]:
        created: dict[str, Any] = self.ok("POST", "/admin/keys", json=body)
        return created

    def team(self, name: str, **body: Any) -> dict[str, Any]:
        created: dict[str, Any] = self.ok("POST", "/admin/teams", json={"name": name, **body})
        return created


def chat(
    url: str, key: str | None, model: str = "mock-gpt", text: str = "hello there", **extra: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=30)
