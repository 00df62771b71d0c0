"""Constant resource types are written into statements (``of_type``): pooled PostgreSQL
connections reuse generic plans, which cannot tell a rare type from a common one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hub.store.schema import idx_token, of_type, resources

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


def test_identifier_lookups_probe_the_index_whatever_the_statistics_say(
    engine: sa.Engine, backend: str
) -> None:
    """A feed's conditional writes are looked up together (``match_identifiers``).  On a young
    store the statistics describe a nearly empty idx_token; trusted, they made the lookup scan
    the whole table once per wanted identifier, ever slower until autovacuum caught up."""
    if backend != "postgresql":
        pytest.skip("generic plans are PostgreSQL's")
    from hub.search.engine import identifier_queries, match_identifiers

    system = "https://ygt.example.org/fhir/sid/XJYZX/obx"

    def tokens(rids: range, param: str, res_type: str = "Observation") -> list[dict[str, object]]:
        return [{"rid": n, "res_type": res_type, "param": param, "system": system,
                 "code": f"LAB{n}", "text": None} for n in rids]  # fmt: skip

    with engine.begin() as conn:
        conn.execute(resources.insert(), [
            {"rid": n, "res_type": "Observation", "res_id": f"o{n}", "version_id": 1,
             "last_updated": n, "deleted": False, "content": "{}"}
            for n in range(1, 1001)
        ])  # fmt: skip
        # Analysed while it held few identifiers (a store just set up), then fed.
        conn.execute(idx_token.insert(), tokens(range(1, 301), "code"))
        conn.execute(idx_token.insert(), tokens(range(1, 31), "identifier", "Organization"))
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE idx_token")
        conn.execute(idx_token.insert(), tokens(range(1, 501), "identifier"))
        conn.execute(idx_token.insert(), tokens(range(1, 501), "status"))
    wanted = [("Observation", system, f"LAB{n}") for n in (7, 499, 123456)]
    with engine.connect() as conn:
        [query] = identifier_queries("postgresql", wanted)
        # Prepared, as pooled connections run it: one generic plan for any identifiers.
        numbered = query.text
        for n in range(1, len(query.params) + 1):
            numbered = numbered.replace("?", f"${n}", 1)
        conn.exec_driver_sql(f"PREPARE ident(text, text) AS {numbered}")
        one = '[{"t": "Observation", "s": "a", "c": "b"}]'
        plan = _plan(conn, f"EXPLAIN EXECUTE ident('{one}', 'mpi-%%')")
        assert "Seq Scan on idx_token" not in plan, plan
        assert "ix_token_lookup" in plan, plan
        found = match_identifiers(conn, wanted)
        assert found == {
            wanted[0]: [(7, "o7")],
            wanted[1]: [(499, "o499")],
            wanted[2]: [],
        }
        conn.rollback()
