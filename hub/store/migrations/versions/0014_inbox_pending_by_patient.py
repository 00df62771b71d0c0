"""inbox: pending messages by patient, for the stream workers' order check

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24 10:00:00

With Redis Streams any worker process may take any message; before applying a batch it applies
the same patients' earlier messages still pending (hub.queue.stream_workers).  That lookup runs
per batch, so it must not scan the whole pending backlog: a partial index holds only pending
rows, by patient key and id.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_inbox_pending_patient",
        "inbox",
        ["patient_key", "id"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_inbox_pending_patient", table_name="inbox")
