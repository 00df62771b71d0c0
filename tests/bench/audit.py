"""What the audit trail costs a read and a search.

    .venv/bin/python -m tests.bench.audit [--patients 1000] [--seconds 10] [--clients 4]
        [--rounds 2] [--db URL]

Loads ``patients`` Patients with 10 Observations each into a throw-away PostgreSQL (fsync on;
or ``--db``), then serves the hub (one uvicorn process) twice per round, alternately with the
audit trail and without it (the same app with ``install_audit`` left out), and times, as a
member system over HTTP with ``clients`` concurrent connections:

  read    GET /fhir/Observation/{id}            (one AuditEvent written per read)
  search  GET /fhir/Observation?patient=X&_count=10  (one per search, naming X and the query)

It prints reads/s and searches/s with and without the audit and their ratio, and checks that
one AuditEvent was written per request.  Figures go to bench-results/audit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from hub.config import Settings
from hub.store.migrate import upgrade
from tests.bench.common import free_port, observation, patient, percentile, postgres, random_time

MEMBER = "bench-his"


def token(db_url: str) -> str:
    """A member system's token (QSWSY, reads everything), signed with the hub's own key."""
    from hub.db import make_engine
    from hub.security.clients import Client
    from hub.security.keys import KeyRing
    from hub.security.tokens import issue, token_issuer

    engine = make_engine(db_url)
    issuer = token_issuer(Settings(db_url=db_url))
    who = Client(MEMBER, MEMBER, "QSWSY", frozenset({"member"}), "system/*.rs", None, None, False)
    answer = issue(KeyRing(engine), who, None, issuer=issuer, audience=f"{issuer}/fhir")
    engine.dispose()
    return str(answer["access_token"])


def load(db_url: str, patients: int) -> tuple[list[str], list[str]]:
    """Patients and their Observations through the store's Writer (ids returned)."""
    from hub.db import make_engine
    from hub.fhir.interactions import Unit

    rng = random.Random(7)
    engine = make_engine(db_url)
    pids, oids = [], []
    for start in range(0, patients, 100):
        with engine.begin() as conn:
            unit = Unit.on(conn)
            for n in range(start, min(start + 100, patients)):
                pid = f"bp{n}"
                unit.writer.create(patient(rng, n), pid)
                pids.append(pid)
                when = random_time(rng)
                for k in range(10):
                    oid = f"bo{n}-{k}"
                    unit.writer.create(observation(rng, f"Patient/{pid}", when), oid)
                    oids.append(oid)
            unit.writer.flush()
    engine.dispose()
    return pids, oids


