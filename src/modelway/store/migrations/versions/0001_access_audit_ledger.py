"""Teams, API keys, the audit log and the ledger.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    teams = op.create_table(
        "teams",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("limits", sa.JSON, nullable=True),
        sa.Column("budgets", sa.JSON, nullable=True),
        sa.Column("key_limits", sa.JSON, nullable=True),
        sa.Column("key_budgets", sa.JSON, nullable=True),
        sa.Column("data_class", sa.String(32), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False, index=True),
        sa.Column("deleted_at", _TS, nullable=True),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("team_id", sa.String(64), sa.ForeignKey("teams.id"), nullable=False, index=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("models", sa.JSON, nullable=True),
        sa.Column("limits", sa.JSON, nullable=True),
        sa.Column("budgets", sa.JSON, nullable=True),
        sa.Column("data_class", sa.String(32), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False, index=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("time", _TS, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "ledger",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False, index=True),
        sa.Column("time", _TS, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("team_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("deployment", sa.String(200), nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("cost_nano_usd", sa.BigInteger, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_index("ix_ledger_time", "ledger", ["time"])
    op.create_index("ix_ledger_key_time", "ledger", ["key_id", "time"])
    op.create_index("ix_ledger_team_time", "ledger", ["team_id", "time"])
    # Keys created without a team belong to this one.
    now = datetime.now(UTC)
    op.bulk_insert(
        teams,
        [{"id": "default", "name": "default", "tags": {}, "created_at": now, "updated_at": now}],
    )


def downgrade() -> None:
    op.drop_table("ledger")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
    op.drop_table("teams")
