"""Budget periods against a gateway run in-process with a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelway.access.admin_models import KeyCreate
from modelway.api.server import build_app
from modelway.app import Runtime, build_runtime
from modelway.config import Config
from tests.integration.access_gateway import access_config
from tests.integration.conftest import Mock


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


async def _client(runtime: Runtime) -> httpx.AsyncClient:
    app = build_app(runtime, manage_runtime=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def _ask(client: httpx.AsyncClient, key: str) -> httpx.Response:
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    return await client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )


@pytest.fixture
async def started(upstream: Mock, tmp_path: Path) -> AsyncIterator[tuple[Config, Clock]]:
    raw: dict[str, Any] = access_config(upstream.url, state_dir=str(tmp_path))
    yield Config.model_validate(raw), Clock(datetime(2026, 12, 3, 23, 58, tzinfo=UTC))


async def test_a_daily_budget_is_spent_then_reset_at_midnight_and_survives_a_restart(
    started: tuple[Config, Clock],
) -> None:
    config, clock = started
    runtime = build_runtime(config, clock=clock)
    await runtime.start()
    try:
        made = await runtime.services.admin.create_key(
            "test", KeyCreate.model_validate({"budgets": [{"limit_usd": 0.05, "period": "day"}]})
        )
        client = await _client(runtime)
        codes = []
        for _ in range(20):
            codes.append((await _ask(client, made["key"])).status_code)
            # A refusal may count the last answer's reservation, settled just after it:
            # ask again once settling has run, so only real spend refuses.
            if codes[-1] == 429:
                await asyncio.sleep(0.05)
                codes.append((await _ask(client, made["key"])).status_code)
                if codes[-1] == 429:
                    break
        assert codes[0] == 200 and codes[-2:] == [429, 429], codes
    finally:
        await runtime.close()

    # A restart (same day): the spend comes back from the ledger, the budget stays spent.
    runtime = build_runtime(config, clock=clock)
    await runtime.start()
    try:
        client = await _client(runtime)
        again = await _ask(client, made["key"])
        assert again.status_code == 429
        assert again.json()["error"]["code"] == "insufficient_quota"
        assert 0 < int(again.headers["retry-after"]) <= 120  # minutes to midnight

        clock.set(datetime(2026, 12, 4, 0, 0, 1, tzinfo=UTC))
        assert (await _ask(client, made["key"])).status_code == 200
    finally:
        await runtime.close()
