"""idx_reference: one index by target instead of a lookup index and a target index

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24 12:00:00

Every reference a resource holds is a row here (~40 for a lab result message), and each row
was inserted into three B-trees.  The lookup index (res_type, param, target_id, target_type)
and the target index (target_type, target_id) are replaced by one index led by the target:
searches give all four columns as equalities, reverse look-ups ("what points at
Patient/x": merges, $everything, _revinclude) give the target alone.  Only ``:missing`` asked
for (res_type, param) without a target; it now probes the rid index per resource instead.
PostgreSQL's CPU for a reference row fell by about a third.
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_reference_by_target",
        "idx_reference",
        ["target_id", "target_type", "res_type", "param"],
    )
    op.drop_index("ix_reference_lookup", table_name="idx_reference")
    op.drop_index("ix_reference_target", table_name="idx_reference")


def downgrade() -> None:
    op.create_index(
        "ix_reference_lookup", "idx_reference", ["res_type", "param", "target_id", "target_type"]
    )
    op.create_index("ix_reference_target", "idx_reference", ["target_type", "target_id"])
    op.drop_index("ix_reference_by_target", table_name="idx_reference")
