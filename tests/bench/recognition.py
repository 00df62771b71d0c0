"""Recognition benchmark: $recognize under 50 concurrent clients against hand-written SQL.

    .venv/bin/python -m tests.bench.recognition [--reports 1000000] [--calls 3000]
        [--clients 50] [--db URL [--no-load]]

Loads ``reports`` DiagnosticReports (10 performing members, 10 catalogue lab items, mostly
final, dated over the last 120 days; 5 per patient) through the store's Writer, then, with
``clients`` concurrent clients, asks ``hub serve`` over HTTP ``ServiceRequest/$recognize`` for
3 items of a random patient (each call also records its checks: a write transaction), and
runs, with as many concurrent connections, one hand-written SQL query answering the same
question (final reports of the patient for the items, still valid, by a lab certified on the
result's day).  Prints p50/p99 of both and their ratio.  Target (issue 5): p99 <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from hub.db import make_engine
from hub.services.recognition.catalogue import load_catalogue
from hub.store.migrate import upgrade
from hub.store.repository import Writer
from tests.bench.common import auth, hub_server, percentile, postgres

TZ = timezone(timedelta(hours=8))
LOINC = "http://loinc.org"
LABS = ["XJYZX", "XRMYY", "QSWSY", "BSWSY", "HXWSY", "LTWSY", "SKWSY", "DQWSY", "CDSQ", "CXSQ"]
ITEMS = ["58410-2", "24356-8", "24325-3", "24362-6", "57698-3", "1558-6", "4548-4",
         "24326-1", "1988-5", "2345-7"]  # fmt: skip
PER_PATIENT = 5
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=TZ)
FHIR = {"Content-Type": "application/fhir+json"}

SQL = """
SELECT r.res_id, r.content FROM resources r
WHERE r.res_type = 'DiagnosticReport' AND NOT r.deleted
  AND r.rid IN (SELECT rid FROM idx_reference WHERE res_type = 'DiagnosticReport'
                AND param = 'subject' AND target_type = 'Patient' AND target_id = %(patient)s)
  AND r.rid IN (SELECT rid FROM idx_token WHERE res_type = 'DiagnosticReport' AND param = 'code'
                AND system = 'http://loinc.org' AND code = ANY(%(codes)s))
  AND r.rid IN (SELECT rid FROM idx_token WHERE res_type = 'DiagnosticReport'
                AND param = 'status' AND code IN ('final', 'appended'))
  AND r.rid IN (SELECT rid FROM idx_date WHERE res_type = 'DiagnosticReport' AND param = 'date'
                AND lo >= %(since)s)
  AND r.rid IN (SELECT rid FROM idx_reference WHERE res_type = 'DiagnosticReport'
                AND param = 'performer' AND target_id = ANY(%(labs)s))
ORDER BY r.last_updated DESC
"""


def _report(rng: random.Random, patient: str) -> dict[str, Any]:
    when = NOW - timedelta(days=rng.uniform(0, 120))
    status = rng.choices(["final", "preliminary", "corrected", "cancelled"], [90, 5, 4, 1])[0]
    return {
        "resourceType": "DiagnosticReport",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": rng.choice(ITEMS)}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when.isoformat(timespec="seconds"),
        "performer": [{"reference": f"Organization/{rng.choice(LABS)}"}],
    }


def _load_range(args: tuple[str, int, int, int]) -> int:
    db_url, first, last, seed = args
    rng = random.Random(seed)
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    for start in range(first, last, 200):
        with engine.begin() as conn:
            writer = Writer(conn)
            for n in range(start, min(start + 200, last)):
                for _ in range(PER_PATIENT):
                    writer.create(_report(rng, f"r{n}"))
            writer.flush()
    engine.dispose()
    return (last - first) * PER_PATIENT


def load(db_url: str, reports: int) -> float:
    patients = reports // PER_PATIENT
    half = patients // 2
    jobs = [(db_url, 0, half, 1), (db_url, half, patients, 2)]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_load_range, jobs)
    elapsed = time.perf_counter() - start
    with psycopg.connect(_dsn(db_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return elapsed


def _dsn(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _questions(patients: int, calls: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(5)
    return [(f"r{rng.randrange(patients)}", rng.sample(ITEMS, 3)) for _ in range(calls)]


async def _http(base: str, questions: list[tuple[str, list[str]]], clients: int) -> list[float]:
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
    for q in questions:
        queue.put_nowait(q)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60, headers=auth(base)) as http:
            while not queue.empty():
                patient, codes = queue.get_nowait()
                body = {"resourceType": "Parameters", "parameter": [
                    {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
                    {"name": "at", "valueDateTime": NOW.isoformat()},
                    {"name": "orderer", "valueReference": {"reference": "Organization/QSWSY"}},
                    *({"name": "code", "valueCoding": {"system": LOINC, "code": c}} for c in codes),
                ]}  # fmt: skip
                t0 = time.perf_counter()
                res = await http.post("/fhir/ServiceRequest/$recognize", json=body, headers=FHIR)
                latencies.append(time.perf_counter() - t0)
                res.raise_for_status()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def _sql(db_url: str, questions: list[tuple[str, list[str]]], clients: int) -> list[float]:
    catalogue = load_catalogue()
    longest = max(catalogue.item(c).validity_days for c in ITEMS)  # type: ignore[union-attr]
    since = int((NOW - timedelta(days=longest + 1)).timestamp() * 1_000_000)
    latencies: list[float] = []
    lock = threading.Lock()
    todo = list(questions)
    connections = [psycopg.connect(_dsn(db_url), autocommit=True) for _ in range(clients)]

    def worker(conn: psycopg.Connection[Any]) -> None:
        while True:
            with lock:
                if not todo:
                    return
                patient, codes = todo.pop()
            t0 = time.perf_counter()
            conn.execute(SQL, {"patient": patient, "codes": codes, "since": since,
                               "labs": ["XJYZX", "XRMYY"]}).fetchall()  # fmt: skip
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(c,)) for c in connections]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conn in connections:
        conn.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--db", help="PostgreSQL URL (default: a throw-away cluster)")
    parser.add_argument("--no-load", action="store_true")
    args = parser.parse_args()

    def bench(url: str) -> dict[str, Any]:
        upgrade(url)
        result: dict[str, Any] = {"reports": args.reports}
        if not args.no_load:
            result["load_s"] = load(url, args.reports)
        questions = _questions(args.reports // PER_PATIENT, args.calls)
        with hub_server(url, workers=2) as base:
            asyncio.run(_http(base, questions[:100], args.clients))  # warm-up
            http = asyncio.run(_http(base, questions, args.clients))
        sql = _sql(url, questions, args.clients)
        result.update(
            http_p50_ms=percentile(http, 50) * 1000, http_p99_ms=percentile(http, 99) * 1000,
            sql_p50_ms=percentile(sql, 50) * 1000, sql_p99_ms=percentile(sql, 99) * 1000,
        )  # fmt: skip
        return result

    if args.db:
        result = bench(args.db)
    else:
        with postgres() as url:
            result = bench(url)
    r = result
    print(f"{r['reports']:,} DiagnosticReports, {args.clients} concurrent clients, 3 items a call")
    print(f"$recognize over HTTP:   p50 {r['http_p50_ms']:.1f} ms   p99 {r['http_p99_ms']:.1f} ms")
    print(f"hand-written SQL:       p50 {r['sql_p50_ms']:.1f} ms   p99 {r['sql_p99_ms']:.1f} ms"
          f"   (p99 ratio {r['http_p99_ms'] / r['sql_p99_ms']:.1f})")  # fmt: skip
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "recognition.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
