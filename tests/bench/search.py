"""Search benchmark: the hub's search against hand-written indexed SQL for the same answer.

    .venv/bin/python -m tests.bench.search [--db URL [--no-load]] [--scale 1.0] [--queries 300]
        [--explain]

Loads ``scale`` × (100k Patients, 200k DiagnosticReports, 1M Observations) through the hub's
own store (the repository Writer: JSON, history and index rows, as every write path does; in
two processes), then times, for random patients and codes,
  Q1  DiagnosticReport?patient=X&code=Y&date=ge2026-01-01
  Q2  Observation?patient=X&code=Y&_sort=-date&_count=10
(a) through the search engine in-process, Bundle included; (b) over HTTP against ``hub serve``;
(c) hand-written SQL over the same tables returning the same resources' JSON.  It checks that
(a) and (c) return the same ids in the same order, and prints p50/p99 and the ratios.
Target (issue 2): p50 of (a) ≤ 2 × (c).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from hub.db import make_engine
from hub.fhir.bundles import searchset
from hub.search.engine import search
from hub.store.migrate import upgrade
from hub.store.repository import Writer
from tests.bench.common import (
    LAB_ITEMS,
    LOINC,
    PANELS,
    auth,
    hub_server,
    observation,
    patient,
    percentile,
    postgres,
    random_time,
    report,
)

REPORTS_PER_PATIENT = 2
OBS_PER_REPORT = 5

Q1_SQL = """
SELECT r.rid, r.res_id, r.content
FROM idx_reference p JOIN resources r ON r.rid = p.rid
WHERE p.res_type = 'DiagnosticReport' AND p.param = 'patient'
  AND p.target_type = 'Patient' AND p.target_id = %(patient)s
  AND NOT r.deleted
  AND EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code'
              AND t.code = %(code)s AND t.system = %(system)s)
  AND EXISTS (SELECT 1 FROM idx_date d WHERE d.rid = r.rid AND d.param = 'date'
              AND d.hi > %(since)s)
ORDER BY r.rid LIMIT 21
"""
Q2_SQL = """
SELECT r.rid, r.res_id, r.content
FROM idx_reference p
JOIN resources r ON r.rid = p.rid
JOIN idx_date d ON d.rid = r.rid AND d.param = 'date'
WHERE p.res_type = 'Observation' AND p.param = 'patient'
  AND p.target_type = 'Patient' AND p.target_id = %(patient)s
  AND NOT r.deleted
  AND EXISTS (SELECT 1 FROM idx_token t WHERE t.rid = r.rid AND t.param = 'code'
              AND t.code = %(code)s AND t.system = %(system)s)
