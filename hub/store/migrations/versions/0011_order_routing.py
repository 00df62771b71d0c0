"""order routing through the regional centres; outbox dead letters and outcome topics

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "routed_orders",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("orderer", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("message", sa.String(16), nullable=True),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("item", sa.String(64), nullable=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("ordered_at", sa.BigInteger, nullable=False),
        sa.Column("routed_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("accepted_at", sa.BigInteger, nullable=True),
        sa.Column("resulted_at", sa.BigInteger, nullable=True),
        sa.Column("delivered_at", sa.BigInteger, nullable=True),
        sa.Column("failed_at", sa.BigInteger, nullable=True),
        sa.Column("cancelled_at", sa.BigInteger, nullable=True),
        sa.Column("report_id", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_routed_month", "routed_orders", ["month", "orderer"])
    op.create_index("ix_routed_status", "routed_orders", ["status", "destination"])
    op.create_index("ix_routed_report", "routed_orders", ["report_id"])
    # What an outbox row is for (``topic``: route-order, route-result) and which row of that
    # topic's table, so its outcome can move the routed order's status in the same transaction.
    op.add_column("outbox", sa.Column("topic", sa.String(32), nullable=True))
    op.add_column("outbox", sa.Column("topic_id", sa.BigInteger, nullable=True))
    op.add_column(
        "outbox", sa.Column("replays", sa.Integer, nullable=False, server_default=sa.text("0"))
    )
    op.add_column("outbox", sa.Column("failed_at", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("failed_at")
        batch.drop_column("replays")
        batch.drop_column("topic_id")
        batch.drop_column("topic")
    op.drop_table("routed_orders")
