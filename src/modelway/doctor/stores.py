"""The database (reachable, at the newest migration, without migrating it), Redis
(PING), and the clocks of both against this machine's."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from modelway.config import Config
from modelway.doctor.findings import Finding, Status

# Clocks further apart than this break rate-limit windows, budget periods and tokens.
CLOCK_SKEW_SECONDS = 2.0


def _scripts() -> ScriptDirectory:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "modelway.store:migrations")
    return ScriptDirectory.from_config(cfg)


def head_revisions() -> set[str]:
    return set(_scripts().get_heads())


def _current_revisions(connection: Connection) -> set[str] | None:
    """The database's revisions; None when it has no alembic_version table (never
    migrated). Reading creates nothing."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return set(MigrationContext.configure(connection).get_current_heads())


def _target(config: Config) -> tuple[str, str] | Finding:
    """The async URL to read the database with and how to name it, or why not."""
    url = config.database_url.get_secret_value() if config.database_url else None
    if url is None:
        path = config.state_path() / "modelway.db"
        if not path.is_file():
            return Finding(
                Status.WARN,
                "database",
                f"SQLite {path} does not exist yet: `modelway serve` creates and "
                "migrates it at start-up",
            )
        url = f"sqlite:///{path}"
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() != "sqlite":
        driver = parsed.set(drivername="postgresql+asyncpg")
        return driver.render_as_string(hide_password=False), shown
    database = parsed.database or ""
    if not database or database == ":memory:" or not Path(database).is_file():
        return Finding(Status.FAIL, "database", f"no SQLite file at {shown}")
    # Read-only: opening must neither create the file nor turn on WAL.
    return f"sqlite+aiosqlite:///file:{database}?mode=ro&uri=true", shown


async def check_database(config: Config, seconds: float) -> list[Finding]:
    target = _target(config)
    if isinstance(target, Finding):
        return [target]
    async_url, shown = target
    if async_url.startswith("sqlite"):
        engine = create_async_engine(async_url)
    else:
        engine = create_async_engine(async_url, connect_args={"timeout": seconds})
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_revisions)
            server_time = None
            sent = time.time()
            if conn.dialect.name == "postgresql":
                result = await conn.execute(text("SELECT extract(epoch FROM now())"))
                server_time = float(result.scalar_one())
            received = time.time()
    finally:
        await engine.dispose()
    heads = head_revisions()
    findings = [Finding(Status.PASS, "database", f"{shown} answers")]
    if current is None:
        findings.append(
            Finding(
                Status.FAIL,
                "database migrations",
                f"never migrated (head is {', '.join(sorted(heads))}): run `modelway db upgrade`",
            )
        )
    elif current != heads:
        unknown = current - _all_revisions()
        advice = "written by a newer modelway" if unknown else "run `modelway db upgrade`"
        findings.append(
            Finding(
                Status.FAIL,
                "database migrations",
                f"at {', '.join(sorted(current)) or 'no revision'}, head is "
                f"{', '.join(sorted(heads))}: {advice}",
            )
        )
    else:
        findings.append(
            Finding(Status.PASS, "database migrations", f"at head ({', '.join(sorted(heads))})")
        )
    if server_time is not None:
        findings.append(_clock("database clock", server_time, sent, received))
    return findings


def _all_revisions() -> set[str]:
    return {rev.revision for rev in _scripts().walk_revisions()}


async def check_redis(config: Config, seconds: float) -> list[Finding]:
    if config.redis_url is None:
        return [Finding(Status.PASS, "redis", "not configured: counters are in process memory")]
    from redis.asyncio import Redis

    url = config.redis_url.get_secret_value()
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    client = Redis.from_url(url, socket_connect_timeout=seconds, socket_timeout=seconds)
    try:
        await client.ping()
        sent = time.time()
        whole, micros = await client.time()
        received = time.time()
    finally:
        await client.aclose()
    return [
        Finding(Status.PASS, "redis", f"{shown} answers PING"),
        _clock("redis clock", whole + micros / 1e6, sent, received),
    ]


def _clock(check: str, server: float, sent: float, received: float) -> Finding:
    """Compares a server's time with the middle of the round trip that read it."""
    skew = server - (sent + received) / 2
    detail = f"{skew:+.3f} s from this machine's clock"
    if abs(skew) > CLOCK_SKEW_SECONDS:
        return Finding(Status.FAIL, check, f"{detail} (more than {CLOCK_SKEW_SECONDS:g} s)")
    return Finding(Status.PASS, check, detail)
