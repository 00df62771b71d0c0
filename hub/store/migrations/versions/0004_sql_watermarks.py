"""sql_watermarks: the high-water mark of each SQL middle-table feed

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sql_watermarks",
        sa.Column("feed_id", sa.String(128), primary_key=True),
        sa.Column("last_key", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sql_watermarks")
