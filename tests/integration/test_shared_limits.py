"""Several gateway processes sharing one Redis behave as one gateway; and what happens
when Redis is away (limits fail open, budgets fail closed, by default)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.integration.access_gateway import (
    MASTER,
    AdminClient,
    access_config,
    chat,
    start_gateway,
)
from tests.integration.conftest import Mock
from tests.servers import Process
from tests.services import redis_url


@pytest.fixture(scope="module")
def replicas(upstream: Mock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Process]]:
    folder = tmp_path_factory.mktemp("replicas")
    config = access_config(upstream.url, state_dir=str(folder / "shared"), redis_url=redis_url())
    # A provider account allowing 5 requests a minute, whoever sends them.
    config["models"].append(
        {
            "name": "quota-gpt",
            "routing": {"retries": 0, "queue_timeout_seconds": 0.3},
            "deployments": [
                {
                    "id": f"quota-{secrets.token_hex(4)}",  # Redis outlives this run
                    "provider": "openai",
                    "model": "upstream-gpt",
                    "base_url": f"{upstream.url}/v1",
                    "rpm": 5,
                }
            ],
        }
    )
    procs = [start_gateway(folder / name, config) for name in ("a", "b")]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def _known_everywhere() -> None:
    """A key made on one replica reaches the other at its next key refresh (0.25 s here);
    asking before then would spend the key's quota on 401s."""
    time.sleep(1.0)


async def _spray(urls: list[str], key: str, n: int, model: str = "mock-gpt") -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        sends = [
            client.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
            )
            for i in range(n)
        ]
        return [r.status_code for r in await asyncio.gather(*sends)]


def test_two_processes_let_exactly_60_requests_per_minute_through(
    replicas: list[Process],
) -> None:
    key = AdminClient(replicas[0].url).key(limits={"rpm": 60})["key"]
    _known_everywhere()
    codes = asyncio.run(_spray([p.url for p in replicas], key, 100))
    assert codes.count(200) == 60 and codes.count(429) == 40


def test_a_deployments_quota_holds_across_processes(replicas: list[Process]) -> None:
    # The quota's window is keyed by the deployment id, the same in every replica.
    codes = asyncio.run(_spray([p.url for p in replicas], MASTER, 12, model="quota-gpt"))
    assert codes.count(200) == 5 and codes.count(429) == 7


def test_a_team_budget_holds_across_processes(replicas: list[Process]) -> None:
    admin = AdminClient(replicas[0].url)
    admin.team("shared-budget", budgets=[{"limit_usd": 0.2, "period": "day"}])
    keys = [admin.key(team="shared-budget")["key"] for _ in range(2)]
    _known_everywhere()
    codes = []
    for i in range(60):
        codes.append(chat(replicas[i % 2].url, keys[i % 2], max_tokens=5).status_code)
        if codes[-3:] == [429, 429, 429]:
            break
    assert 429 in codes
    team_id = admin.ok("GET", "/admin/teams/shared-budget")["id"]
    time.sleep(0.5)  # the other replica writes its ledger rows within its flush interval
    spend = admin.ok("GET", "/admin/spend", params={"group_by": "team"})["data"]
    spent = Decimal(next(r for r in spend if r["group"] == team_id)["cost_usd"])
    assert Decimal(0) < spent <= Decimal("0.2")


def test_without_redis_limits_fail_open_and_budgets_fail_closed(
    upstream: Mock, tmp_path: Path
) -> None:
    config = access_config(
        upstream.url, state_dir=str(tmp_path / "state"), redis_url="redis://127.0.0.1:1/0"
    )
    proc = start_gateway(tmp_path, config)
    try:
        admin = AdminClient(proc.url)
        limited = admin.key(limits={"rpm": 1})["key"]
        assert [chat(proc.url, limited).status_code for _ in range(3)] == [200, 200, 200]
        budgeted = admin.key(budgets=[{"limit_usd": 10}])["key"]
        refused = chat(proc.url, budgeted)
        assert refused.status_code == 503
        assert "budgets cannot be checked" in refused.json()["error"]["message"]
        log = proc.log_path.read_text()
        assert "counters_unavailable" in log
    finally:
        proc.stop()
