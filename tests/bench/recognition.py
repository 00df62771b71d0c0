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
from hub.fhir.interactions import Unit
from hub.services.recognition.catalogue import load_catalogue
from hub.services.recognition.marking import remark_if_changed
from hub.store.migrate import upgrade
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
            writer = Unit.on(conn).writer  # with the hub's hooks: reports get their HR mark
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
    # What the hub's first start would do (judge every stored report once, keep the digest),
    # done here so the start the benchmark waits for is an ordinary one.
    engine = make_engine(db_url)
    remark_if_changed(engine)
    engine.dispose()
    with psycopg.connect(_dsn(db_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return elapsed


def _dsn(db_url: str) -> str:
    return make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _questions(patients: int, calls: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(5)
    return [(f"r{rng.randrange(patients)}", rng.sample(ITEMS, 3)) for _ in range(calls)]


def _body(patient: str, codes: list[str]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
        {"name": "at", "valueDateTime": NOW.isoformat()},
        {"name": "orderer", "valueReference": {"reference": "Organization/QSWSY"}},
        *({"name": "code", "valueCoding": {"system": LOINC, "code": c}} for c in codes),
    ]}  # fmt: skip


async def _http(
    base: str, questions: list[tuple[str, list[str]]], clients: int, rate: float | None = None
) -> list[float]:
    """Latencies of ``questions`` asked by ``clients`` concurrent clients.

    Without ``rate`` each client asks its next question as soon as it has the answer (the
    hub saturated: latency is mostly waiting behind the other 49).  With ``rate`` the
    questions are due at that many a second in all, spread over the clients, and latency runs
    from when a question was due (so a slow answer also counts against the ones queued behind
    it: no coordinated omission)."""
    latencies: list[float] = []
    # Every client connects first (a warm keep-alive connection, as a HIS holds one), so the
    # timed part measures answers, not 50 TCP handshakes and the clients' own start.
    https = [
        httpx.AsyncClient(base_url=base, timeout=60, headers=auth(base)) for _ in range(clients)
    ]
    await asyncio.gather(*(http.get("/fhir/metadata") for http in https))
    start = time.perf_counter() + 0.2

    async def client(
        http: httpx.AsyncClient, mine: list[tuple[int, tuple[str, list[str]]]]
    ) -> None:
        for n, (patient, codes) in mine:
            due = time.perf_counter() if rate is None else start + n / rate
            if rate is not None:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            res = await http.post(
                "/fhir/ServiceRequest/$recognize", json=_body(patient, codes), headers=FHIR
            )
            latencies.append(time.perf_counter() - due)
            res.raise_for_status()

    numbered = list(enumerate(questions))
    try:
        await asyncio.gather(*(client(h, numbered[i::clients]) for i, h in enumerate(https)))
    finally:
        await asyncio.gather(*(http.aclose() for http in https))
    return latencies


def _sql(
    db_url: str, questions: list[tuple[str, list[str]]], clients: int, rate: float | None = None
) -> list[float]:
    """The hand-written query, asked the same way as ``_http`` asks the hub."""
    catalogue = load_catalogue()
    longest = max(catalogue.item(c).validity_days for c in ITEMS)  # type: ignore[union-attr]
    since = int((NOW - timedelta(days=longest + 1)).timestamp() * 1_000_000)
    latencies: list[float] = []
    lock = threading.Lock()
    numbered = list(enumerate(questions))
    connections = [psycopg.connect(_dsn(db_url), autocommit=True) for _ in range(clients)]
    start = time.perf_counter() + 0.5

    def worker(
        conn: psycopg.Connection[Any], mine: list[tuple[int, tuple[str, list[str]]]]
    ) -> None:
        for n, (patient, codes) in mine:
            due = time.perf_counter() if rate is None else start + n / rate
            if rate is not None:
                time.sleep(max(0.0, due - time.perf_counter()))
            conn.execute(SQL, {"patient": patient, "codes": codes, "since": since,
                               "labs": ["XJYZX", "XRMYY"]}).fetchall()  # fmt: skip
            with lock:
                latencies.append(time.perf_counter() - due)

    threads = [
        threading.Thread(target=worker, args=(c, numbered[i::clients]))
        for i, c in enumerate(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conn in connections:
        conn.close()
    return latencies


def _ms(latencies: list[float]) -> tuple[float, float, float]:
    return (percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000,
            len(latencies) and max(latencies) * 1000)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rates", default="50,100,200",
                        help="paced runs: questions a second in all, comma-separated")  # fmt: skip
    parser.add_argument("--db", help="PostgreSQL URL (default: a throw-away cluster)")
    parser.add_argument("--no-load", action="store_true")
    args = parser.parse_args()
    # Paced runs first, slowest first: the saturated run leaves the database busy (checkpoint,
    # autovacuum) for a while after it.
    rates: list[float | None] = [*sorted(float(r) for r in args.rates.split(",") if r), None]

    def bench(url: str) -> dict[str, Any]:
        upgrade(url)
        result: dict[str, Any] = {"reports": args.reports, "clients": args.clients, "runs": []}
        if not args.no_load:
            result["load_s"] = load(url, args.reports)
        questions = _questions(args.reports // PER_PATIENT, args.calls)
        runs: list[dict[str, Any]] = result["runs"]
        with hub_server(url, workers=2) as base:
            asyncio.run(_http(base, questions[:200], args.clients))  # warm-up
            for rate in rates:
                t0 = time.perf_counter()
                http = asyncio.run(_http(base, questions, args.clients, rate))
                runs.append({"rate": rate, "http": _ms(http),
                             "http_per_s": len(http) / (time.perf_counter() - t0)})  # fmt: skip
        for run in runs:
            t0 = time.perf_counter()
            sql = _sql(url, questions, args.clients, run["rate"])
            run.update(sql=_ms(sql), sql_per_s=len(sql) / (time.perf_counter() - t0))
        return result

    if args.db:
        result = bench(args.db)
    else:
        with postgres() as url:
            result = bench(url)
    print(f"{result['reports']:,} DiagnosticReports, {args.clients} concurrent clients, "
          f"3 items a call, {args.calls:,} calls a run")  # fmt: skip
    if "load_s" in result:
        print(f"loaded in {result['load_s']:.0f} s")
    print(
        "offered        | $recognize over HTTP: p50 / p99 / max ms, done/s "
        "| hand-written SQL: p50 / p99 / max ms, done/s | p99 ratio"
    )
    for run in result["runs"]:
        offered = "as fast as answered" if run["rate"] is None else f"{run['rate']:.0f}/s"
        h, q = run["http"], run["sql"]
        print(f"{offered:<20} | {h[0]:6.1f} / {h[1]:6.1f} / {h[2]:6.1f}, "
              f"{run['http_per_s']:5.0f}/s "
              f"| {q[0]:6.1f} / {q[1]:6.1f} / {q[2]:6.1f}, {run['sql_per_s']:5.0f}/s "
              f"| {h[1] / q[1]:.1f}")  # fmt: skip
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "recognition.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
