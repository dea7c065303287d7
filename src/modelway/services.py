"""The stateful services a runtime owns: the database, the shared counters, the key
cache, the ledger writer and the admin operations. Built without I/O; ``start`` opens
and migrates the database, loads the keys and starts the writer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from modelway.access.admin import Admin
from modelway.access.key_cache import KeyCache
from modelway.access.principal import BudgetRule
from modelway.accounting.ledger import LedgerWriter
from modelway.accounting.ledger_sql import SqlLedger
from modelway.config import Config
from modelway.protocol.errors import Unavailable
from modelway.store.access_records import AccessRecords
from modelway.store.counters import Counters
from modelway.store.database import async_url, create_engine, upgrade
from modelway.store.memory_counters import MemoryCounters
from modelway.store.redis_counters import RedisCounters


@dataclass
class Services:
    engine: AsyncEngine
    counters: Counters
    keys: KeyCache
    ledger: SqlLedger
    writer: LedgerWriter
    admin: Admin
    master_key: str | None
    owns_counters: bool = True  # False: carried over from the runtime this one replaced

    @classmethod
    def build(cls, config: Config, counters: Counters | None = None) -> Services:
        state = config.state_path()
        url = config.database_url.get_secret_value() if config.database_url else None
        engine = create_engine(async_url(url, state))
        owns_counters = counters is None
        if counters is None:
            counters = (
                RedisCounters(config.redis_url.get_secret_value())
                if config.redis_url is not None
                else MemoryCounters()
            )
        master = config.auth.master_key
        master_key = master.get_secret_value() if master is not None else None
        keys = KeyCache(AccessRecords(engine), config.auth.refresh_seconds, master_key)
        ledger = SqlLedger(engine)
        writer = LedgerWriter(
            ledger,
            state / "spool" / "ledger.jsonl",
            batch_size=config.accounting.ledger_batch_size,
            flush_seconds=config.accounting.ledger_flush_seconds,
        )
        policies = config.guardrails.policies if config.guardrails is not None else {}
        cache_policies = config.cache.policies if config.cache is not None else {}
        admin = Admin(engine, keys, policies, cache_policies)
        return cls(engine, counters, keys, ledger, writer, admin, master_key, owns_counters)

    async def start(self) -> None:
        try:
            await upgrade(self.engine)
            await self.keys.start()
        except Exception as exc:
            where = self.engine.url.render_as_string(hide_password=True)
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Unavailable(f"cannot use the database {where}: {reason}") from exc
        await self.writer.start()

    async def close(self) -> None:
        await self.keys.close()
        await self.writer.close()
        if self.owns_counters:
            await self.counters.close()
        await self.engine.dispose()

    async def spend_since(self, rule: BudgetRule, since: datetime | None) -> int:
        """The ledger's spend of a budget's owner in its period (to seed its counter)."""
        if rule.scope == "key":
            return await self.ledger.total_cost(since=since, key_id=rule.owner)
        if rule.scope == "team":
            return await self.ledger.total_cost(since=since, team_id=rule.owner)
        return await self.ledger.total_cost(since=since)