def serve(db_url: str, port: int, audited: bool) -> None:
    """The hub in this process (``python -m tests.bench.audit --serve``)."""
    import uvicorn

    import hub.app
    from hub.security.ratelimit import Rate

    if not audited:
        hub.app.install_audit = lambda app: None  # type: ignore[assignment]
    app = hub.app.create_app(Settings(db_url=db_url, log_level="warning"))
    # Measure the audit, not the member's rate limit.
    limits = app.state.rate_limits
    app.state.rate_limits = type(limits)(
        **{**limits.__dict__, "clients": {MEMBER: Rate(1_000_000, 1_000_000)}}
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _start(db_url: str, audited: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, "-m", "tests.bench.audit", "--serve", "--db", db_url,
            "--port", str(port)] + ([] if audited else ["--no-audit"])  # fmt: skip
    proc = subprocess.Popen(args, env={**os.environ, "HUB_LOG_LEVEL": "warning"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=2).raise_for_status()
            return proc, base
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("the hub did not start")
            time.sleep(0.2)


def _hammer(base: str, bearer: str, paths: list[str], seconds: float,
            clients: int) -> tuple[float, list[float], int]:  # fmt: skip
    """Requests/s, latencies (ms) and failures of ``clients`` connections for ``seconds``."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()

    def worker(seed: int) -> None:
        nonlocal failures
        rng = random.Random(seed)
        mine: list[float] = []
        bad = 0
        headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/fhir+json"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                res = http.get(rng.choice(paths))
                mine.append((time.perf_counter() - started) * 1000)
                bad += res.status_code != 200
        with lock:
            latencies.extend(mine)
            failures += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / (time.monotonic() - began), latencies, failures


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _audit_events(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        count = conn.execute(
            sa.text("SELECT count(*) FROM resources WHERE res_type = 'AuditEvent'")
        ).scalar_one()
    engine.dispose()
    return int(count)


def measure(db_url: str, args: argparse.Namespace, pids: list[str],
            oids: list[str]) -> dict[str, Any]:  # fmt: skip
    kinds = {
        "read": [f"/fhir/Observation/{o}" for o in oids],
        "search": [f"/fhir/Observation?patient=Patient/{p}&_count=10" for p in pids],
    }
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        kind: {"audit": [], "none": []} for kind in kinds
    }
    for round_no in range(args.rounds):
        # Alternate which goes first, so neither always gets the warmer machine.
        modes = [True, False] if round_no % 2 == 0 else [False, True]
        for audited in modes:
            proc, base = _start(db_url, audited)
            bearer = token(db_url)  # a token lives 5 minutes: one per server run
            try:
                _hammer(base, bearer, kinds["read"], 2, args.clients)  # warm up
                for kind, paths in kinds.items():
                    before, cpu = _audit_events(db_url), _cpu_seconds(proc.pid)
                    rate, lat, failed = _hammer(base, bearer, paths, args.seconds, args.clients)
                    hub_cpu = (_cpu_seconds(proc.pid) - cpu) / max(1, len(lat)) * 1000
                    written = _audit_events(db_url) - before
                    done = round(rate * args.seconds)
                    label = "audit" if audited else "none"
                    runs[kind][label].append({
                        "per_second": rate, "p50_ms": percentile(lat, 50),
                        "p99_ms": percentile(lat, 99), "requests": len(lat),
                        "failed": failed, "events": written, "hub_cpu_ms": hub_cpu,
                    })  # fmt: skip
                    print(f"round {round_no + 1} {label:<5} {kind:<6} {rate:8.1f}/s "
                          f"p50 {percentile(lat, 50):6.2f} ms  p99 {percentile(lat, 99):6.2f} ms"
                          f"  hub CPU {hub_cpu:5.2f} ms/request"
                          f"  events {written} / ~{done} requests  failed {failed}",
                          flush=True)  # fmt: skip
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--db", help="a migrated store to use instead of a fresh PostgreSQL")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-audit", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.db, args.port, not args.no_audit)
        return
    if args.db:
        result = run(args.db, args)
    else:
        with postgres() as url:
            result = run(url, args)
    print(f"\n{'':<8}{'with audit /s':>24}{'without /s':>24}{'ratio':>8}"
          f"{'hub CPU ms/req (with / without)':>34}")  # fmt: skip
    for kind, runs in result["runs"].items():
        with_audit = [r["per_second"] for r in runs["audit"]]
        without = [r["per_second"] for r in runs["none"]]
        ratio = sum(with_audit) / sum(without)
        result[f"{kind}_ratio"] = ratio
        cpu = [sum(r["hub_cpu_ms"] for r in runs[m]) / len(runs[m]) for m in ("audit", "none")]
        print(f"{kind:<8}{' / '.join(f'{x:.0f}' for x in with_audit):>24}"
              f"{' / '.join(f'{x:.0f}' for x in without):>24}{ratio:>8.2f}"
              f"{cpu[0]:>27.2f} / {cpu[1]:.2f}")  # fmt: skip
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "audit.json").write_text(json.dumps(result, indent=2))


def run(db_url: str, args: argparse.Namespace) -> dict[str, Any]:
    upgrade(db_url)
    started = time.perf_counter()
    pids, oids = load(db_url, args.patients)
    print(f"loaded {len(pids)} patients, {len(oids)} observations "
          f"in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
    runs = measure(db_url, args, pids, oids)
    return {
        "when": time.strftime("%Y-%m-%d"),
        "db": db_url.split("@")[-1].split("/")[0] if "@" in db_url else db_url.split(":")[0],
        "patients": args.patients, "seconds": args.seconds, "clients": args.clients,
        "runs": runs,
    }  # fmt: skip


if __name__ == "__main__":
    main()
