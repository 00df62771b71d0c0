"""mutual recognition: every check and its decision

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "recognition_checks",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("checked_at", sa.BigInteger, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("orderer", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("recognisable", sa.Boolean, nullable=False),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("repeat_reason", sa.String(32), nullable=True),
        sa.Column("issue_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("emergency", sa.Boolean, nullable=False),
    )
    op.create_index("ix_recognition_month", "recognition_checks", ["month", "orderer"])
    op.create_index(
        "ix_recognition_person", "recognition_checks", ["person_id", "item", "checked_at"]
    )
    op.create_index("ix_recognition_issue", "recognition_checks", ["issue_id"])


def downgrade() -> None:
    op.drop_table("recognition_checks")
