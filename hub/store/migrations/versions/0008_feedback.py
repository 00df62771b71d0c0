"""monthly inpatient feedback: documents, runs, scheduler leases

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "feedback_documents",
        sa.Column("encounter_id", sa.String(64), primary_key=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("addressee", sa.String(64), nullable=True),
        sa.Column("addressed_by", sa.String(32), nullable=False),
        sa.Column("composition_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("discharged_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_feedback_month", "feedback_documents", ["month", "addressee"])
    op.create_table(
        "feedback_runs",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("org", sa.String(64), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text, nullable=True),
    )
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("until", sa.BigInteger, nullable=False),
        sa.Column("last_done", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("scheduler_leases")
    op.drop_table("feedback_runs")
    op.drop_table("feedback_documents")
