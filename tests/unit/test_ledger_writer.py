import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from modelway.accounting.ledger import LedgerRow, LedgerWriter


class FlakySink:
    """The test double of the SQL sink: idempotent by row id, and switchable to fail."""

    def __init__(self) -> None:
        self.rows: dict[str, LedgerRow] = {}
        self.deliveries = 0  # rows written, duplicates included
        self.batch_sizes: list[int] = []
        self.failing = False

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        await asyncio.sleep(0)
        if self.failing:
            raise ConnectionError("database is down")
        self.batch_sizes.append(len(rows))
        self.deliveries += len(rows)
        for row in rows:
            self.rows.setdefault(row.id, row)


def make_row(i: int) -> LedgerRow:
    return LedgerRow(
        id=f"row-{i}",
        request_id=f"req-{i}",
        time=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC) + timedelta(seconds=i),
        key_id="key-1",
        team_id=None,
        model="gpt-4o-mini",
        deployment="openai-east",
        provider="openai",
        prompt_tokens=i,
        completion_tokens=2 * i,
        cached_tokens=0,
        cost_nano_usd=450_000 + i,
        latency_ms=12.5,
        status=200,
        stream=i % 2 == 0,
        tags={"app": "test"},
    )


def make_writer(sink: FlakySink, path: Path, batch_size: int = 100) -> LedgerWriter:
    return LedgerWriter(sink, path, batch_size=batch_size, flush_seconds=0.01, retry_seconds=0.02)


async def wait_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (polls the writer's state, not an event)
            await asyncio.sleep(0.005)


def spooled_lines(path: Path) -> int:
    files = [path, path.with_name(path.name + ".replaying")]
    return sum(f.read_bytes().count(b"\n") for f in files if f.exists())


def test_row_round_trips_through_one_json_line() -> None:
    row = make_row(7)
    line = row.to_json()
    assert b"\n" not in line
    assert LedgerRow.from_json(line) == row


def test_a_lone_surrogate_in_a_tag_still_makes_a_line() -> None:
    row = replace(make_row(7), tags={"team\udc80": "a\ud800b"})
    assert LedgerRow.from_json(row.to_json()).tags == {"team\ufffd": "a\ufffdb"}


def test_row_time_must_be_aware_and_is_stored_in_utc() -> None:
    with pytest.raises(ValueError):
        replace(make_row(1), time=datetime(2026, 1, 1))
    paris = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=1)))
    row = replace(make_row(1), time=paris)
    assert row.time == paris and row.time.utcoffset() == timedelta(0)


def test_garbage_is_not_a_row() -> None:
    for data in (b"not json", b"[1, 2]", b'{"request_id": "x"}'):
        with pytest.raises(ValueError):
            LedgerRow.from_json(data)


async def test_rows_reach_the_sink_in_batches(tmp_path: Path) -> None:
    sink = FlakySink()
    writer = make_writer(sink, tmp_path / "ledger.spool", batch_size=50)
    await writer.start()
    for i in range(120):
        writer.record(make_row(i))
    await wait_until(lambda: writer.pending == 0)
    await writer.close()
    assert set(sink.rows) == {f"row-{i}" for i in range(120)}
    assert sink.deliveries == 120
    assert max(sink.batch_sizes) <= 50
    assert not (tmp_path / "ledger.spool").exists()


async def test_ten_thousand_rows_survive_a_sink_outage_exactly_once(tmp_path: Path) -> None:
    sink = FlakySink()
    path = tmp_path / "ledger.spool"
    writer = make_writer(sink, path)
    await writer.start()
    for i in range(10_000):
        if i == 2_000:
            sink.failing = True  # down for half of the run
        if i == 7_000:
            await writer.flush()
            assert spooled_lines(path) > 0  # the outage went to disk
            sink.failing = False
        writer.record(make_row(i))
        if i % 50 == 0:
            await asyncio.sleep(0.001)
    await wait_until(lambda: writer.pending == 0)
    await writer.close()
    assert sink.rows == {f"row-{i}": make_row(i) for i in range(10_000)}
    assert sink.deliveries == 10_000  # no row was written twice
    assert max(sink.batch_sizes) <= 100
    assert spooled_lines(path) == 0


async def test_rows_go_to_disk_not_memory_while_the_sink_is_down(tmp_path: Path) -> None:
    sink = FlakySink()
    sink.failing = True
    path = tmp_path / "ledger.spool"
    writer = make_writer(sink, path)
    for i in range(2_000):
        writer.record(make_row(i))
    await writer.flush()
    assert spooled_lines(path) == 2_000
    assert writer.pending == 2_000
    await writer.close()


async def test_close_with_the_sink_down_leaves_rows_for_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "ledger.spool"
    down = FlakySink()
    down.failing = True
    writer = make_writer(down, path)
    await writer.start()
    for i in range(1_000):
        writer.record(make_row(i))
    await writer.close()
    assert writer.pending == 1_000
    assert spooled_lines(path) == 1_000
    assert not down.rows

    sink = FlakySink()
    successor = make_writer(sink, path)
    await successor.start()
    assert successor.pending == 1_000
    await wait_until(lambda: successor.pending == 0)
    await successor.close()
    assert set(sink.rows) == {f"row-{i}" for i in range(1_000)}


async def test_a_spool_left_mid_replay_is_delivered_whole(tmp_path: Path) -> None:
    # A crash during a replay leaves both files: the one being replayed and a fresh spool.
    path = tmp_path / "ledger.spool"
    replaying = path.with_name(path.name + ".replaying")
    replaying.write_bytes(b"".join(make_row(i).to_json() + b"\n" for i in range(300)))
    path.write_bytes(b"".join(make_row(i).to_json() + b"\n" for i in range(300, 450)))
    sink = FlakySink()
    writer = make_writer(sink, path)
    await writer.start()
    await wait_until(lambda: writer.pending == 0)
    await writer.close()
    assert set(sink.rows) == {f"row-{i}" for i in range(450)}
    assert not path.exists() and not replaying.exists()


async def test_torn_and_unreadable_lines_are_skipped_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "ledger.spool"
    good = [make_row(i).to_json() + b"\n" for i in range(3)]
    torn = make_row(3).to_json()[:40]  # a crash in the middle of an append
    path.write_bytes(good[0] + b"not json\n" + good[1] + good[2] + torn)
    sink = FlakySink()
    writer = make_writer(sink, path)
    with capture_logs() as logs:
        await writer.start()
        await wait_until(lambda: writer.pending == 0)
        await writer.close()
    assert set(sink.rows) == {"row-0", "row-1", "row-2"}
    events = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
    assert "cutting off a torn spool line" in events
    assert "skipping an unreadable ledger spool line" in events


async def test_record_never_raises(tmp_path: Path) -> None:
    sink = FlakySink()
    sink.failing = True
    path = tmp_path / "ledger.spool"
    writer = make_writer(sink, path)
    writer.record(make_row(0))  # before start
    await writer.start()
    path.mkdir()  # the disk fails as well as the sink: the spool cannot be written
    for i in range(1, 300):
        writer.record(make_row(i))
    await writer.flush()
    assert writer.pending == 300  # kept in memory rather than lost
    await writer.close()
    writer.record(make_row(300))  # after close
    assert writer.pending == 301

    sink.failing = False
    await writer.close()  # a later close delivers what was kept
    assert writer.pending == 0
    assert len(sink.rows) == 301
