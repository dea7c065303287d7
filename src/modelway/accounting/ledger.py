"""The ledger: one row per request, written in batches off the request path, never lost.

``LedgerWriter.record`` buffers a row in memory. A background task writes the buffer to
the sink every ``flush_seconds`` or when ``batch_size`` rows are waiting. When the sink
fails, the batch goes to a spool file on local disk, and until ``retry_seconds`` have
passed further batches go straight there (the sink is not hammered and memory stays
bounded). Then the spool is replayed into the sink in chunks of ``batch_size``. Delivery
is at-least-once: a sink must be idempotent by the row's ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from modelway.accounting.spool import Spool, SpoolChunk
from modelway.observability.logging import get_logger

_log = get_logger("modelway.accounting.ledger")


# Not frozen: a frozen dataclass's __init__ sets each of these fields through
# object.__setattr__, which doubled the cost of building a row (12 us, 6 unfrozen).
@dataclasses.dataclass(slots=True)
class LedgerRow:
    id: str  # made by the gateway, unique: clients choose their request ids
    request_id: str
    time: datetime  # tz-aware; stored in UTC
    key_id: str | None
    team_id: str | None
    model: str
    deployment: str | None
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nano_usd: int
    latency_ms: float
    status: int
    stream: bool
    tags: Mapping[str, str]
    cache: str | None = None
    saved_nano_usd: int = 0  # what a cache hit saved: the answer's price when it was made

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("LedgerRow.time must be timezone-aware")
        if self.time.tzinfo is not UTC:
            self.time = self.time.astimezone(UTC)

    def to_json(self) -> bytes:
        """The row as one line of JSON (no newline)."""
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields["tags"] = dict(self.tags)
        try:
            return orjson.dumps(fields)
        except orjson.JSONEncodeError:
            fields["tags"] = readable_tags(self.tags)
            return orjson.dumps(fields)

    @classmethod
    def from_json(cls, data: bytes) -> LedgerRow:
        """The row ``to_json`` wrote; ValueError if ``data`` is not one."""
        try:
            d: dict[str, Any] = orjson.loads(data)
            d["time"] = datetime.fromisoformat(d["time"])
            return cls(**{name: d[name] for name in _FIELDS if name in d or name in _REQUIRED})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a ledger row: {exc!r}") from exc


_FIELDS = tuple(field.name for field in dataclasses.fields(LedgerRow))
_SURROGATE = re.compile("[\ud800-\udfff]")


def readable_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` with every lone surrogate (JSON input can carry one) as U+FFFD: UTF-8 has
    no form for it, and PostgreSQL would store it and then fail every query on the tags."""
    return {_SURROGATE.sub("\ufffd", k): _SURROGATE.sub("\ufffd", v) for k, v in tags.items()}


# Rows spooled by an older release lack the fields added since; those have defaults.
_REQUIRED = frozenset(
    f.name
    for f in dataclasses.fields(LedgerRow)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)


class LedgerSink(Protocol):
    async def write(self, rows: Sequence[LedgerRow]) -> None:
        """Store ``rows``; a row whose ``id`` is stored already is not duplicated.

        Raises on failure; the writer sends the rows again later, so a batch the sink
        stored in part is fine."""
        ...


class LedgerWriter:
    def __init__(
        self,
        sink: LedgerSink,
        spool_path: Path,
        *,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        retry_seconds: float = 2.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._sink = sink
        self._spool = Spool(spool_path)
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._retry_seconds = retry_seconds
        self._buffer: list[LedgerRow] = []
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._replay_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._warned_late = False
        self._retry_at = 0.0  # loop time before which the sink is presumed down
        self._sink_down = False

    @property
    def pending(self) -> int:
        """Rows recorded and not yet delivered: buffered, being written, or spooled."""
        return len(self._buffer) + self._in_flight + self._spool.pending

    async def start(self) -> None:
        """Start the background task; it replays what earlier runs spooled first.

        Raises OSError if spool files are there but cannot be read."""
        if self._task is not None:
            return
        await asyncio.to_thread(self._spool.open)
        self._stopping = self._closed = False
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    def record(self, row: LedgerRow) -> None:
        """Buffer ``row`` (call on the event loop); never blocks or raises."""
        self._buffer.append(row)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()
        if self._closed and not self._warned_late:
            self._warned_late = True
            _log.warning("ledger rows recorded after close wait for another flush or close")

    async def flush(self) -> None:
        """Write everything buffered: to the sink, or while it fails, to the spool."""
        batch, self._buffer = self._buffer, []
        done = 0
        self._in_flight += len(batch)
        try:
            while done < len(batch) and self._sink_up():
                chunk = batch[done : done + self._batch_size]
                if not await self._write(chunk):
                    break
                done += len(chunk)
            if done < len(batch):
                await self._spool_rows(batch[done:])
                done = len(batch)
        finally:
            self._in_flight -= len(batch)
            if done < len(batch):  # cancelled: keep what the sink has not confirmed
                self._buffer[:0] = batch[done:]

    async def close(self) -> None:
        """Stop the task, flush everything and try a last replay. Nothing is lost: what the
        sink does not take stays in the spool for the next writer on the same path."""
        self._closed = self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        self._retry_at = 0.0  # one last try of the sink, even if it failed just now
        await self.flush()
        while self._spool.pending and self._sink_up() and await self._replay_chunk():
            pass
        if self._buffer:
            _log.error("ledger rows neither stored nor spooled", rows=len(self._buffer))

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.flush()
                if self._spool.pending and self._sink_up() and await self._replay_chunk():
                    continue  # the sink takes rows again: go on replaying
            except Exception:
                _log.exception("ledger writer error; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            self._wake.clear()

    async def _replay_chunk(self) -> bool:
        """Deliver one chunk of the spool; False if nothing is left or the sink failed."""
        async with self._replay_lock:
            if not await asyncio.to_thread(self._spool.claim):
                return False
            chunk, rows = await asyncio.to_thread(self._read_chunk)
            if rows and not await self._write(rows):
                return False
            await asyncio.to_thread(self._spool.commit, chunk)
            return True

    def _read_chunk(self) -> tuple[SpoolChunk, list[LedgerRow]]:
        chunk = self._spool.read(self._batch_size)
        return chunk, _decode(chunk.lines)

    async def _write(self, rows: Sequence[LedgerRow]) -> bool:
        try:
            await self._sink.write(rows)
        except Exception as exc:
            self._retry_at = asyncio.get_running_loop().time() + self._retry_seconds
            if not self._sink_down:
                self._sink_down = True
                _log.warning("ledger sink failed; spooling rows to disk", error=type(exc).__name__)
            return False
        if self._sink_down:
            self._sink_down = False
            _log.info("ledger sink recovered", spooled=self._spool.pending)
        return True

    async def _spool_rows(self, rows: list[LedgerRow]) -> None:
        try:
            await asyncio.to_thread(_append, self._spool, rows)
        except OSError as exc:
            # Disk and sink both failing: keep the rows in memory for the next flush.
            _log.error("ledger spool append failed", error=repr(exc), rows=len(rows))
            self._buffer[:0] = rows

    def _sink_up(self) -> bool:
        return asyncio.get_running_loop().time() >= self._retry_at


def _append(spool: Spool, rows: list[LedgerRow]) -> None:
    spool.append([row.to_json() for row in rows])


def _decode(lines: list[bytes]) -> list[LedgerRow]:
    rows: list[LedgerRow] = []
    for line in lines:
        try:
            rows.append(LedgerRow.from_json(line))
        except ValueError as exc:
            _log.warning("skipping an unreadable ledger spool line", error=str(exc)[:200])
    return rows
