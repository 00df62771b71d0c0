"""inbox: enhanced-mode application acknowledgement (MSH-16) and its destination

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(sa.Column("app_ack", sa.String(2), nullable=True))
        batch.add_column(sa.Column("reply_to", sa.String(256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("reply_to")
        batch.drop_column("app_ack")
