"""The guardrail policy a key or team uses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("teams", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("guardrail_policy", sa.String(100), nullable=True))


def downgrade() -> None:
    for table in ("api_keys", "teams"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("guardrail_policy")
