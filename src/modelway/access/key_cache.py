"""Every replica's in-memory view of the keys and teams, kept current by polling.

Authentication is a dictionary lookup, never a database query on the request path.
Each replica re-reads what changed every ``refresh_seconds`` (0.5 s by default), so a
revoked key stops working everywhere within a second; the replica that revoked it
stops accepting it at once.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from modelway.access.key_material import key_hash
from modelway.access.principal import MASTER, BudgetRule, Limits, Principal
from modelway.observability.logging import get_logger
from modelway.protocol.errors import AuthFailed
from modelway.store.access_records import AccessRecords, KeyRecord, TeamRecord

_log = get_logger("modelway.access")
# Rows are polled by their updated_at, written by other replicas' clocks: look back this
# far so that modest clock skew cannot hide a change.
_SKEW = timedelta(seconds=5)


class KeyCache:
    def __init__(
        self, records: AccessRecords, refresh_seconds: float, master_key: str | None
    ) -> None:
        self._records = records
        self._refresh = refresh_seconds
        self._master = master_key.encode() if master_key else None
        self._by_hash: dict[str, KeyRecord] = {}
        self._hash_of: dict[str, str] = {}
        self._teams: dict[str, TeamRecord] = {}
        self._principals: dict[str, Principal] = {}
        self._since: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._poll())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def refresh(self) -> None:
        started = datetime.now(UTC)
        keys, teams = await self._records.changed_since(self._since)
        self.apply(keys, teams)
        self._since = started - _SKEW

    def apply(self, keys: Iterable[KeyRecord], teams: Iterable[TeamRecord]) -> None:
        for team in teams:
            if team.deleted_at is not None:
                self._teams.pop(team.id, None)
            else:
                self._teams[team.id] = team
            self._principals.clear()  # a team's defaults reach all its keys
        for key in keys:
            old_hash = self._hash_of.pop(key.id, None)
            if old_hash is not None:
                self._by_hash.pop(old_hash, None)
            self._principals.pop(key.id, None)
            if key.revoked_at is None:
                self._by_hash[key.key_hash] = key
                self._hash_of[key.id] = key.key_hash

    def resolve(self, presented: str) -> Principal:
        if self._master is not None and hmac.compare_digest(presented.encode(), self._master):
            return MASTER
        digest = key_hash(presented)
        record = self._by_hash.get(digest)
        if record is None or not hmac.compare_digest(digest, record.key_hash):
            raise AuthFailed("invalid API key", code="invalid_api_key")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise AuthFailed("this API key has expired", code="expired_api_key")
        principal = self._principals.get(record.id)
        if principal is None:
            team = self._teams.get(record.team_id)
            if team is None:
                raise AuthFailed("this API key's team was deleted", code="invalid_api_key")
            principal = self._principals[record.id] = _principal(record, team)
        return principal

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be away; keep the last view
                _log.warning("key_refresh_failed", error=type(exc).__name__)


def _principal(key: KeyRecord, team: TeamRecord) -> Principal:
    key_budgets = key.budgets if key.budgets is not None else team.key_budgets
    budgets = [BudgetRule.of("key", key.id, b) for b in key_budgets or ()]
    budgets += [BudgetRule.of("team", team.id, b) for b in team.budgets or ()]
    models = key.models if key.models is not None else team.models
    return Principal(
        key_id=key.id,
        team_id=team.id,
        role=key.role,  # type: ignore[arg-type]
        models=tuple(models) if models is not None else None,
        key_limits=Limits.of(key.limits if key.limits is not None else team.key_limits),
        team_limits=Limits.of(team.limits),
        budgets=tuple(budgets),
        data_class=key.data_class or team.data_class,
        tags={**team.tags, **key.tags},
        expires_at=key.expires_at,
        priority=key.priority if key.priority is not None else team.priority,
        queue_weight=team.queue_weight or 1.0,
        guardrail_policy=key.guardrail_policy or team.guardrail_policy,
        cache_policy=key.cache_policy or team.cache_policy,
    )
