"""Feed benchmark: ORU^R01 (5 OBX) over MLLP from concurrent senders into PostgreSQL.

    .venv/bin/python -m tests.bench.feeds [--messages 3000] [--senders 8] [--workers N]
        [--rate 200] [--seconds 15] [--hl7apy-messages 300] [--redis [--worker-processes 2]]

Two production shapes: by default an intake process and one ``hub worker`` process polling
the inbox (2 threads); with ``--redis``, ``hub mllp`` and ``--worker-processes`` workers on
Redis Streams (1 thread each).  Each run also prints the CPU each part used per message, and
how busy the two cores were.

End to end = from the first message sent until every message is acknowledged AND applied
(its resources searchable).  Printed in the same run:
  - throughput: messages/s end to end and ACK latency p50/p99, senders sending as fast as
    their ACKs allow (each waits for its ACK, as MLLP senders do);
  - steady load: ACK latency p50/p99 at a paced ``--rate`` messages/s, and whether the worker
    kept up;
  - (a) the same pipeline with every message also parsed by hl7apy's ``parse_message``;
  - (b) a raw COPY of the same resource rows (resources + history), as messages/s.
Every message is a new patient (the patient index's costliest case: a new person each time).
Beside it, for scale only: the same throughput run when each result is for a patient the hub
knows already (one of the first run's), as most of a lab's results are.
Targets (issue 3): >= 500 messages/s end to end; ACK p99 <= 50 ms at a steady 200 messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from sqlalchemy import func, select

from adapters.feeds.config import demo_community
from adapters.mllp.client import MLLPClient
from hub.config import Settings
from hub.db import make_engine
from hub.demo import names
from hub.feeds.bootstrap import load_community_resources
from hub.queue.stream_workers import GROUP
from hub.queue.streams import INBOX
from hub.store.migrate import upgrade
from hub.store.schema import inbox
from tests.bench.common import copy_as_stored, free_port, percentile, postgres, redis_server

ITEMS = [
    ("WBC", "白细胞计数", "10*9/L", "3.5-9.5"),
    ("RBC", "红细胞计数", "10*12/L", "4.3-5.8"),
    ("HGB", "血红蛋白", "g/L", "130-175"),
    ("PLT", "血小板计数", "10*9/L", "125-350"),
    ("HCT", "红细胞压积", "%", "40-50"),
]


def cbc_oru(run: str, n: int, pid: str, placer: str, filler: str) -> bytes:
    """A CBC result from the lab centre, numbered ``n`` under the given placer and filler
    prefixes (the feed and load benchmarks differ only in the patient and the numbers)."""
    obx = "".join(
        f"OBX|{i}|NM|{code}^{name}^L||{5 + (n * 7 + i) % 40 / 10:.1f}|{unit}^^UCUM|{ref}|N|||F"
        f"|||20261021080000\r"
        for i, (code, name, unit, ref) in enumerate(ITEMS, start=1)
    )
    return (
        "MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261021100000||ORU^R01^ORU_R01|"
        f"{run}-{n}|P|2.5.1||||||UNICODE UTF-8\r"
        f"{pid}\r"
        f"ORC|RE|{placer}{run}{n}^XRMYY|{filler}{run}{n}^XJYZX\r"
        f"OBR|1|{placer}{run}{n}^XRMYY|{filler}{run}{n}^XJYZX|CBC^血常规^L|||20261021080000"
        "|||||||||||||||20261021095000|||F\r" + obx
    ).encode()


def county_pid(mrn: str, seed: int | str) -> str:
    """A patient as a county's records have them: a name, sex and birth date drawn like the
    demo's, and a resident ID beside the lead hospital's record number ``mrn``.  (One name,
    sex and birth date for everyone made every new patient a worst-case probabilistic match
    for the patient index: each was scored against the 200 records before it.)"""
    rng = random.Random(seed)
    sex = rng.choice(("male", "female"))
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 80))
    rid = names.resident_id("330521", born, sex, rng)
    return (
        f"PID|1||{mrn}^^^XRMYY^MR~{rid}^^^CHN^NNCHN||"
        f"{names.surname(rng)}^{names.given(sex, rng)}||{born:%Y%m%d}|{sex[0].upper()}"
    )


def oru(run: str, n: int) -> bytes:
    """A CBC result from the lab centre for a new patient n, filed under the lead hospital's
    MRN (every message a new patient: the patient index's costliest case)."""
    return cbc_oru(run, n, patient_of(run, n), "XR", "LAB")


def patient_of(run: str, n: int) -> str:
    """The PID segment of run ``run``'s patient n."""
    return county_pid(f"ZY{run}{n:07d}", f"{run}-{n}")


def known_patient_oru(of_run: str, patients: int) -> Callable[[str, int], bytes]:
    """Results numbered anew whose patients are those of run ``of_run`` (``patients`` of them):
    the Patient in each message matches a stored one, so nothing of it is written."""

    def make(run: str, n: int) -> bytes:
        return cbc_oru(run, n, patient_of(of_run, n % patients), "XR", "LAB")

    return make


@dataclass(frozen=True)
class FeedServer:
    port: int
    intake_pid: int
    worker_pids: list[int]


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_name(prefix: str) -> float:
    """CPU seconds of every process whose name starts with ``prefix`` (PostgreSQL's backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith(prefix):
                    total += _cpu_of(int(entry.name))
            except OSError:
                continue
    return total


def _cpu(server: FeedServer) -> dict[str, float]:
    """CPU seconds so far of each part: intake, workers, PostgreSQL, Redis (when used), the
    senders (this process)."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "intake": _cpu_of(server.intake_pid),
        "worker": sum(_cpu_of(pid) for pid in server.worker_pids),
        "postgres": cpu_by_name("postgres"),
        "redis": cpu_by_name("redis-server"),
        "senders": mine.ru_utime + mine.ru_stime,
    }


