"""Load (issue 9, part 5): HL7 v2 over MLLP at a steady rate for minutes, FHIR searches beside.

    .venv/bin/python -m tests.bench.load [--minutes 10] [--rate 200] [--senders 8]
        [--workers 2] [--threads 1] [--search-clients 3] [--think 0.2] [--patients 20000]
        [--db URL] [--redis URL | --no-redis] [--drain-minutes 30]

The production shape, each part a process of its own: ``hub mllp`` (intake), ``hub worker``
(``--workers`` of them, applying from Redis Streams, or polling the inbox with ``--no-redis``)
and ``hub api`` (the FHIR searches), on a throw-away PostgreSQL 15 (fsync on) and a throw-away
Redis unless ``--db``/``--redis`` name others.

- Senders: ``--senders`` MLLP connections, each waiting for its ACK; message i is due at
  ``i / rate`` seconds (a late sender sends at once, and the lag is reported).  ORU^R01 with 5
  OBX from the lab centre, each with its own placer and filler numbers, for ``--patients``
  recurring patients (the lead hospital's record number and a resident ID each).
- Searchers: ``--search-clients`` HTTP clients with the administrator's token from ``hub token
  --admin`` (minted again every 4 minutes: tokens live 5), each in a loop with ``--think``
  seconds between requests: ``Patient?identifier=<record number>`` of a patient already sent,
  then that patient's ``Observation?patient=<id>&_sort=-date&_count=10``.
- Every 10 s one line: messages sent, acknowledged and applied per second in the interval, the
  inbox backlog, ACK and search p50/p99 in the interval, and the RSS of each hub process.
- After the load the backlog is drained (``--drain-minutes`` at most) and the totals printed:
  throughput, ACK latency p50/p95/p99/max, search latency per query, RSS at the start of the
  load, its end and its maximum.  Figures go to bench-results/load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from adapters.feeds.config import demo_community
from adapters.mllp.client import MLLPClient
from tests.bench.common import free_port, percentile, postgres, redis_server
from tests.bench.feeds import cbc_oru, county_pid

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SECONDS = 10.0


def oru(run: str, n: int, patients: int) -> bytes:
    """A CBC for recurring patient ``n % patients``, numbered ``n`` by placer and filler."""
    return cbc_oru(run, n, pid(run, n % patients), "XL", "LL")


@functools.cache
def pid(run: str, p: int) -> str:
    """Recurring patient ``p`` (a resident ID beside the lead hospital's record number)."""
    return county_pid(mrn(run, p), p)


def mrn(run: str, p: int) -> str:
    return f"ZL{run}{p:06d}"


# --- the hub's processes -----------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def host_busy_seconds() -> float:
    """CPU seconds the whole host spent busy (every core; from /proc/stat), so that what
    other processes took from the run shows."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / _TICK


def postgres_pids(port: int) -> list[int]:
    """The cluster listening on ``port``: its postmaster and every backend it forked."""
    postmaster = None
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and f"-p {port}".encode() in b" ".join(argv):
            postmaster = int(proc.name)
    if postmaster is None:
        return []
    children = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == postmaster:
            children.append(int(proc.name))
    return [postmaster, *children]


def _start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    log = (logs / f"{name}.log").open("ab")
    popen = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return Proc(name, popen)


def _wait(ok: Any, what: str, proc: Proc, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ok():
                return
        except (OSError, httpx.HTTPError):
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{proc.name} did not start ({what}); see its log")
        time.sleep(0.2)


@contextlib.contextmanager
def hub_processes(
    db_url: str, redis_url: str | None, args: argparse.Namespace, logs: Path
) -> Iterator[tuple[int, str, list[Proc]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        HUB_DB_URL=db_url,
        HUB_FEEDBACK_SCHEDULE="false",
        HUB_ADMIN_CREDENTIALS=str(logs / "admin.json"),
        HUB_LOG_LEVEL="warning",
    )
    if redis_url:
        env["HUB_REDIS_URL"] = redis_url
    mllp_port, http_port = free_port(), free_port()
    procs: list[Proc] = []
    try:
        intake = _start("mllp", ["mllp", "--mllp-port", str(mllp_port)], env, logs)
        procs.append(intake)
        _wait(lambda: _connects(mllp_port), "MLLP port", intake)  # it migrated the store
        api = _start("api", ["api", "--port", str(http_port)], env, logs)
        procs.append(api)
        base = f"http://127.0.0.1:{http_port}"
        _wait(lambda: httpx.get(f"{base}/fhir/metadata", timeout=2).is_success, "HTTP", api)
        for i in range(args.workers):
            worker_args = ["worker", "--no-scheduler", "--threads", str(args.threads)]
            procs.append(_start(f"worker-{i + 1}", worker_args, env, logs))
        yield mllp_port, base, procs
    finally:
        for proc in procs:
            proc.popen.terminate()
        for proc in procs:
            try:
                proc.popen.wait(60)
            except subprocess.TimeoutExpired:
                proc.popen.kill()


def _connects(port: int) -> bool:
    import socket

    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return True


def mint_token(db_url: str, logs: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_ADMIN_CREDENTIALS"] = str(logs / "admin.json")
    minted = subprocess.run(
        [sys.executable, "-m", "hub.cli", "token", "--admin", "--db", db_url],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return minted.stdout.strip().splitlines()[-1]


# --- the load ------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What the senders and searchers saw, appended from their threads (list.append is atomic
    under the GIL; the sampler copies slices)."""

    acks: list[tuple[float, float]] = field(default_factory=list)  # (when, latency s)
    lags: list[float] = field(default_factory=list)  # seconds a send was late
    refused: int = 0  # answers other than AA
    searches: list[tuple[float, str, float, int]] = field(default_factory=list)
    sent_patients: list[int] = field(default_factory=list)


class Senders:
    def __init__(self, port: int, args: argparse.Namespace, run: str, figures: Figures) -> None:
        self.port, self.args, self.run, self.figures = port, args, run, figures
        self.total = int(args.rate * args.minutes * 60)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._all()), daemon=True)
        self.t0 = 0.0

    async def _all(self) -> None:
        self.t0 = time.perf_counter()
        await asyncio.gather(*(self._one(lane) for lane in range(self.args.senders)))

    async def _one(self, lane: int) -> None:
        args, figures = self.args, self.figures
        async with MLLPClient("127.0.0.1", self.port, timeout=60) as client:
            for n in range(lane, self.total, args.senders):
                due = self.t0 + n / args.rate
                now = time.perf_counter()
                if now < due:
                    await asyncio.sleep(due - now)
                else:
                    figures.lags.append(now - due)
                t0 = time.perf_counter()
                answer = await client.send(oru(self.run, n, args.patients))
                t1 = time.perf_counter()
                if b"MSA|AA" in answer:
                    figures.acks.append((t1, t1 - t0))
                    figures.sent_patients.append(n % args.patients)
                else:
                    figures.refused += 1


