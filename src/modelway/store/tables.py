"""The durable records, as SQLAlchemy Core tables (the migrations create them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# A team holds the defaults of its keys (models, limits, budgets, data class, tags) and
# its own team-wide limits and budgets.
teams = Table(
    "teams",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("models", JSON, nullable=True),
    Column("limits", JSON, nullable=True),
    Column("budgets", JSON, nullable=True),
    Column("key_limits", JSON, nullable=True),
    Column("key_budgets", JSON, nullable=True),
    Column("data_class", String(32), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("priority", Integer, nullable=True),
    Column("queue_weight", Float, nullable=True),
    Column("guardrail_policy", String(100), nullable=True),
    Column("cache_policy", String(100), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    # SHA-256 of the key: keys are 256-bit random, so a fast hash is the right one.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(32), nullable=False),
    Column("name", String(200), nullable=True),
    Column("team_id", String(64), ForeignKey("teams.id"), nullable=False, index=True),
    Column("role", String(16), nullable=False),
    Column("models", JSON, nullable=True),
    Column("limits", JSON, nullable=True),
    Column("budgets", JSON, nullable=True),
    Column("data_class", String(32), nullable=True),
    Column("tags", JSON, nullable=False),
    Column("priority", Integer, nullable=True),
    Column("guardrail_policy", String(100), nullable=True),
    Column("cache_policy", String(100), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
)

# Append-only; each row's hash covers its content and the previous row's hash.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=True),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("request_id", String(128), nullable=False, index=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("team_id", String(64), nullable=True),
    Column("model", String(200), nullable=False),
    Column("deployment", String(200), nullable=True),
    Column("provider", String(64), nullable=True),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("cost_nano_usd", BigInteger, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("status", Integer, nullable=False),
    Column("stream", Boolean, nullable=False),
    Column("tags", JSON, nullable=False),
    # hit / semantic-hit / miss / bypass; None when the request was not cacheable.
    Column("cache", String(16), nullable=True),
    Column("saved_nano_usd", BigInteger, nullable=False, server_default="0"),
    Index("ix_ledger_time", "time"),
    Index("ix_ledger_key_time", "key_id", "time"),
    Index("ix_ledger_team_time", "team_id", "time"),
)
