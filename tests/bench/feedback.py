"""Monthly feedback benchmark: a county month and a city month of discharges → documents.

    .venv/bin/python -m tests.bench.feedback [--stays 3000 30000] [--results 20] [--db URL]

For each size: loads that many inpatient stays discharged in October 2026 (Patient with a
primary-care centre, one in fifty without; Encounter; admission and discharge diagnoses; a
procedure; two reports of ``results``/2 Observations each, within the stay) into a fresh
PostgreSQL (or ``--db``), then, in a fresh process each, times

- the feedback run of the month (documents/s; peak RSS of that process), and
- the baseline: the same process reading every resource the documents draw on, by hand-
  written SQL, and parsing its JSON (the least any generator must do);

and a rerun on unchanged data.  Prints the figures and the ratio run/baseline.  Targets
(issue 6): 3,000 stays in <= 30 s, and linear growth to 30,000.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from hub.db import make_engine
from hub.store.migrate import upgrade
from hub.store.repository import Writer
from tests.bench.common import PANELS, observation, patient, postgres, report

TZ = timezone(timedelta(hours=8))
CENTRES = ["QSWSY", "BSWSY", "HXWSY", "LTWSY", "SKWSY", "DQWSY", "CDSQ", "CXSQ"]
ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"


def _stay(rng: random.Random, n: int, results: int) -> list[dict[str, Any]]:
    p = patient(rng, n)
    p["id"] = f"bp{n}"
    if n % 50:
        p["generalPractitioner"] = [{"reference": f"Organization/{rng.choice(CENTRES)}"}]
    ref = f"Patient/{p['id']}"
    admitted = datetime(2026, 10, 1, 8, tzinfo=TZ) + timedelta(minutes=rng.randrange(40_000))
    discharged = admitted + timedelta(days=rng.randint(2, 10), hours=rng.randint(0, 8))
    if discharged.month != 10:
        discharged = datetime(2026, 10, 31, 23, 0, tzinfo=TZ)
    enc_id = f"be{n}"
    conds = []
    for i, (code, use) in enumerate((("I20.0", "AD"), ("I21.0", "DD"))):
        conds.append({
            "resourceType": "Condition", "id": f"bc{n}-{i}",
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "provisional" if use == "AD" else "confirmed"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}],
                     "text": "不稳定型心绞痛" if use == "AD" else "急性心肌梗死"},
            "subject": {"reference": ref}, "encounter": {"reference": f"Encounter/{enc_id}"},
        })  # fmt: skip
    encounter = {
        "resourceType": "Encounter", "id": enc_id, "status": "finished",
        "identifier": [{"system": "urn:oid:2.16.156.XRMYY.visit", "value": f"V{n:08d}"}],
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": ref},
        "period": {"start": admitted.isoformat(), "end": discharged.isoformat()},
        "diagnosis": [
            {"condition": {"reference": f"Condition/{c['id']}"},
             "use": {"coding": [{"system": ROLE, "code": use}]}, "rank": 1}
            for c, use in zip(conds, ("AD", "DD"), strict=True)
        ],
        "hospitalization": {"dischargeDisposition": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": "1"}]}},
        "serviceProvider": {"reference": "Organization/XRMYY"},
    }  # fmt: skip
    procedure = {
        "resourceType": "Procedure", "id": f"bpr{n}", "status": "completed",
        "code": {"text": "经皮冠状动脉腔内成形术"}, "subject": {"reference": ref},
        "encounter": {"reference": f"Encounter/{enc_id}"},
        "performedDateTime": (admitted + timedelta(hours=20)).isoformat(),
    }  # fmt: skip
    out: list[dict[str, Any]] = [p, encounter, *conds, procedure]
    per = results // 2
    for r in range(2):
        when = (admitted + timedelta(hours=2 + 24 * r)).isoformat()
        obs = [observation(rng, ref, when) for _ in range(per)]
        for i, o in enumerate(obs):
            o["id"] = f"bo{n}-{r}-{i}"
        rep = report(ref, when, PANELS[r % len(PANELS)], [f"Observation/{o['id']}" for o in obs])
        rep["id"], rep["encounter"] = f"br{n}-{r}", {"reference": f"Encounter/{enc_id}"}
        out += [*obs, rep]
    return out


def _load_range(args: tuple[str, int, int, int]) -> None:
    db_url, first, last, seed = args
    engine = make_engine(db_url)
    rng = random.Random(seed)
    for start in range(first, last, 100):
        with engine.begin() as conn:
            writer = Writer(conn)
            for n in range(start, min(start + 100, last)):
                for res in _stay(rng, n, ARGS_RESULTS):
                    writer.create(res, res["id"])
            writer.flush()
    engine.dispose()


ARGS_RESULTS = 20


def load(db_url: str, stays: int, results: int) -> float:
    global ARGS_RESULTS
    ARGS_RESULTS = results
    half = stays // 2
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        pool.map(_load_range, [(db_url, 0, half, 1), (db_url, half, stays, 2)])
    return time.perf_counter() - start


def _measure(db_url: str, what: str) -> dict[str, float]:
    """Run ``what`` (feedback | baseline) in a fresh process; its time and peak RSS."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.feedback", "--child", what, "--db", db_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _child(what: str, db_url: str) -> None:
    from adapters.feeds.config import demo_community
    from hub.feeds.bootstrap import load_community_resources
    from hub.services.feedback.run import run_month

    engine = make_engine(db_url)
    community = demo_community()
    load_community_resources(engine, community)
    start = time.perf_counter()
    if what == "feedback":
        summary = run_month(engine, community, "2026-10", trigger="bench")
        count = summary.new + summary.amended + summary.unchanged
        extra = {"new": summary.new, "unchanged": summary.unchanged}
    else:
        count, extra = _baseline(engine), {}
    elapsed = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "count": count, "rss_mb": rss, **extra}))


