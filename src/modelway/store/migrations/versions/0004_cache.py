"""The response cache: the cache policy a key or team uses; per ledger row, whether a
cache answered and the cost that saved.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("teams", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cache_policy", sa.String(100), nullable=True))
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("cache", sa.String(16), nullable=True))
        batch.add_column(
            sa.Column("saved_nano_usd", sa.BigInteger, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("saved_nano_usd")
        batch.drop_column("cache")
    for table in ("api_keys", "teams"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("cache_policy")
