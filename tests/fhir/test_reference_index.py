"""idx_reference has one index led by the target (migration 0016): searches, reverse look-ups
and :missing must all still be answered through an index, not by reading the table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub.store.schema import idx_reference

pytestmark = pytest.mark.usefixtures("clean_db")


def _plan(conn: sa.Connection, sql: str) -> str:
    return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))


def test_searches_and_reverse_lookups_use_the_target_index(engine: sa.Engine, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("plans are checked on PostgreSQL")
    rows = [
        {"rid": n, "res_type": t, "param": p, "target_type": tt, "target_id": f"p{n % 5000}"}
        for n in range(20_000)
        for t, p, tt in (("Observation", "subject", "Patient"), ("Provenance", "target", "Patient"))
    ]
    with engine.begin() as conn:
        conn.execute(idx_reference.insert(), rows)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE idx_reference")
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        search = (
            "SELECT rid FROM idx_reference WHERE res_type = 'Observation' AND param = 'subject' "
            "AND target_type = 'Patient' AND target_id = 'p42'"
        )
        assert "ix_reference_by_target" in _plan(conn, search)
        reverse = (
            "SELECT rid FROM idx_reference WHERE target_type = 'Patient' AND target_id = 'p42'"
        )
        assert "ix_reference_by_target" in _plan(conn, reverse)
        missing = "SELECT 1 FROM idx_reference m WHERE m.rid = 77 AND m.param = 'subject'"
        assert "ix_reference_rid" in _plan(conn, missing)
        found = conn.exec_driver_sql(search).scalars().all()
        assert sorted(found) == [42, 5042, 10042, 15042]
        conn.rollback()