@contextmanager
def feed_server(
    db_url: str,
    workers: int,
    hl7apy: bool = False,
    redis_url: str | None = None,
    processes: int = 1,
) -> Iterator[FeedServer]:
    """The production shape: an MLLP intake process and separate ``hub worker`` processes.

    Without Redis one worker process polls the inbox; with Redis (``redis_url``) the intake is
    ``hub mllp`` and ``processes`` workers share the inbox's stream, as the load benchmark
    runs them."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DB_URL=db_url, HUB_FEEDBACK_SCHEDULE="false", HUB_LOG_LEVEL="warning")
    if redis_url:
        env["HUB_REDIS_URL"] = redis_url
        command = [sys.executable, "-m", "hub.cli", "mllp", "--mllp-port", str(port)]
    else:
        command = [sys.executable, "-m", "tests.bench.feed_server", "--db", db_url]
        command += ["--port", str(port), "--no-worker"] + (["--hl7apy"] if hl7apy else [])
    intake = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    worker_command = [sys.executable, "-m", "hub.cli", "worker", "--threads", str(workers)]
    worker_procs = [
        subprocess.Popen(
            [*worker_command, "--no-scheduler"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes if redis_url else 1)
    ]
    procs = [intake, *worker_procs]
    try:
        _wait_listening(intake, port)
        yield FeedServer(port, intake.pid, [proc.pid for proc in worker_procs])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)


def _wait_listening(intake: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if intake.poll() is not None:
            sys.exit("the feed intake did not start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("the feed intake did not start listening")


def _warm_up(server: FeedServer, redis_url: str | None, processes: int) -> None:
    """Messages until every worker process has applied some: one still starting when the run
    began left the other to apply the first second's messages alone.  (Redis 7.0 lists a
    consumer of the stream only once it has been handed an entry.)"""
    stream = f"{Settings().redis_prefix}:{INBOX}"
    client = redis.Redis.from_url(redis_url) if redis_url else None
    for round_ in range(60):
        batch = [oru("W", round_ * 50 + n) for n in range(50)]
        asyncio.run(_send(server.port, batch, 4, None))
        if client is None:
            return
        try:
            if len(client.xinfo_consumers(stream, GROUP)) >= processes:
                return
        except redis.ResponseError:
            pass  # no group yet
        time.sleep(0.5)
    sys.exit("the feed workers did not all start reading")


async def _send(port: int, messages: list[bytes], senders: int, rate: float | None) -> list[float]:
    """Send from ``senders`` connections; each waits for its ACK.  ``rate``: total msgs/s."""
    latencies: list[float] = []
    start = time.perf_counter()

    async def sender(lane: int) -> None:
        async with MLLPClient("127.0.0.1", port, timeout=120) as client:
            for i in range(lane, len(messages), senders):
                if rate:
                    await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                t0 = time.perf_counter()
                answer = await client.send(messages[i])
                latencies.append(time.perf_counter() - t0)
                if b"MSA|AA" not in answer and b"MSA|CA" not in answer:
                    raise SystemExit(f"not accepted: {answer[:300]!r}")

    await asyncio.gather(*(sender(lane) for lane in range(senders)))
    return latencies


def _wait_applied(engine: Any, after_id: int, total: int, timeout: float = 900) -> float:
    """When the ``total`` messages after inbox id ``after_id`` are all applied (or failed).

    Polled every 20 ms over this run's rows only (a primary-key range), so the benchmark's
    own polling costs the database little."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done = conn.execute(
                select(func.count()).where(
                    inbox.c.id > after_id, inbox.c.status.in_(("applied", "failed"))
                )
            ).scalar_one()
        if done >= total:
            return time.perf_counter()
        time.sleep(0.02)
    raise SystemExit("the worker did not finish in time")