ORDER BY d.lo DESC, r.rid LIMIT 11
"""


def _load_range(args: tuple[str, int, int, int]) -> int:
    db_url, first, last, seed = args
    rng = random.Random(seed)
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    written = 0
    batch_patients = 50
    for start in range(first, last, batch_patients):
        with engine.begin() as conn:
            writer = Writer(conn)
            for n in range(start, min(start + batch_patients, last)):
                pid = f"p{n}"
                writer.create(patient(rng, n), pid)
                written += 1
                for _ in range(REPORTS_PER_PATIENT):
                    when = random_time(rng)
                    items = rng.sample(LAB_ITEMS, OBS_PER_REPORT)
                    refs = []
                    for item in items:
                        stored = writer.create(observation(rng, f"Patient/{pid}", when, item))
                        refs.append(f"Observation/{stored.res_id}")
                    writer.create(report(f"Patient/{pid}", when, rng.choice(PANELS), refs))
                    written += OBS_PER_REPORT + 1
            writer.flush()
    engine.dispose()
    return written


def load(db_url: str, patients: int, processes: int = 2) -> tuple[int, float]:
    chunk = (patients + processes - 1) // processes
    jobs = [(db_url, i * chunk, min((i + 1) * chunk, patients), i) for i in range(processes)]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        total = sum(pool.map(_load_range, jobs))
    elapsed = time.perf_counter() - start
    dsn = _dsn(db_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return total, elapsed


def _dsn(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _queries(rng: random.Random, patients: int, n: int) -> list[tuple[str, dict[str, str]]]:
    out = []
    for i in range(n):
        pid = f"p{rng.randrange(patients)}"
        if i % 2 == 0:
            code = rng.choice(PANELS)[0]
            out.append(("Q1", {"patient": pid, "code": code}))
        else:
            code = rng.choice(LAB_ITEMS)[0]
            out.append(("Q2", {"patient": pid, "code": code}))
    return out


def _params(kind: str, q: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    if kind == "Q1":
        return "DiagnosticReport", [
            ("patient", q["patient"]),
            ("code", f"{LOINC}|{q['code']}"),
            ("date", "ge2026-01-01"),
        ]
    return "Observation", [
        ("patient", q["patient"]),
        ("code", f"{LOINC}|{q['code']}"),
        ("_sort", "-date"),
        ("_count", "10"),
    ]


def _timed(action: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


def measure(db_url: str, patients: int, n: int, explain: bool) -> dict[str, Any]:
    from hub.search.values import date_range

    rng = random.Random(11)
    queries = _queries(rng, patients, n)
    engine = make_engine(db_url)
    since = date_range("2026-01-01")[0]
    times: dict[str, dict[str, list[float]]] = {
        q: {"engine": [], "http": [], "sql": []} for q in ("Q1", "Q2")
    }
    mismatches = 0
    with psycopg.connect(_dsn(db_url), autocommit=True) as raw, engine.connect() as conn:
        # As the hub's read path does (hub.fhir.routes._read): no BEGIN/ROLLBACK per search.
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for kind, q in queries[:20]:  # warm caches for both paths
            res_type, params = _params(kind, q)
            search(conn, res_type, params)
            raw.execute(
                Q1_SQL if kind == "Q1" else Q2_SQL, {**q, "system": LOINC, "since": since}
            ).fetchall()
            conn.rollback()
        for i, (kind, q) in enumerate(queries):
            res_type, params = _params(kind, q)
            sql = Q1_SQL if kind == "Q1" else Q2_SQL

            def run_engine() -> Any:
                found = search(conn, res_type, params)  # noqa: B023 - called at once
                searchset(found, base="http://hub/fhir", path=res_type)  # noqa: B023
                return found

            def run_sql() -> list[Any]:
                return raw.execute(sql, {**q, "system": LOINC, "since": since}).fetchall()  # noqa: B023

            # Alternate which side goes first: the first one warms the pages for the second.
            if i % 2 == 0:
                engine_s, result = _timed(run_engine)
                sql_s, rows = _timed(run_sql)
            else:
                sql_s, rows = _timed(run_sql)
                engine_s, result = _timed(run_engine)
            limit = 20 if kind == "Q1" else 10
            if [m[1] for m in result.matches] != [r[1] for r in rows[:limit]]:
                mismatches += 1
            times[kind]["engine"].append(engine_s)
            times[kind]["sql"].append(sql_s)
        if explain:
            _explain(raw, conn, queries, since)
    engine.dispose()
    with (
        hub_server(db_url, workers=1) as base,
        httpx.Client(base_url=base, timeout=30, headers=auth(base)) as http,
    ):
        for kind, q in queries[:20]:
            res_type, params = _params(kind, q)
            http.get(f"/fhir/{res_type}", params=params)
        for kind, q in queries:
            res_type, params = _params(kind, q)
            t0 = time.perf_counter()
            http.get(f"/fhir/{res_type}", params=params).raise_for_status()
            times[kind]["http"].append(time.perf_counter() - t0)
    summary: dict[str, Any] = {"mismatches": mismatches, "queries": len(queries)}
    for kind, paths in times.items():
        summary[kind] = {
            path: {"p50_ms": percentile(v, 50) * 1000, "p99_ms": percentile(v, 99) * 1000}
            for path, v in paths.items()
        }
        sql50 = summary[kind]["sql"]["p50_ms"]
        summary[kind]["engine_vs_sql_p50"] = summary[kind]["engine"]["p50_ms"] / sql50
        summary[kind]["http_vs_sql_p50"] = summary[kind]["http"]["p50_ms"] / sql50
    return summary


def _page_sql(conn: Any, res_type: str, params: list[tuple[str, str]]) -> str:
    """The SQL text (with literal values) of the page query the engine runs."""
    from sqlalchemy import event
    from sqlalchemy.dialects import postgresql

    captured: list[str] = []

    def capture(_conn: Any, clause: Any, *_args: Any) -> None:
        if hasattr(clause, "compile") and not captured:
            compiled = clause.compile(
                dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
            )
            captured.append(str(compiled))

    event.listen(conn, "before_execute", capture)
    search(conn, res_type, params)
    event.remove(conn, "before_execute", capture)
    conn.rollback()
    return captured[0]


def _explain(raw: psycopg.Connection[Any], conn: Any, queries: list[Any], since: int) -> None:
    for kind in ("Q1", "Q2"):
        q = next(q for k, q in queries if k == kind)
        print(f"--- {kind} hand-written")
        for (line,) in raw.execute(
            "EXPLAIN ANALYZE " + (Q1_SQL if kind == "Q1" else Q2_SQL),
            {**q, "system": LOINC, "since": since},
        ):
            print(line)
        print(f"--- {kind} hub-generated")
        res_type, params = _params(kind, q)
        sql = _page_sql(conn, res_type, params)
        for (line,) in raw.execute("EXPLAIN ANALYZE " + sql):
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="PostgreSQL URL (default: a throw-away cluster)")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--no-load", action="store_true", help="with --db: measure data loaded by an earlier run"
    )
    args = parser.parse_args()
    patients = int(100_000 * args.scale)

    def run(url: str) -> dict[str, Any]:
        upgrade(url)
        if args.no_load and args.db:
            return measure(url, patients, args.queries, args.explain)
        total, seconds = load(url, patients)
        print(
            f"loaded {total:,} resources in {seconds:,.0f} s ({total / seconds:,.0f}/s) "
            f"through the store's Writer in 2 processes"
        )
        result = measure(url, patients, args.queries, args.explain)
        result["loaded"] = total
        result["load_per_s"] = total / seconds
        return result

    if args.db:
        result = run(args.db)
    else:
        with postgres() as url:
            result = run(url)
    print(
        f"{patients:,} Patients, {patients * 2:,} DiagnosticReports, "
        f"{patients * 10:,} Observations; {result['queries']} queries; "
        f"id mismatches engine vs SQL: {result['mismatches']}"
    )
    print(f"{'query':<6}{'path':<22}{'p50 ms':>9}{'p99 ms':>9}{'p50 vs SQL':>12}")
    for kind in ("Q1", "Q2"):
        r = result[kind]
        for path, label in (
            ("engine", "hub search engine"),
            ("http", "hub over HTTP"),
            ("sql", "hand-written SQL"),
        ):
            ratio = r[path]["p50_ms"] / r["sql"]["p50_ms"]
            print(
                f"{kind:<6}{label:<22}{r[path]['p50_ms']:>9.2f}{r[path]['p99_ms']:>9.2f}"
                f"{ratio:>12.2f}"
            )
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "search.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
