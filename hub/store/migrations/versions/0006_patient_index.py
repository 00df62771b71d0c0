"""the patient index: records, exact keys, distinct pairs, reviews, merges

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mpi_records",
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("master_id", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.Column("name_key", sa.String(128), nullable=True),
        sa.Column("birth_date", sa.String(10), nullable=True),
        sa.Column("gender", sa.String(16), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("features", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_mpi_records_master", "mpi_records", ["master_id"])
    op.create_index("ix_mpi_records_name", "mpi_records", ["name_key"])
    op.create_index("ix_mpi_records_birth", "mpi_records", ["birth_date", "gender"])
    op.create_index("ix_mpi_records_phone", "mpi_records", ["phone"])
    op.create_table(
        "mpi_keys",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), primary_key=True),
        sa.Column("patient_id", sa.String(64), primary_key=True),
    )
    op.create_index("ix_mpi_keys_patient", "mpi_keys", ["patient_id"])
    op.create_table(
        "mpi_distinct",
        sa.Column("a", sa.String(64), primary_key=True),
        sa.Column("b", sa.String(64), primary_key=True),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "mpi_reviews",
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("candidate_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "mpi_merges",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("moved", sa.Text, nullable=False),
        sa.Column("audit_event", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("undone_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_mpi_merges_source", "mpi_merges", ["source_id"])


def downgrade() -> None:
    for table in ("mpi_merges", "mpi_reviews", "mpi_distinct", "mpi_keys", "mpi_records"):
        op.drop_table(table)
