"""Patient index benchmark: linking throughput, $match latency, linking precision and recall.

    .venv/bin/python -m tests.bench.identity [--people 500000] [--matches 1000] [--db URL]

A labelled synthetic population (tests/bench/identity_data.py: realistic names, valid and
invalid resident IDs, typos, homophones, twins, newborns, foreigners) from 20 members is written
as FHIR transactions of 100 Patients through the real write path, into PostgreSQL (fsync on).
Printed in the same run:
  - linking: patients/s with the patient index, next to the same Bundles written into a second
    database with the index switched off (the ratio is what linking costs);
  - $match: p50/p99 of the index's match (features, blocking query, scoring) for records with
    their identifiers removed, next to an identifier search for the same records;
  - precision and recall of the links, over all pairs of records, against the truth.
Targets (issue 4): $match p99 <= 20 ms; precision >= 0.99.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select, text

from hub.db import make_engine
from hub.fhir import interactions
from hub.fhir.transaction import process_bundle
from hub.search.engine import find_matches
from hub.services.identity import lookup
from hub.services.identity.rules import load_rules
from hub.store.migrate import upgrade
from hub.store.repository import Writer
from hub.store.schema import mpi_records
from tests.bench.common import percentile, postgres
from tests.bench.identity_data import population

MEMBERS = ["XRMYY", "XZYY", "XFYBJY", "XJYZX", "XYXZX", "QSWSY", "HXWSY"] + [
    f"T{n:02d}WSY" for n in range(13)
]


def _records(people: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    records, truth = [], {}
    for person, resource in population(people, MEMBERS):
        if resource["id"] in truth:
            continue  # two random MRNs collided: one record is enough
        truth[resource["id"]] = person
        records.append(resource)
    return records, truth


def _bundles(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}}
                for r in records[i : i + 100]
            ],
        }
        for i in range(0, len(records), 100)
    ]


def _load(url: str, bundles: list[dict[str, Any]], index: bool) -> float:
    upgrade(url)
    engine = make_engine(url)
    original = interactions.Unit.on
    if not index:
        interactions.Unit.on = classmethod(  # type: ignore[method-assign]
            lambda cls, conn, validated=False: cls(conn, Writer(conn), validated)
        )
    try:
        start = time.perf_counter()
        for n, bundle in enumerate(bundles, start=1):
            process_bundle(engine, bundle, base_url="urn:bench", prefer_return="minimal")
            if n % 1000 == 0:  # a long run shows its rate as it goes
                done = n * 100
                print(f"  {'linked' if index else 'written'} {done:,} records, "
                      f"{done / (time.perf_counter() - start):,.0f}/s", flush=True)  # fmt: skip
        return time.perf_counter() - start
    finally:
        interactions.Unit.on = original  # type: ignore[method-assign]
        engine.dispose()


def _quality(url: str, truth: dict[str, str]) -> dict[str, float]:
    engine = make_engine(url)
    with engine.connect() as conn:
        master = dict(conn.execute(select(mpi_records.c.patient_id, mpi_records.c.master_id)).all())
    engine.dispose()

    def pairs(counter: Counter[Any]) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    linked = pairs(Counter(master[r] for r in truth))
    true = pairs(Counter(truth.values()))
    correct = pairs(Counter((master[r], truth[r]) for r in truth))
    return {
        "precision": correct / linked if linked else 1.0,
        "recall": correct / true if true else 1.0,
        "linked_pairs": linked,
        "true_pairs": true,
        "persons_true": len(set(truth.values())),
        "persons_found": len(set(master[r] for r in truth)),
    }


def _match_latency(url: str, records: list[dict[str, Any]], n: int) -> dict[str, float]:
    rng = random.Random(11)
    sample = rng.sample(records, min(n, len(records)))
    rules = load_rules()
    engine = make_engine(url)
    match_ms, search_ms = [], []
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for record in sample:
            probe = {k: v for k, v in record.items() if k not in ("id", "identifier")}
            t0 = time.perf_counter()
            lookup.match(conn, probe, rules, 10)
            match_ms.append((time.perf_counter() - t0) * 1000)
            ident = record["identifier"][0]
            t0 = time.perf_counter()
            find_matches(conn, "Patient", [("identifier", f"{ident['system']}|{ident['value']}")])
            search_ms.append((time.perf_counter() - t0) * 1000)
    engine.dispose()
    return {
        "match_p50_ms": percentile(match_ms, 50),
        "match_p99_ms": percentile(match_ms, 99),
        "search_p50_ms": percentile(search_ms, 50),
        "search_p99_ms": percentile(search_ms, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=500_000, help="persons (≈2 records each)")
    parser.add_argument("--matches", type=int, default=1000)
    parser.add_argument("--db", help="PostgreSQL server URL (default: a throw-away cluster)")
    parser.add_argument("--baseline-records", type=int, default=200_000,
                        help="records written without the index, for the ratio")  # fmt: skip
    args = parser.parse_args()
    records, truth = _records(args.people)
    bundles = _bundles(records)
    print(f"{len(records):,} Patient records of {len(set(truth.values())):,} persons, "
          f"{len(MEMBERS)} members")  # fmt: skip

    def run(server: str) -> dict[str, Any]:
        with psycopg.connect(server.replace("+psycopg", ""), autocommit=True) as conn:
            for name in ("bench_mpi", "bench_plain"):
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}").text)
                conn.execute(f"CREATE DATABASE {name}")
        base = server.rsplit("/", 1)[0]
        indexed, plain = f"{base}/bench_mpi", f"{base}/bench_plain"
        result: dict[str, Any] = {"records": len(records)}
        baseline = bundles[: max(1, args.baseline_records // 100)]
        result["plain_records"] = min(len(records), len(baseline) * 100)
        result["plain_s"] = _load(plain, baseline, index=False)
        result["indexed_s"] = _load(indexed, bundles, index=True)
        result.update(_quality(indexed, truth))
        result.update(_match_latency(indexed, records, args.matches))
        return result

    if args.db:
        result = run(args.db)
    else:
        with postgres() as url:
            result = run(url)
    n = result["records"]
    print(f"linking, with the index:   {n / result['indexed_s']:>8,.0f} patients/s")
    plain_rate = result["plain_records"] / result["plain_s"]
    print(f"writing, without it:       {plain_rate:>8,.0f} patients/s"
          f"   (ratio {n / result['indexed_s'] / plain_rate:.2f}; first "
          f"{result['plain_records']:,} records)")  # fmt: skip
    print(f"$match (no identifiers):   p50 {result['match_p50_ms']:.2f} ms  "
          f"p99 {result['match_p99_ms']:.2f} ms")  # fmt: skip
    print(f"identifier search:         p50 {result['search_p50_ms']:.2f} ms  "
          f"p99 {result['search_p99_ms']:.2f} ms")  # fmt: skip
    r = result
    print(f"links: precision {r['precision']:.4f}  recall {r['recall']:.4f}  "
          f"({r['linked_pairs']:,} linked pairs, {r['true_pairs']:,} true; "
          f"{r['persons_found']:,} persons found, {r['persons_true']:,} true)")  # fmt: skip
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "identity.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
