"""The audit log: append-only, each row hash-chained to the one before it.

A row's hash covers its sequence number, time, actor, action, target, before and after,
and the previous row's hash; so changing a row breaks its own hash, and deleting one
leaves a gap in the sequence and a ``prev_hash`` that no longer matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelway.store.tables import audit_log

GENESIS = "0" * 64
_APPEND_LOCK = 0x61756469746C6F67  # "auditlog": one appender at a time on PostgreSQL


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time: datetime
    actor: str
    action: str
    target: str | None
    before: str | None
    after: str | None
    prev_hash: str
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "before": orjson.loads(self.before) if self.before is not None else None,
            "after": orjson.loads(self.after) if self.after is not None else None,
            "hash": self.hash,
        }


@dataclass(slots=True)
class Verification:
    ok: bool = True
    checked: int = 0
    problems: list[str] = field(default_factory=list)


def entry_hash(
    prev_hash: str,
    seq: int,
    time: datetime,
    actor: str,
    action: str,
    target: str | None,
    before: str | None,
    after: str | None,
) -> str:
    payload = orjson.dumps([prev_hash, seq, time.isoformat(), actor, action, target, before, after])
    return hashlib.sha256(payload).hexdigest()


def canonical(state: Mapping[str, Any] | None) -> str | None:
    if state is None:
        return None
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _entry(row: Row[Any]) -> AuditEntry:
    data = dict(row._mapping)
    if data["time"].tzinfo is None:
        data["time"] = data["time"].replace(tzinfo=UTC)
    return AuditEntry(**data)


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(
        self,
        conn: AsyncConnection,
        *,
        actor: str,
        action: str,
        target: str | None,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> AuditEntry:
        """Add a row inside the caller's transaction, so a change and its record of it
        commit together (or neither does)."""
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _APPEND_LOCK})
        last = (
            await conn.execute(
                select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
            )
        ).first()
        seq, prev = (last[0] + 1, last[1]) if last is not None else (1, GENESIS)
        now = datetime.now(UTC)
        before_text, after_text = canonical(before), canonical(after)
        digest = entry_hash(prev, seq, now, actor, action, target, before_text, after_text)
        entry = AuditEntry(seq, now, actor, action, target, before_text, after_text, prev, digest)
        await conn.execute(
            audit_log.insert().values(
                seq=seq,
                time=now,
                actor=actor,
                action=action,
                target=target,
                before=before_text,
                after=after_text,
                prev_hash=prev,
                hash=digest,
            )
        )
        return entry

    async def entries(
        self, *, after_seq: int = 0, limit: int = 100, target: str | None = None
    ) -> list[AuditEntry]:
        query = select(audit_log).where(audit_log.c.seq > after_seq)
        if target is not None:
            query = query.where(audit_log.c.target == target)
        query = query.order_by(audit_log.c.seq).limit(limit)
        async with self._engine.connect() as conn:
            return [_entry(r) for r in await conn.execute(query)]

    async def verify(self) -> Verification:
        """Walk the whole chain; report every row whose hash or link does not hold."""
        result = Verification()
        expected_seq, prev = 1, GENESIS
        async with self._engine.connect() as conn:
            rows = await conn.stream(select(audit_log).order_by(audit_log.c.seq))
            async for row in rows:
                entry = _entry(row)
                result.checked += 1
                if entry.seq != expected_seq:
                    result.problems.append(
                        f"row {expected_seq}"
                        + (f" to {entry.seq - 1}" if entry.seq - 1 > expected_seq else "")
                        + " missing (deleted?)"
                    )
                if entry.prev_hash != prev:
                    result.problems.append(f"row {entry.seq}: does not follow the row before it")
                digest = entry_hash(
                    entry.prev_hash,
                    entry.seq,
                    entry.time,
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.before,
                    entry.after,
                )
                if digest != entry.hash:
                    result.problems.append(f"row {entry.seq}: content changed after it was written")
                expected_seq, prev = entry.seq + 1, entry.hash
        result.ok = not result.problems
        return result
