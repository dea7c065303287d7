"""Nothing is lost: 10,000 requests while PostgreSQL is cut off for part of the run,
and every one of them has its ledger row afterwards."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

from tests.integration.access_gateway import AdminClient, access_config, chat, start_gateway
from tests.integration.conftest import Mock
from tests.services import TcpProxy, scratch_database

TOTAL = 10_000
CONCURRENCY = 32


async def _drive(url: str, key: str, proxy: TcpProxy) -> tuple[list[str], int]:
    ids: list[str] = []
    failures = 0
    sent = 0
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            nonlocal sent, failures
            while sent < TOTAL:
                sent += 1
                if sent == 3_000:
                    proxy.cut()  # the database goes away mid-run...
                elif sent == 7_000:
                    proxy.restore()  # ...and comes back
                rid = f"outage-{sent}"
                try:
                    response = await client.post(
                        "/v1/chat/completions", json=body, headers={**headers, "x-request-id": rid}
                    )
                except httpx.TransportError:
                    # The client's own connection broke (not the database): send it again.
                    response = await client.post(
                        "/v1/chat/completions", json=body, headers={**headers, "x-request-id": rid}
                    )
                if response.status_code == 200:
                    ids.append(rid)
                else:
                    failures += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return ids, failures


async def _ledger_ids(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT request_id FROM ledger")
    finally:
        await conn.close()
    return {r["request_id"] for r in rows}


def test_every_request_has_its_ledger_row_after_a_database_outage(
    upstream: Mock, tmp_path: Path
) -> None:
    with scratch_database() as direct_url:
        parts = urlsplit(direct_url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        via_proxy = direct_url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{proxy.port}")
        config = access_config(
            upstream.url, state_dir=str(tmp_path / "state"), database_url=via_proxy
        )
        config["accounting"]["ledger_flush_seconds"] = 0.2
        gateway = start_gateway(tmp_path, config)
        try:
            key = AdminClient(gateway.url).key(name="load")["key"]
            ids, failures = asyncio.run(_drive(gateway.url, key, proxy))
            # Requests kept flowing while the database was away.
            assert failures == 0 and len(ids) == TOTAL
            deadline = time.monotonic() + 60
            while (stored := asyncio.run(_ledger_ids(direct_url))) != set(ids):
                assert time.monotonic() < deadline, f"{len(set(ids) - stored)} rows missing"
                time.sleep(0.5)
            log = gateway.log_path.read_text()
            assert "spool" in log  # the outage was real: rows went to the local spool
        finally:
            gateway.stop()
            proxy.close()
        assert asyncio.run(_ledger_ids(direct_url)) == set(ids)


def test_sigterm_writes_every_buffered_row_before_exiting(upstream: Mock, tmp_path: Path) -> None:
    config = access_config(upstream.url, state_dir=str(tmp_path / "state"))
    config["accounting"]["ledger_flush_seconds"] = 600  # rows stay buffered until shutdown
    gateway = start_gateway(tmp_path, config)
    try:
        key = AdminClient(gateway.url).key(name="shutdown")["key"]
        ids = [chat(gateway.url, key).headers["x-request-id"] for _ in range(25)]
    finally:
        gateway.popen.send_signal(signal.SIGTERM)
        assert gateway.popen.wait(timeout=30) == 0
    db = sqlite3.connect(tmp_path / "state" / "modelway.db")
    stored = {row[0] for row in db.execute("SELECT request_id FROM ledger")}
    db.close()
    assert set(ids) <= stored
    log = gateway.log_path.read_text()
    assert "Traceback" not in log and '"signal":"SIGTERM"' in log
