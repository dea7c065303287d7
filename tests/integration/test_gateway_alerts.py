"""Built-in alerts on a running gateway: an error spike fires the webhook once and
resolves when the errors stop; a budget crossing 80% fires once; /admin/alerts lists them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.integration.access_gateway import MASTER, AdminClient, start_gateway
from tests.integration.conftest import Mock
from tests.integration.test_metrics import metrics_config


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield url, received
    finally:
        await runner.cleanup()


async def _until(check: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def _events(received: list[dict[str, Any]], key_prefix: str) -> list[tuple[str, str]]:
    return [
        (r["status"], r["alert"]["key"])
        for r in received
        if r["alert"]["key"].startswith(key_prefix)
    ]


async def test_error_spike_and_budget_alerts_reach_the_webhook(
    upstream: Mock, hook: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = hook
    config = metrics_config(upstream, tmp_path / "state")
    config["alerts"] = {
        "evaluate_seconds": 0.2,
        "cooldown_seconds": 0,
        "notifiers": [{"type": "webhook", "url": url}],
        "error_rate": {"window_seconds": 3, "baseline_seconds": 60, "min_requests": 5},
    }
    gateway = await asyncio.to_thread(start_gateway, tmp_path, config)
    admin = AdminClient(gateway.url)
    key = await asyncio.to_thread(
        admin.key, budgets=[{"limit_usd": 0.05, "period": "day", "mode": "soft"}]
    )
    headers = {"authorization": f"Bearer {key['key']}"}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            # m-fallback's only deployment answers 500: falling back to m-ok hides it from
            # clients, so drive the spike on a group without a fallback.
            for _ in range(8):
                failed = await client.post(
                    "/v1/chat/completions", json={**body, "model": "m-bad-request"}, headers=headers
                )
                assert failed.status_code == 400  # client errors: not the group's fault
            assert _events(received, "error_rate") == []
            for _ in range(8):
                down = await client.post(
                    "/v1/chat/completions", json={**body, "model": "m-down"}, headers=headers
                )
                assert down.status_code >= 500  # 502, then 503 once its circuit opens
            await _until(lambda: _events(received, "error_rate:m-down"))
            assert _events(received, "error_rate:m-down") == [("firing", "error_rate:m-down")]
            listed = (
                await client.get("/admin/alerts", headers={"authorization": f"Bearer {MASTER}"})
            ).json()
            assert "error_rate:m-down" in [a["key"] for a in listed["active"]]
            # Errors stop (no more traffic to the group): the alert resolves, once.
            deadline = time.monotonic() + 30
            while len(_events(received, "error_rate:m-down")) < 2:
                assert time.monotonic() < deadline, "never resolved"
                ok = await client.post(
                    "/v1/chat/completions", json={**body, "model": "m-ok"}, headers=headers
                )
                assert ok.status_code == 200
                await asyncio.sleep(0.2)
            assert _events(received, "error_rate:m-down") == [
                ("firing", "error_rate:m-down"),
                ("resolved", "error_rate:m-down"),
            ]
            # Spend past 80% of the soft budget: that threshold fires once.
            while not _events(received, f"budget:key:{key['id']}:day:80"):
                answer = await client.post(
                    "/v1/chat/completions", json={**body, "model": "m-ok"}, headers=headers
                )
                assert answer.status_code == 200  # a soft budget never refuses
                assert time.monotonic() < deadline + 60
            await asyncio.sleep(1.0)
            assert _events(received, f"budget:key:{key['id']}:day:80") == [
                ("firing", f"budget:key:{key['id']}:day:80")
            ]
    finally:
        await asyncio.to_thread(gateway.stop)