def _run(
    db_url: str,
    server: FeedServer,
    run: str,
    count: int,
    senders: int,
    rate: float | None,
    make: Callable[[str, int], bytes] = oru,
) -> dict[str, Any]:
    engine = make_engine(db_url, pool_size=2)
    with engine.connect() as conn:
        last_id = conn.execute(select(func.coalesce(func.max(inbox.c.id), 0))).scalar_one()
    messages = [make(run, n) for n in range(count)]
    cpu_before = _cpu(server)
    start = time.perf_counter()
    latencies = asyncio.run(_send(server.port, messages, senders, rate))
    acked = time.perf_counter()
    applied = _wait_applied(engine, last_id, count)
    cpu_after = _cpu(server)
    with engine.connect() as conn:
        failed = conn.execute(
            select(func.count()).where(inbox.c.id > last_id, inbox.c.status == "failed")
        ).scalar_one()
    engine.dispose()
    return {
        "messages": count,
        "ack_per_s": count / (acked - start),
        "end_to_end_per_s": count / (applied - start),
        "ack_p50_ms": percentile(latencies, 50) * 1000,
        "ack_p99_ms": percentile(latencies, 99) * 1000,
        "backlog_s_after_last_ack": applied - acked,
        "failed": failed,
        # Where the two cores went: CPU ms per message of each part (waiting on the store's
        # polls included for the senders' side).
        "cpu_ms_per_message": {
            part: 1000 * (cpu_after[part] - cpu_before[part]) / count for part in cpu_after
        },
        "cpu_busy_of_2_cores": sum(cpu_after[p] - cpu_before[p] for p in cpu_after)
        / (2 * (applied - start)),
    }


def feed_resource_rows(conn: psycopg.Connection[Any]) -> list[Any]:
    """The stored rows of the resources the feed wrote, as ``copy_as_stored`` takes them."""
    return conn.execute(
        "SELECT rid, res_type, res_id, version_id, last_updated, deleted, content"
        " FROM resources WHERE res_type IN"
        " ('Patient', 'ServiceRequest', 'DiagnosticReport', 'Observation', 'Provenance')"
    ).fetchall()


def _copy_rows(db_url: str) -> tuple[float, float]:
    """COPY the stored rows of the feed's resources; (rows/s, resources per message)."""
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = feed_resource_rows(conn)
        messages = conn.execute("SELECT count(*) FROM inbox WHERE status = 'applied'").fetchone()[0]
        elapsed = copy_as_stored(conn, rows)
    return len(rows) / elapsed, len(rows) / max(messages, 1)


