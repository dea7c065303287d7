"""Teams and API keys in the database: plain rows in, plain records out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelway.store.tables import api_keys, teams


@dataclass(frozen=True, slots=True)
class TeamRecord:
    id: str
    name: str
    models: list[str] | None = None
    limits: dict[str, Any] | None = None  # team-wide
    budgets: list[dict[str, Any]] | None = None  # team-wide
    key_limits: dict[str, Any] | None = None  # default for each key of the team
    key_budgets: list[dict[str, Any]] | None = None  # default for each key of the team
    data_class: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    priority: int | None = None  # default queue priority of its keys
    queue_weight: float | None = None  # its share when requests wait (1.0 if unset)
    guardrail_policy: str | None = None  # default of its keys
    cache_policy: str | None = None  # default of its keys
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    deleted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    key_hash: str
    prefix: str
    team_id: str
    role: str
    name: str | None = None
    models: list[str] | None = None
    limits: dict[str, Any] | None = None
    budgets: list[dict[str, Any]] | None = None
    data_class: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    priority: int | None = None
    guardrail_policy: str | None = None
    cache_policy: str | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _team(row: Row[Any]) -> TeamRecord:
    data = dict(row._mapping)
    for name in ("created_at", "updated_at", "deleted_at"):
        data[name] = _utc(data[name])
    return TeamRecord(**data)


def _key(row: Row[Any]) -> KeyRecord:
    data = dict(row._mapping)
    for name in ("created_at", "updated_at", "expires_at", "revoked_at"):
        data[name] = _utc(data[name])
    return KeyRecord(**data)


def _values(record: TeamRecord | KeyRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


class AccessRecords:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _first(self, query: Any, conn: AsyncConnection | None) -> Row[Any] | None:
        """The query's first row, inside the caller's transaction when it has one."""
        if conn is not None:
            return (await conn.execute(query)).first()
        async with self._engine.connect() as own:
            return (await own.execute(query)).first()

    async def _update(
        self, conn: AsyncConnection, table: Any, record: Any, changes: Mapping[str, Any]
    ) -> Any:
        updated = replace(record, **changes, updated_at=datetime.now(UTC))
        values = _values(updated)
        del values["id"]
        await conn.execute(update(table).where(table.c.id == record.id).values(values))
        return updated

    # -- teams
    async def insert_team(self, conn: AsyncConnection, team: TeamRecord) -> None:
        await conn.execute(teams.insert().values(_values(team)))

    async def get_team(
        self, team_id: str, conn: AsyncConnection | None = None
    ) -> TeamRecord | None:
        query = select(teams).where(teams.c.id == team_id, teams.c.deleted_at.is_(None))
        row = await self._first(query, conn)
        return _team(row) if row is not None else None

    async def team_by_name(self, name: str) -> TeamRecord | None:
        query = select(teams).where(teams.c.name == name, teams.c.deleted_at.is_(None))
        row = await self._first(query, None)
        return _team(row) if row is not None else None

    async def list_teams(self) -> list[TeamRecord]:
        query = select(teams).where(teams.c.deleted_at.is_(None)).order_by(teams.c.created_at)
        async with self._engine.connect() as conn:
            return [_team(r) for r in await conn.execute(query)]

    async def update_team(
        self, conn: AsyncConnection, team: TeamRecord, changes: Mapping[str, Any]
    ) -> TeamRecord:
        updated: TeamRecord = await self._update(conn, teams, team, changes)
        return updated

    async def active_keys_of(self, conn: AsyncConnection, team_id: str) -> int:
        query = select(func.count()).where(
            api_keys.c.team_id == team_id, api_keys.c.revoked_at.is_(None)
        )
        return int((await conn.execute(query)).scalar_one())

    # -- keys
    async def insert_key(self, conn: AsyncConnection, key: KeyRecord) -> None:
        await conn.execute(api_keys.insert().values(_values(key)))

    async def get_key(self, key_id: str, conn: AsyncConnection | None = None) -> KeyRecord | None:
        query = select(api_keys).where(api_keys.c.id == key_id)
        row = await self._first(query, conn)
        return _key(row) if row is not None else None

    async def list_keys(
        self, *, team_id: str | None = None, include_revoked: bool = False
    ) -> list[KeyRecord]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if team_id is not None:
            query = query.where(api_keys.c.team_id == team_id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return [_key(r) for r in await conn.execute(query)]

    async def update_key(
        self, conn: AsyncConnection, key: KeyRecord, changes: Mapping[str, Any]
    ) -> KeyRecord:
        updated: KeyRecord = await self._update(conn, api_keys, key, changes)
        return updated

    # -- what every replica polls to keep its key cache current
    async def changed_since(
        self, since: datetime | None
    ) -> tuple[Sequence[KeyRecord], Sequence[TeamRecord]]:
        key_query = select(api_keys)
        team_query = select(teams)
        if since is not None:
            key_query = key_query.where(api_keys.c.updated_at >= since)
            team_query = team_query.where(teams.c.updated_at >= since)
        else:
            now = datetime.now(UTC)
            key_query = key_query.where(
                api_keys.c.revoked_at.is_(None),
                or_(api_keys.c.expires_at.is_(None), and_(api_keys.c.expires_at > now)),
            )
            team_query = team_query.where(teams.c.deleted_at.is_(None))
        async with self._engine.connect() as conn:
            keys = [_key(r) for r in await conn.execute(key_query)]
            team_rows = [_team(r) for r in await conn.execute(team_query)]
        return keys, team_rows