class Searchers:
    def __init__(self, base: str, args: argparse.Namespace, run: str, figures: Figures,
                 token: list[str]) -> None:  # fmt: skip
        self.base, self.args, self.run, self.figures, self.token = base, args, run, figures, token
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._one, args=(i,), daemon=True)
            for i in range(args.search_clients)
        ]
        self.system = demo_community().members["XRMYY"].system("mrn")

    def _one(self, i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=self.base, timeout=60) as http:
            while not self.stop.wait(self.args.think):
                sent = self.figures.sent_patients
                if len(sent) < 50:
                    continue
                # A patient sent a little while ago (so probably applied by now).
                p = sent[rng.randrange(max(1, len(sent) - 1000))]
                headers = {"Authorization": f"Bearer {self.token[0]}"}
                found = self._get(http, "Patient?identifier", "/fhir/Patient", headers,
                                  {"identifier": f"{self.system}|{mrn(self.run, p)}"})  # fmt: skip
                entries = (found or {}).get("entry") or []
                if not entries or self.stop.wait(self.args.think):
                    continue
                patient_id = entries[0]["resource"]["id"]
                self._get(http, "Observation?patient&_sort=-date", "/fhir/Observation", headers,
                          {"patient": patient_id, "_sort": "-date", "_count": "10"})  # fmt: skip

    def _get(self, http: httpx.Client, kind: str, path: str, headers: dict[str, str],
             params: dict[str, str]) -> dict[str, Any] | None:  # fmt: skip
        t0 = time.perf_counter()
        try:
            answer = http.get(path, params=params, headers=headers)
            status = answer.status_code
        except httpx.HTTPError:
            status = 0
        t1 = time.perf_counter()
        self.figures.searches.append((t1, kind, t1 - t0, status))
        return answer.json() if status == 200 else None


def inbox_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT status, count(*) FROM inbox GROUP BY status").fetchall()
    return {str(s): int(n) for s, n in rows}


def _ms(values: list[float], p: float) -> float:
    return percentile(values, p) * 1000 if values else float("nan")


def _header(names: list[str]) -> str:
    return (
        f"{'t s':>5} {'ack/s':>6} {'applied/s':>9} {'backlog':>8} {'ACK p50/p99 ms':>15} "
        f"{'searches':>8} {'search p50/p99 ms':>18}  " + " ".join(f"{n + ' MB':>10}" for n in names)
    )


