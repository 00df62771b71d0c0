"""Ingest benchmark: the hub over HTTP on PostgreSQL against a raw COPY of the same rows.

    .venv/bin/python -m tests.bench.ingest [--db URL] [--bundles 60] [--singles 2000]
        [--clients 4] [--workers 2]

Prints resources/s for single creates and for 100-entry transaction Bundles (10
DiagnosticReports with 9 Observations each), and rows/s of a COPY of the same stored JSON into
plain tables shaped like ``resources`` and ``resource_history`` in the same database, with the
ratio.  Targets (issue 2): ≥ 3,000 resources/s in transactions; ≥ 0.1 of COPY.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from sqlalchemy.engine import make_url

from hub.store.migrate import upgrade
from tests.bench.common import auth, copy_as_stored, hub_server, lab_bundle, observation, postgres

FHIR = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}


def _post_all(base: str, path: str, bodies: list[bytes], clients: int) -> float:
    """POST every body from ``clients`` threads (one HTTP connection each); seconds taken."""
    start = time.perf_counter()
    local = threading.local()

    def send(body: bytes) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=base, timeout=120, headers=auth(base))
        local.http.post(path, content=body, headers=FHIR).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, bodies))
    return time.perf_counter() - start


def _copy_baseline(db_url: str) -> tuple[int, float]:
    """COPY the hub's own stored rows (resources + history) into plain look-alike tables."""
    dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=False) as conn:
        rows = conn.execute(
            "SELECT rid, res_type, res_id, version_id, last_updated, deleted, content "
            "FROM resources WHERE res_type IN ('Observation', 'DiagnosticReport')"
        ).fetchall()
        elapsed = copy_as_stored(conn, rows)
    return len(rows), elapsed


_STORE_TABLES = (
    "resources",
    "resource_history",
    "idx_token",
    "idx_string",
    "idx_date",
    "idx_reference",
    "idx_quantity",
    "idx_uri",
    "idx_number",
)


def _copy_store_baseline(db_url: str) -> tuple[int, float]:
    """COPY every row the hub wrote (JSON, history and index rows) into indexed look-alikes.

    Not the issue's baseline: a floor for the database's share of the hub's own layout, so the
    report can say how much of the gap to the plain COPY is the index the searches need.
    """
    dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=False) as conn:
        data = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in _STORE_TABLES}
        resources = len(data["resources"])
        for t in _STORE_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS floor_{t}")
            conn.execute(f"CREATE TABLE floor_{t} (LIKE {t} INCLUDING INDEXES)")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur:
            for t in _STORE_TABLES:
                with cur.copy(f"COPY floor_{t} FROM STDIN") as copy:
                    for row in data[t]:
                        copy.write_row(row)
        conn.commit()
        elapsed = time.perf_counter() - start
        for t in _STORE_TABLES:
            conn.execute(f"DROP TABLE floor_{t}")
        conn.commit()
    return resources, elapsed


def run(db_url: str, args: argparse.Namespace) -> dict[str, Any]:
    upgrade(db_url)
    rng = random.Random(7)
    bundles = [orjson.dumps(lab_bundle(rng)) for _ in range(args.bundles)]
    singles = [
        orjson.dumps(observation(rng, f"Patient/p{i % 500}", "2026-10-03T08:30:00+08:00"))
        for i in range(args.singles)
    ]
    with hub_server(db_url, workers=args.workers) as base:
        _post_all(base, "/fhir", bundles[:4], args.clients)  # warm-up: pools, caches, plans
        tx_seconds = _post_all(base, "/fhir", bundles[4:], args.clients)
        single_seconds = _post_all(base, "/fhir/Observation", singles, args.clients)
    tx_resources = (len(bundles) - 4) * 100
    # Best of three: a COPY of a few thousand rows takes a tenth of a second, so one run is noisy.
    copied, copy_seconds = min((_copy_baseline(db_url) for _ in range(3)), key=lambda r: r[1])
    floor_resources, floor_seconds = min(
        (_copy_store_baseline(db_url) for _ in range(3)), key=lambda r: r[1]
    )
    result = {
        "transaction_resources_per_s": tx_resources / tx_seconds,
        "single_create_resources_per_s": len(singles) / single_seconds,
        "copy_rows_per_s": copied / copy_seconds,
        "copy_rows": copied,
        "store_copy_resources_per_s": floor_resources / floor_seconds,
        "workers": args.workers,
        "clients": args.clients,
    }
    result["transaction_vs_copy"] = (
        result["transaction_resources_per_s"] / result["copy_rows_per_s"]
    )
    result["single_vs_copy"] = result["single_create_resources_per_s"] / result["copy_rows_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="PostgreSQL URL (default: a throw-away cluster)")
    parser.add_argument("--bundles", type=int, default=64)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.db:
        result = run(args.db, args)
    else:
        with postgres() as url:
            result = run(url, args)
    print(f"hub workers={result['workers']} clients={result['clients']} (PostgreSQL, fsync on)")
    print(f"{'measure':<42}{'per second':>14}{'vs COPY':>10}")
    print(
        f"{'transaction bundles (100 entries)':<42}"
        f"{result['transaction_resources_per_s']:>14,.0f}{result['transaction_vs_copy']:>10.3f}"
    )
    print(
        f"{'single creates':<42}"
        f"{result['single_create_resources_per_s']:>14,.0f}{result['single_vs_copy']:>10.3f}"
    )
    print(f"{'baseline: COPY of the same rows':<42}{result['copy_rows_per_s']:>14,.0f}{1:>10.3f}")
    floor = result["store_copy_resources_per_s"]
    print(
        f"{'(COPY of all rows the hub writes, indexed)':<42}{floor:>14,.0f}"
        f"{floor / result['copy_rows_per_s']:>10.3f}"
    )
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
