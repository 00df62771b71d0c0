"""inbox: the raw message and its mapped Bundle compressed with lz4

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24 00:30:00

A mapped ORU with five results is an ~11 KB Bundle, so every inbox row is compressed out of
line (TOAST) when intake writes it and decompressed when a worker reads it.  PostgreSQL's own
pglz costs ~60 µs of the database's CPU per message at intake; lz4 is several times faster for
a slightly larger row.  Only on a server built with lz4 (PostgreSQL 14 or later, as Debian and
the official images are); elsewhere the columns keep the default.  Rows already written keep
their compression until rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_COLUMNS = ("raw", "bundle")


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    return bool(
        bind.execute(
            sa.text(
                "SELECT coalesce(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            )
        ).scalar()
    )


def upgrade() -> None:
    if _lz4_available():
        for column in _COLUMNS:
            op.execute(f"ALTER TABLE inbox ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column in _COLUMNS:
            op.execute(f"ALTER TABLE inbox ALTER COLUMN {column} SET COMPRESSION default")