def _line(sample: dict[str, Any], names: list[str]) -> str:
    return (
        f"{sample['t']:>5.0f} {sample['ack_per_s']:>6.1f} {sample['applied_per_s']:>9.1f} "
        f"{sample['backlog']:>8} {sample['ack_p50_ms']:>7.1f}/{sample['ack_p99_ms']:<7.1f} "
        f"{sample['searches']:>8} {sample['search_p50_ms']:>9.1f}/{sample['search_p99_ms']:<8.1f}  "
        + " ".join(f"{sample['rss_mb'][n]:>10.1f}" for n in names)
    )


class Sampler:
    """Every SAMPLE_SECONDS: what happened since the last sample, and each process's RSS."""

    def __init__(self, dsn: str, figures: Figures, procs: list[Proc], pg_port: int | None) -> None:
        self.dsn, self.figures, self.procs, self.pg_port = dsn, figures, procs, pg_port
        self.samples: list[dict[str, Any]] = []
        self.start = self.t = time.perf_counter()
        self.acks = self.searches = 0
        self.applied = inbox_counts(dsn).get("applied", 0)
        self.cpu = self._cpu()

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far: each hub process, PostgreSQL, and this load generator."""
        used = {p.name: cpu_seconds(p.popen.pid) for p in self.procs}
        if self.pg_port is not None:
            used["postgres"] = sum(cpu_seconds(pid) for pid in postgres_pids(self.pg_port))
        own = os.times()
        used["load generator"] = own.user + own.system
        used["host"] = host_busy_seconds()
        return used

    def take(self) -> dict[str, Any]:
        time.sleep(max(0.0, self.t + SAMPLE_SECONDS - time.perf_counter()))
        now = time.perf_counter()
        counts = inbox_counts(self.dsn)
        acks = [a for _, a in self.figures.acks[self.acks :]]
        found = [s[2] for s in self.figures.searches[self.searches :]]
        applied, dt = counts.get("applied", 0), now - self.t
        sample = {
            "t": round(now - self.start, 1),
            "ack_per_s": len(acks) / dt,
            "applied_per_s": (applied - self.applied) / dt,
            "backlog": counts.get("pending", 0),
            "failed": counts.get("failed", 0),
            "ack_p50_ms": _ms(acks, 50),
            "ack_p99_ms": _ms(acks, 99),
            "searches": len(found),
            "search_p50_ms": _ms(found, 50),
            "search_p99_ms": _ms(found, 99),
            "rss_mb": {p.name: round(p.rss_mb(), 1) for p in self.procs},
        }
        cpu = self._cpu()
        sample["cpu_percent"] = {
            name: round((cpu[name] - self.cpu.get(name, 0.0)) / dt * 100, 1) for name in cpu
        }
        self.cpu = cpu
        self.samples.append(sample)
        self.t, self.applied = now, applied
        self.acks, self.searches = len(self.figures.acks), len(self.figures.searches)
        return sample


def run(db_url: str, redis_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="hub-load-"))
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    run_tag = f"{random.randrange(16**4):04x}"
    figures = Figures()
    with hub_processes(db_url, redis_url, args, logs) as (port, base, procs):
        token = [mint_token(db_url, logs)]
        minted = time.monotonic()
        names = [p.name for p in procs]
        where = ", ".join(f"{p.name} (pid {p.popen.pid})" for p in procs)
        print(f"hub processes: {where}; logs in {logs}\n{_header(names)}", flush=True)
        senders = Senders(port, args, run_tag, figures)
        searchers = Searchers(base, args, run_tag, figures, token)
        sampler = Sampler(dsn, figures, procs, make_url(db_url).port)
        senders.thread.start()
        for thread in searchers.threads:
            thread.start()
        load_end = drain_until = time.perf_counter() + (args.minutes + args.drain_minutes) * 60
        while True:
            sample = sampler.take()
            print(_line(sample, names), flush=True)
            if time.monotonic() - minted > 240:  # tokens live 5 minutes
                token[0], minted = mint_token(db_url, logs), time.monotonic()
            dead = [p.name for p in procs if p.popen.poll() is not None]
            if dead:
                sys.exit(f"hub processes exited: {dead}; logs in {logs}")
            if not senders.thread.is_alive() and not searchers.stop.is_set():
                load_end = time.perf_counter()
                searchers.stop.set()
                print(f"-- load over after {sample['t']:.0f} s; draining the backlog", flush=True)
            done = searchers.stop.is_set() and sample["backlog"] == 0
            if done or time.perf_counter() > drain_until:
                break
        drained_at = time.perf_counter()
    return summarize(args, redis_url, figures, sampler, senders.t0, load_end, drained_at, dsn)


def summarize(
    args: argparse.Namespace,
    redis_url: str | None,
    figures: Figures,
    sampler: Sampler,
    sent_from: float,
    load_end: float,
    drained_at: float,
    dsn: str,
) -> dict[str, Any]:
    acked = [a for _, a in figures.acks]
    # The load: from the first message due to the last ACK; samples wholly inside it.
    load_span = figures.acks[-1][0] - sent_from
    samples = sampler.samples
    inside = figures.acks[-1][0] - sampler.start + 0.5
    steady = [s for s in samples if s["t"] <= inside] or samples[:1]
    by_kind: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    for _, kind, seconds, status in figures.searches:
        by_kind.setdefault(kind, []).append(seconds)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    final = inbox_counts(dsn)
    return {
        "minutes": args.minutes, "rate": args.rate, "senders": args.senders,
        "workers": args.workers, "threads": args.threads, "redis": bool(redis_url),
        "search_clients": args.search_clients,
        "messages_acked": len(acked), "refused": figures.refused,
        "ack_per_s": len(acked) / load_span,
        "applied_per_s_during_load": sum(s["applied_per_s"] for s in steady) / len(steady),
        "backlog_at_load_end": steady[-1]["backlog"],
        "drain_seconds": drained_at - load_end,
        "applied_total": final.get("applied", 0), "pending_left": final.get("pending", 0),
        "failed": final.get("failed", 0),
        "send_lag_p99_ms": _ms(figures.lags, 99) if figures.lags else 0.0,
        "late_sends": len(figures.lags),
        "ack_ms": {p: _ms(acked, p) for p in (50, 95, 99)} | {"max": max(acked) * 1000},
        "search_ms": {k: {p: _ms(v, p) for p in (50, 95, 99)} | {"n": len(v)}
                      for k, v in by_kind.items()},
        "search_statuses": statuses,
        "rss_mb": {
            name: {
                "first": steady[0]["rss_mb"][name],
                "last": steady[-1]["rss_mb"][name],
                "max": max(s["rss_mb"][name] for s in samples),
            }
            for name in samples[0]["rss_mb"]
        },
        "cpu_percent_during_load": {
            name: round(sum(s["cpu_percent"][name] for s in steady) / len(steady), 1)
            for name in steady[0]["cpu_percent"]
        },
        "samples": samples,
    }  # fmt: skip


def report(result: dict[str, Any]) -> None:
    r = result
    print(
        f"\n{r['messages_acked']} ORU^R01 acknowledged in {r['minutes']} min at "
        f"{r['ack_per_s']:.1f}/s (target {r['rate']:.0f}/s; {r['late_sends']} sends late, lag "
        f"p99 {r['send_lag_p99_ms']:.1f} ms; {r['refused']} not AA)"
    )
    ack = r["ack_ms"]
    print(f"ACK latency p50 {ack[50]:.1f} ms, p95 {ack[95]:.1f} ms, p99 {ack[99]:.1f} ms, "
          f"max {ack['max']:.0f} ms")  # fmt: skip
    print(
        f"applied {r['applied_per_s_during_load']:.1f}/s during the load; backlog at its end "
        f"{r['backlog_at_load_end']}, drained {r['drain_seconds']:.0f} s later "
        f"({r['applied_total']} applied, {r['pending_left']} pending, {r['failed']} failed)"
    )
    for kind, figures in r["search_ms"].items():
        print(f"search {kind}: n {figures['n']}, p50 {figures[50]:.1f} ms, "
              f"p95 {figures[95]:.1f} ms, p99 {figures[99]:.1f} ms")  # fmt: skip
    print(f"search answers by status: {r['search_statuses']}")
    used = r["cpu_percent_during_load"]
    ours = sum(pct for name, pct in used.items() if name != "host")
    cpu = ", ".join(f"{name} {pct:.0f}%" for name, pct in used.items() if name != "host")
    print(
        f"CPU during the load (% of one core, {os.cpu_count()} cores): {cpu}; the whole host "
        f"{used['host']:.0f}%, of which other processes {used['host'] - ours:.0f}%"
    )
    for name, rss in r["rss_mb"].items():
        print(f"RSS {name}: {rss['first']} MB at the first sample, {rss['last']} MB at the "
              f"load's end, max {rss['max']} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="hub worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (as compose)")
    parser.add_argument("--search-clients", type=int, default=3)
    parser.add_argument("--think", type=float, default=0.2, help="seconds between searches")
    parser.add_argument("--patients", type=int, default=20000)
    parser.add_argument("--db", help="PostgreSQL URL (default: a throw-away cluster, fsync on)")
    parser.add_argument("--redis", help="Redis URL (default: a throw-away redis-server)")
    parser.add_argument("--no-redis", action="store_true", help="workers poll the inbox")
    parser.add_argument("--drain-minutes", type=float, default=30.0)
    args = parser.parse_args()
    with redis_server(args.redis, not args.no_redis) as redis_url:
        if args.db:
            result = run(args.db, redis_url, args)
        else:
            with postgres() as url:
                result = run(url, redis_url, args)
    report(result)
    out = REPO / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
