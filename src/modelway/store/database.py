"""Opening the database (SQLite file by default, PostgreSQL by URL) and migrating it."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Serialises migrations when several replicas start at once on one PostgreSQL.
_MIGRATION_LOCK = 0x6D6F64656C776179  # "modelway"


def async_url(url: str | None, state_dir: Path) -> str:
    """The SQLAlchemy async URL for a configured one (or the default SQLite file)."""
    if url is None:
        state_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{state_dir / 'modelway.db'}"
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database '{backend}': use postgresql:// or sqlite://")


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        url,
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": {"timezone": "UTC"}, "timeout": 5},
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run beside the one writer (several worker processes on one file).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already).
    Several processes starting at once migrate one after the other: PostgreSQL through an
    advisory lock, a SQLite file through a lock file beside it."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:":
        async with _file_lock(Path(database + ".migrate.lock")), engine.begin() as conn:
            await conn.run_sync(_run_alembic)
        return
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        await conn.run_sync(_run_alembic)


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    with path.open("a") as handle:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run_alembic(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "modelway.store:migrations")
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def open_database(url: str | None, state_dir: Path) -> AsyncEngine:
    engine = create_engine(async_url(url, state_dir))
    await upgrade(engine)
    return engine


def is_unreachable(exc: BaseException) -> bool:
    """Did this fail because the database could not be reached (not because of a bug)?"""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
