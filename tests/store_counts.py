"""Counting what the store holds, for tests that check nothing was (or one thing was) written."""

from __future__ import annotations

import sqlalchemy as sa


def live_count(engine: sa.Engine, res_type: str) -> int:
    """Resources of the type that exist and are not deleted."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text(
            "SELECT count(*) FROM resources WHERE res_type = :t AND NOT deleted"), {"t": res_type}
        ).scalar_one())  # fmt: skip
