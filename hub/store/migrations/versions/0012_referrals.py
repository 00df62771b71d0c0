"""two-way referral: referrals and their steps

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "referrals",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(64), nullable=False, unique=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("performer", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("green", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("requested_at", sa.BigInteger, nullable=False),
        sa.Column("due_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("encounter_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_referrals_open", "referrals", ["performer", "status"])
    op.create_index("ix_referrals_encounter", "referrals", ["encounter_id"])
    op.create_index("ix_referrals_requested", "referrals", ["requested_at"])
    op.create_table(
        "referral_events",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_referral_events_at", "referral_events", ["at", "status"])
    op.create_index("ix_referral_events_request", "referral_events", ["request_id"])


def downgrade() -> None:
    op.drop_table("referral_events")
    op.drop_table("referrals")