def _cpu_line(label: str, run: dict[str, Any]) -> str:
    cpu = "  ".join(f"{part} {ms:.2f}" for part, ms in run["cpu_ms_per_message"].items())
    return f"{label:<44}{cpu}   ({100 * run['cpu_busy_of_2_cores']:.0f}% of 2 cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", help="PostgreSQL URL (default: a throw-away cluster, fsync on)")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="threads per worker process (default 2 polling, 1 on Redis: the processes then "
        "share the cores without contending for one interpreter)",
    )
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--hl7apy-messages", type=int, default=300)
    parser.add_argument(
        "--redis",
        action="store_true",
        help="workers on Redis Streams (a throw-away redis-server), `hub mllp` as the intake",
    )
    parser.add_argument("--worker-processes", type=int, default=2, help="with --redis")
    args = parser.parse_args()
    if args.workers is None:
        args.workers = 1 if args.redis else 2

    def bench(url: str) -> dict[str, Any]:
        upgrade(url)
        engine = make_engine(url, pool_size=1)
        load_community_resources(engine, demo_community())
        engine.dispose()
        result: dict[str, Any] = {}
        with (
            redis_server(None, args.redis) as redis_url,
            feed_server(url, args.workers, redis_url=redis_url,
                        processes=args.worker_processes) as server,
        ):  # fmt: skip
            _warm_up(server, redis_url, args.worker_processes)
            result["throughput"] = _run(url, server, "T", args.messages, args.senders, None)
            result["known_patients"] = _run(
                url, server, "K", args.messages, args.senders, None,
                make=known_patient_oru("T", args.messages),
            )  # fmt: skip
            steady = int(args.rate * args.seconds)
            result["steady"] = _run(url, server, "S", steady, args.senders, args.rate)
        # The comparison runs in the default shape (its intake is the benchmark's own).
        with feed_server(url, args.workers, hl7apy=True) as server:
            result["hl7apy"] = _run(url, server, "H", args.hl7apy_messages, args.senders, None)
        rows_per_s, per_message = _copy_rows(url)
        result["copy"] = {"rows_per_s": rows_per_s, "resources_per_message": per_message,
                          "messages_per_s": rows_per_s / per_message}  # fmt: skip
        return result

    if args.db:
        result = bench(args.db)
    else:
        with postgres() as url:
            result = bench(url)
    t, s, h, c = result["throughput"], result["steady"], result["hl7apy"], result["copy"]
    k = result["known_patients"]
    workers = (
        f"{args.worker_processes} worker processes on Redis Streams"
        if args.redis
        else "1 worker process polling the inbox"
    )
    threads = f"{args.workers} thread{'s' if args.workers != 1 else ''}"
    print(f"ORU^R01 with 5 OBX, {args.senders} MLLP senders, {workers} ({threads} each), "
          "PostgreSQL fsync on; "
          f"{c['resources_per_message']:.1f} resources per message")  # fmt: skip
    print(f"{'run':<44}{'msgs/s':>9}{'ACK p50':>10}{'ACK p99':>10}")
    print(f"{'hub, as fast as ACKs allow (end to end)':<44}{t['end_to_end_per_s']:>9.0f}"
          f"{t['ack_p50_ms']:>8.1f}ms{t['ack_p99_ms']:>8.1f}ms")  # fmt: skip
    print(f"{'  of which acknowledged (inbox commit)':<44}{t['ack_per_s']:>9.0f}")
    print(_cpu_line("  CPU ms per message", t))
    print(f"{'  the same, each patient known already':<44}{k['end_to_end_per_s']:>9.0f}"
          f"{k['ack_p50_ms']:>8.1f}ms{k['ack_p99_ms']:>8.1f}ms")  # fmt: skip
    print(_cpu_line("    CPU ms per message", k))
    print(f"{f'hub, steady {args.rate:.0f} msgs/s':<44}{s['end_to_end_per_s']:>9.0f}"
          f"{s['ack_p50_ms']:>8.1f}ms{s['ack_p99_ms']:>8.1f}ms"
          f"   backlog after last ACK {s['backlog_s_after_last_ack']:.1f}s")  # fmt: skip
    print(f"{'(a) same pipeline + hl7apy parse_message':<44}{h['end_to_end_per_s']:>9.0f}"
          f"{h['ack_p50_ms']:>8.1f}ms{h['ack_p99_ms']:>8.1f}ms")  # fmt: skip
    print(f"{'(b) raw COPY of the same resource rows':<44}{c['messages_per_s']:>9.0f}"
          f"   ({c['rows_per_s']:,.0f} rows/s)")  # fmt: skip
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "feeds.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
