"""Queue priority for keys and teams, and a team's share of a queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("teams") as teams:
        teams.add_column(sa.Column("priority", sa.Integer, nullable=True))
        teams.add_column(sa.Column("queue_weight", sa.Float, nullable=True))
    with op.batch_alter_table("api_keys") as keys:
        keys.add_column(sa.Column("priority", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as keys:
        keys.drop_column("priority")
    with op.batch_alter_table("teams") as teams:
        teams.drop_column("queue_weight")
        teams.drop_column("priority")