def _baseline(engine: Any) -> int:
    """Every resource the documents draw on, read by hand-written SQL and parsed, 200 stays at
    a time (as the run reads them)."""
    import orjson
    from sqlalchemy import bindparam, text

    by_ids = text("SELECT content FROM resources WHERE res_type = :t AND res_id IN :ids")
    by_ids = by_ids.bindparams(bindparam("ids", expanding=True))
    referring = text(
        "SELECT r.content FROM idx_reference x JOIN resources r ON r.rid = x.rid "
        "WHERE x.param = 'encounter' AND x.target_type = 'Encounter' AND x.target_id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                text("SELECT res_id FROM resources WHERE res_type = 'Encounter' AND NOT deleted")
            ).scalars()
        )
        for at in range(0, len(ids), 200):
            chunk = ids[at : at + 200]
            encounters = [
                orjson.loads(c)
                for c in conn.execute(by_ids, {"t": "Encounter", "ids": chunk}).scalars()
            ]
            results = []
            for c in conn.execute(referring, {"ids": chunk}).scalars():
                res = orjson.loads(c)
                results += [x["reference"].split("/")[1] for x in res.get("result", [])]
            patients = [e["subject"]["reference"].split("/")[1] for e in encounters]
            for kind, wanted in (("Observation", results), ("Patient", patients)):
                for c in conn.execute(by_ids, {"t": kind, "ids": wanted}).scalars():
                    orjson.loads(c)
    return len(ids)


def _analyze(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stays", type=int, nargs="+", default=[3000, 30000])
    parser.add_argument("--results", type=int, default=20)
    parser.add_argument("--db", help="PostgreSQL URL (default: a throw-away cluster per size)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.db)
        return
    rows = []
    for stays in args.stays:
        with postgres() as url:
            upgrade(url)
            loaded = load(url, stays, args.results)
            _analyze(url)
            base = _measure(url, "baseline")
            run = _measure(url, "feedback")
            rerun = _measure(url, "feedback")
        rows.append((stays, loaded, run, base, rerun))
        print(
            f"{stays:>6} stays x {args.results} results (loaded in {loaded:.0f} s): "
            f"feedback {run['seconds']:.1f} s = {run['count'] / run['seconds']:.0f} documents/s, "
            f"peak RSS {run['rss_mb']:.0f} MB | baseline read {base['seconds']:.1f} s "
            f"(RSS {base['rss_mb']:.0f} MB) | ratio {run['seconds'] / base['seconds']:.1f}x | "
            f"rerun unchanged {rerun['seconds']:.1f} s ({rerun['unchanged']} unchanged)",
            flush=True,
        )
    if len(rows) > 1:
        (s0, _, r0, _, _), (s1, _, r1, _, _) = rows[0], rows[-1]
        print(
            f"growth {s0} → {s1} stays (x{s1 / s0:.0f}): "
            f"time x{r1['seconds'] / r0['seconds']:.1f}, "
            f"documents/s {r0['count'] / r0['seconds']:.0f} → {r1['count'] / r1['seconds']:.0f}, "
            f"peak RSS {r0['rss_mb']:.0f} → {r1['rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
