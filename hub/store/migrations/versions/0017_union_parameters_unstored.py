"""Observation combo-* search parameters: their own index rows are dropped

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24 12:30:00

combo-code is code | component-code, and so for the other three: the search engine now
answers them from their parts' rows (hub.search.definitions: SearchParam.union), so the
extractor no longer writes rows for them (15 of the ~125 index rows of a lab result
message).  Rows written before are only dead weight; they go.
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# Each token union and its parts (the downgrade writes the rows back from the parts').
_PARTS = {
    "combo-code": ("code", "component-code"),
    "combo-value-concept": ("value-concept", "component-value-concept"),
    "combo-data-absent-reason": ("data-absent-reason", "component-data-absent-reason"),
}


def upgrade() -> None:
    names = ", ".join(f"'{name}'" for name in _PARTS)
    op.execute(f"DELETE FROM idx_token WHERE res_type = 'Observation' AND param IN ({names})")
    op.execute(
        "DELETE FROM idx_quantity WHERE res_type = 'Observation' AND param = 'combo-value-quantity'"
    )


def downgrade() -> None:
    for union, (own, component) in _PARTS.items():
        op.execute(
            "INSERT INTO idx_token (rid, res_type, param, system, code, text) "
            f"SELECT DISTINCT rid, res_type, '{union}', system, code, text FROM idx_token "
            f"WHERE res_type = 'Observation' AND param IN ('{own}', '{component}')"
        )
    op.execute(
        "INSERT INTO idx_quantity (rid, res_type, param, value, system, code, unit, "
        "canon_value, canon_code) SELECT rid, res_type, 'combo-value-quantity', value, system, "
        "code, unit, canon_value, canon_code FROM idx_quantity WHERE res_type = 'Observation' "
        "AND param IN ('value-quantity', 'component-value-quantity')"
    )
