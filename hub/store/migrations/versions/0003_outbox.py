"""outbox: messages the hub must deliver, kept until acknowledged

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    row_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "outbox",
        sa.Column("id", row_id, primary_key=True, autoincrement=True),
        sa.Column("destination", sa.String(256), nullable=False),
        sa.Column("control_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("ack", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "destination", "id"])


def downgrade() -> None:
    op.drop_table("outbox")
