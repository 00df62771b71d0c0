"""inbox: every feed message as received, before it is acknowledged

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    row_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "inbox",
        sa.Column("id", row_id, primary_key=True, autoincrement=True),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("peer", sa.String(128), nullable=True),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("application", sa.String(64), nullable=False),
        sa.Column("control_id", sa.String(64), nullable=False),
        sa.Column("message_type", sa.String(32), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("patient_key", sa.String(300), nullable=True),
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=True),
    )
    op.create_index(
        "ux_inbox_sender_control",
        "inbox",
        ["sender", "control_id"],
        unique=True,
        sqlite_where=sa.text("accepted"),
        postgresql_where=sa.text("accepted"),
    )
    op.create_index("ix_inbox_status", "inbox", ["status", "id"])
    op.create_index("ix_inbox_received", "inbox", ["received_at"])


def downgrade() -> None:
    op.drop_table("inbox")
