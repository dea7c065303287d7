"""The admin operations on teams and keys: each change and its audit row in one
transaction, then applied at once to this replica's key cache."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from modelway.access.admin_models import (
    KeyCreate,
    KeyUpdate,
    TeamCreate,
    TeamUpdate,
    key_view,
    record_fields,
    team_view,
)
from modelway.access.key_cache import KeyCache
from modelway.access.key_material import display_prefix, key_hash, new_id, new_key
from modelway.protocol.errors import BadRequest, Conflict, NotFound
from modelway.store.access_records import AccessRecords, KeyRecord, TeamRecord
from modelway.store.audit_log import AuditLog

DEFAULT_TEAM = "default"


class Admin:
    def __init__(
        self,
        engine: AsyncEngine,
        cache: KeyCache,
        policies: Collection[str] = (),
        cache_policies: Collection[str] = (),
    ) -> None:
        self._engine = engine
        self._policies = {"guardrail": set(policies), "cache": set(cache_policies)}
        self.records = AccessRecords(engine)
        self.audit = AuditLog(engine)
        self._cache = cache

    # -- teams
    def _check_policies(self, body: TeamCreate | KeyCreate) -> None:
        for kind, name in (("guardrail", body.guardrail_policy), ("cache", body.cache_policy)):
            policies = self._policies[kind]
            if name is not None and name not in policies:
                known = ", ".join(sorted(policies)) or "none configured"
                raise BadRequest(
                    f"no {kind} policy named '{name}' (configured: {known})",
                    param=f"{kind}_policy",
                )

    async def create_team(self, actor: str, body: TeamCreate) -> dict[str, Any]:
        self._check_policies(body)
        values = record_fields(body, set(TeamCreate.model_fields))
        team = TeamRecord(id=new_id("team"), **values)
        try:
            async with self._engine.begin() as conn:
                await self.records.insert_team(conn, team)
                await self._audit(conn, actor, "team.create", team.id, None, team_view(team))
        except IntegrityError:
            raise Conflict(f"a team named '{body.name}' exists", param="name") from None
        self._cache.apply((), (team,))
        return team_view(team)

    async def teams(self) -> list[dict[str, Any]]:
        return [team_view(t) for t in await self.records.list_teams()]

    async def team(self, ref: str) -> dict[str, Any]:
        return team_view(await self._team(ref))

    async def update_team(self, actor: str, ref: str, body: TeamUpdate) -> dict[str, Any]:
        self._check_policies(body)
        changes = record_fields(body, body.model_fields_set)
        changes = {k: v for k, v in changes.items() if not (k in ("name", "tags") and v is None)}
        try:
            async with self._engine.begin() as conn:
                team = await self._team(ref, conn)
                updated = await self.records.update_team(conn, team, changes)
                await self._audit(
                    conn, actor, "team.update", team.id, team_view(team), team_view(updated)
                )
        except IntegrityError:
            raise Conflict(f"a team named '{body.name}' exists", param="name") from None
        self._cache.apply((), (updated,))
        return team_view(updated)

    async def delete_team(self, actor: str, ref: str) -> dict[str, Any]:
        async with self._engine.begin() as conn:
            team = await self._team(ref, conn)
            if team.id == DEFAULT_TEAM:
                raise Conflict("the default team cannot be deleted")
            active = await self.records.active_keys_of(conn, team.id)
            if active:
                raise Conflict(f"team '{team.name}' still has {active} active key(s); revoke them")
            # The name is freed for a new team; the row stays for the ledger's sake.
            now = datetime.now(UTC)
            gone = await self.records.update_team(
                conn, team, {"deleted_at": now, "name": f"{team.name} (deleted {team.id})"}
            )
            await self._audit(conn, actor, "team.delete", team.id, team_view(team), None)
        self._cache.apply((), (gone,))
        return {"id": team.id, "object": "team", "deleted": True}

    # -- keys
    async def create_key(self, actor: str, body: KeyCreate) -> dict[str, Any]:
        self._check_policies(body)
        secret = new_key()
        values = record_fields(body, set(KeyCreate.model_fields) - {"team"})
        async with self._engine.begin() as conn:
            team = await self._team(body.team or DEFAULT_TEAM, conn, param="team")
            key = KeyRecord(
                id=new_id("key"),
                key_hash=key_hash(secret),
                prefix=display_prefix(secret),
                team_id=team.id,
                **values,
            )
            await self.records.insert_key(conn, key)
            await self._audit(conn, actor, "key.create", key.id, None, key_view(key))
        self._cache.apply((key,), ())
        return {**key_view(key), "key": secret}

    async def keys(self, team: str | None = None, include_revoked: bool = False) -> list[Any]:
        team_id = (await self._team(team, param="team")).id if team else None
        found = await self.records.list_keys(team_id=team_id, include_revoked=include_revoked)
        return [key_view(k) for k in found]

    async def key(self, key_id: str) -> dict[str, Any]:
        return key_view(await self._key(key_id))

    async def update_key(self, actor: str, key_id: str, body: KeyUpdate) -> dict[str, Any]:
        self._check_policies(body)
        changes = record_fields(body, body.model_fields_set - {"team"})
        changes = {k: v for k, v in changes.items() if not (k in ("role", "tags") and v is None)}
        async with self._engine.begin() as conn:
            key = await self._live_key(key_id, conn)
            if body.team is not None:
                changes["team_id"] = (await self._team(body.team, conn, param="team")).id
            updated = await self.records.update_key(conn, key, changes)
            await self._audit(conn, actor, "key.update", key.id, key_view(key), key_view(updated))
        self._cache.apply((updated,), ())
        return key_view(updated)

    async def revoke_key(self, actor: str, key_id: str) -> dict[str, Any]:
        async with self._engine.begin() as conn:
            key = await self._live_key(key_id, conn)
            revoked = await self.records.update_key(conn, key, {"revoked_at": datetime.now(UTC)})
            await self._audit(conn, actor, "key.revoke", key.id, key_view(key), key_view(revoked))
        self._cache.apply((revoked,), ())
        return key_view(revoked)

    async def rotate_key(self, actor: str, key_id: str) -> dict[str, Any]:
        """A new secret for the same key (same id, limits, spend); the old one stops."""
        secret = new_key()
        async with self._engine.begin() as conn:
            key = await self._live_key(key_id, conn)
            changes = {"key_hash": key_hash(secret), "prefix": display_prefix(secret)}
            rotated = await self.records.update_key(conn, key, changes)
            await self._audit(conn, actor, "key.rotate", key.id, key_view(key), key_view(rotated))
        self._cache.apply((rotated,), ())
        return {**key_view(rotated), "key": secret}

    async def audit_entries(
        self, after_seq: int, limit: int, target: str | None
    ) -> list[dict[str, Any]]:
        found = await self.audit.entries(after_seq=after_seq, limit=limit, target=target)
        return [e.as_dict() for e in found]

    # -- lookups
    async def _team(
        self, ref: str, conn: AsyncConnection | None = None, param: str | None = None
    ) -> TeamRecord:
        team = await self.records.get_team(ref, conn) or await self.records.team_by_name(ref)
        if team is None:
            raise NotFound(f"no team '{ref}'", param=param, code="team_not_found")
        return team

    async def _key(self, key_id: str, conn: AsyncConnection | None = None) -> KeyRecord:
        key = await self.records.get_key(key_id, conn)
        if key is None:
            raise NotFound(f"no key '{key_id}'", code="key_not_found")
        return key

    async def _live_key(self, key_id: str, conn: AsyncConnection) -> KeyRecord:
        key = await self._key(key_id, conn)
        if key.revoked_at is not None:
            raise Conflict(f"key '{key_id}' is revoked")
        return key

    async def record(
        self,
        actor: str,
        action: str,
        target: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        """An admin action that changes no record of its own (a config reload) in the
        audit log."""
        async with self._engine.begin() as conn:
            await self._audit(conn, actor, action, target, before, after)

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        target: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
    ) -> None:
        await self.audit.append(
            conn, actor=actor, action=action, target=target, before=before, after=after
        )
