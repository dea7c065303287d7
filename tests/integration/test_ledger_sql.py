"""The ledger's SQL sink on SQLite and PostgreSQL: what is written reads back the same."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from modelway.accounting.ledger import LedgerRow
from modelway.accounting.ledger_sql import SqlLedger
from modelway.store.database import open_database
from modelway.store.tables import ledger
from tests.services import scratch_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        with scratch_database() as url:
            yield url


@pytest.fixture
async def engine(database_url: str | None, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = await open_database(database_url, tmp_path)
    yield engine
    await engine.dispose()


def row(n: int, **changes: object) -> LedgerRow:
    values: dict[str, object] = {
        "id": f"row-{n}",
        "request_id": f"req-{n}",
        "time": datetime(2026, 12, 3, 23, 59, 59, 123456, tzinfo=UTC) + timedelta(seconds=n),
        "key_id": "key-1",
        "team_id": "team-1",
        "model": "gpt-4o",
        "deployment": "openai:gpt-4o",
        "provider": "openai",
        "prompt_tokens": 12,
        "completion_tokens": 9,
        "cached_tokens": 2,
        "cost_nano_usd": 120_000 + n,
        "latency_ms": 0.25,
        "status": 200,
        "stream": n % 2 == 1,
        "tags": {"env": "prod"},
        "cache": None,
        "saved_nano_usd": 0,
    }
    values.update(changes)
    return LedgerRow(**values)  # type: ignore[arg-type]


async def test_rows_read_back_as_written_and_replays_are_not_doubled(engine: AsyncEngine) -> None:
    sink = SqlLedger(engine)
    rows = [
        row(0),
        row(1, key_id=None, team_id=None, deployment=None, provider=None, cache="hit"),
        row(2, tags={"odd": "\ud800 lone surrogate", "quote": "'; DROP TABLE ledger; --"}),
        row(3, time=datetime(2026, 12, 4, 1, 0, tzinfo=UTC) + timedelta(hours=5)),
    ]
    await sink.write(rows)
    await sink.write(rows[:2])  # a replayed batch: no second copy
    assert await sink.count() == 4
    async with engine.connect() as conn:
        stored = {r.id: r for r in (await conn.execute(select(ledger))).all()}
    for written in rows:
        got = stored[written.id]
        assert got.time.replace(tzinfo=UTC) == written.time
        assert (got.key_id, got.team_id, got.cache) == (
            written.key_id,
            written.team_id,
            written.cache,
        )
        assert (got.prompt_tokens, got.cost_nano_usd, got.stream) == (
            written.prompt_tokens,
            written.cost_nano_usd,
            written.stream,
        )
        # A lone surrogate is stored as U+FFFD, so that the tags stay readable by queries.
        assert got.tags == {k: v.replace("\ud800", "\ufffd") for k, v in written.tags.items()}
    by_day = {g["group"]: g["requests"] for g in await sink.spend("day")}
    assert by_day == {"2026-12-03": 1, "2026-12-04": 3}  # UTC days
    by_tag = {g["group"]: g["requests"] for g in await sink.spend("tag", tag="quote")}
    assert by_tag == {"'; DROP TABLE ledger; --": 1, None: 3}
