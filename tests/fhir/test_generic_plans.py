"""Constant resource types are written into statements (``of_type``): pooled PostgreSQL
connections reuse generic plans, which cannot tell a rare type from a common one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub.store.schema import of_type, resources

pytestmark = pytest.mark.usefixtures("clean_db")


def _plan(conn: sa.Connection, sql: str) -> str:
    return "\n".join(r[0] for r in conn.exec_driver_sql(sql))


def test_a_rare_type_is_read_by_index_under_a_generic_plan(engine: sa.Engine, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("generic plans are PostgreSQL's")

    def row(res_type: str, n: int) -> dict[str, object]:
        return {"res_type": res_type, "res_id": f"{res_type[0].lower()}{n}", "version_id": 1,
                "last_updated": n, "deleted": False, "content": "{}"}  # fmt: skip

    rows = [row("DiagnosticReport", n) for n in range(5000)]
    rows += [row("Subscription", 0), row("Subscription", 1)]
    with engine.begin() as conn:
        conn.execute(resources.insert(), rows)
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE resources")
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_generic_plan"
        query = sa.select(resources.c.res_id).where(of_type("Subscription"), ~resources.c.deleted)
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True}))
        assert "'Subscription'" in sql
        conn.exec_driver_sql(f"PREPARE literal AS {sql}")
        assert "Index" in _plan(conn, "EXPLAIN EXECUTE literal")
        # Why: the same statement with the type as a parameter reads the whole table.
        conn.exec_driver_sql(sql.replace("'Subscription'", "$1").join(
            ["PREPARE bound(varchar) AS ", ""]))  # fmt: skip
        assert "Seq Scan" in _plan(conn, "EXPLAIN EXECUTE bound('Subscription')")
        found = sorted(conn.execute(query).scalars())
        assert found == ["s0", "s1"]
        conn.rollback()
