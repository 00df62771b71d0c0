"""What the fault tests share: real senders that resend, hub processes to kill, servers to
restart, and the exactly-once check.

Senders behave as a member's interface engine does: each keeps a connection open, sends one
message at a time and waits for its ACK; a message answered AR/AE or not answered at all (the
connection broke, the hub vanished) is sent again after a short pause, on a new connection if
need be; after a reconnect the last acknowledged message is sent once more as well (its ACK
might have been lost in the break, and the hub must recognise the resend).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from adapters.mllp.client import MLLPClient
from adapters.mllp.framing import FramingError
from hub.store.schema import inbox, resources
from tests.bench.feeds import oru
from tests.feeds.helpers import ack_code

REPO = Path(__file__).resolve().parents[2]
# Messages per fault run (HUB_FAULT_MESSAGES=10000 for the full runs in the README).
MESSAGES = int(os.environ.get("HUB_FAULT_MESSAGES", "1000"))
# Seconds for the whole burst to be applied after the senders finished, at worst.
APPLY_SECONDS = 120 + MESSAGES / 20
# Each ORU^R01 (tests.bench.feeds.oru: distinct patient, placer and filler numbers) writes:
PER_MESSAGE = {
    "DiagnosticReport": 1,
    "Observation": 5,
    "ServiceRequest": 1,
    "Provenance": 1,
    "Patient": 2,  # the lab centre's record of the patient, and its master record
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.05)


def messages(run: str, count: int = MESSAGES) -> list[bytes]:
    return [oru(run, n) for n in range(count)]


# --- senders ---------------------------------------------------------------------------------


class Burst:
    """``senders`` concurrent senders over real sockets, paced at ``rate`` messages/s overall,
    in a thread of their own so the test can break things meanwhile."""

    def __init__(
        self,
        port: int,
        payloads: list[bytes],
        *,
        senders: int = 8,
        rate: float = 250.0,
        ack_timeout: float = 15.0,
    ) -> None:
        self.port, self.payloads, self.senders = port, payloads, senders
        self.rate, self.ack_timeout = rate, ack_timeout
        self.acked: set[int] = set()
        self.answers: Counter[str] = Counter()  # ACK codes received, resends' included
        self.broken = 0  # sends that got no answer (connection refused, closed or silent)
        self.resent_acked = 0  # acknowledged messages sent again after a reconnect
        self.latencies: list[float] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="burst", daemon=True)
        self.started = self.finished = 0.0

    def start(self) -> Burst:
        self._thread.start()
        return self

    def join(self, seconds: float) -> None:
        self._thread.join(seconds)
        assert not self._thread.is_alive(), f"senders still busy: {self.summary()}"
        if self.error is not None:
            raise self.error

    def summary(self) -> str:
        return (
            f"acknowledged {len(self.acked)}/{len(self.payloads)}, answers {dict(self.answers)}, "
            f"unanswered sends {self.broken}, acknowledged ones resent {self.resent_acked}"
        )

    def _main(self) -> None:
        self.started = time.monotonic()
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by join()
            self.error = exc
        self.finished = time.monotonic()

    async def _run(self) -> None:
        await asyncio.gather(*(self._sender(lane) for lane in range(self.senders)))

    async def _connect(self) -> MLLPClient:
        delay = 0.05
        while True:
            client = MLLPClient("127.0.0.1", self.port, timeout=self.ack_timeout)
            try:
                await client.connect()
                return client
            except (OSError, TimeoutError):
                await asyncio.sleep(delay)  # the hub is down: try again, as an engine does
                delay = min(delay * 2, 0.5)

    async def _exchange(self, client: MLLPClient, i: int) -> str:
        t0 = time.perf_counter()
        answer = await client.send(self.payloads[i])
        code = ack_code(answer)
        self.answers[code] += 1
        if code == "AA":
            self.latencies.append(time.perf_counter() - t0)
        return code

    async def _sender(self, lane: int) -> None:
        client: MLLPClient | None = None
        last_acked: int | None = None
        start = time.perf_counter()
        for i in range(lane, len(self.payloads), self.senders):
            await asyncio.sleep(max(0.0, start + i / self.rate - time.perf_counter()))
            while True:
                try:
                    if client is None:
                        client = await self._connect()
                        if last_acked is not None:  # its ACK might be what the break lost
                            self.resent_acked += 1
                            await self._exchange(client, last_acked)
                    code = await self._exchange(client, i)
                except (OSError, TimeoutError, FramingError, asyncio.IncompleteReadError):
                    self.broken += 1
                    if client is not None:
                        await client.close()
                    client = None
                    await asyncio.sleep(0.1)
                    continue
                if code == "AA":
                    self.acked.add(i)
                    last_acked = i
                    break
                await asyncio.sleep(0.2)  # AR/AE: the hub could not take it now; send it again
        if client is not None:
            await client.close()


# --- processes and servers ---------------------------------------------------------------------


class Hub:
    """One ``hub`` process (serve, mllp, worker), its output kept in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Hub:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", *self.args],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_port(self, port: int, seconds: float = 90) -> None:
        def listening() -> bool:
            assert self.alive(), f"{self.name} exited:\n{self.log_tail()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, seconds, f"{self.name} to listen on {port}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def hub_env(db_url: str, tmp: Path, **extra: str) -> dict[str, str]:
    # Redis only where the test asks for it.
    env = {k: v for k, v in os.environ.items() if k != "HUB_REDIS_URL"}
    env.update({
        "HUB_DB_URL": db_url,
        "HUB_FEEDBACK_SCHEDULE": "false",
        "HUB_ADMIN_CREDENTIALS": str(tmp / "admin.json"),
        "HUB_LOG_FORMAT": "json",
        "HUB_LOG_LEVEL": "warning",
        "HUB_SHUTDOWN_TIMEOUT": "10",
        **extra,
    })  # fmt: skip
    return env


def redis_env(redis_url: str) -> dict[str, str]:
    """The stream settings of a fault run: a key prefix of its own, and short idle and
    reconcile times so that a dead consumer's entries move within the test."""
    return {
        "HUB_REDIS_URL": redis_url,
        "HUB_REDIS_PREFIX": f"faults-{uuid.uuid4().hex[:8]}",
        "HUB_STREAM_CLAIM_IDLE": "3",
        "HUB_STREAM_RECONCILE_SECONDS": "5",
    }


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PgCluster:
    """A throw-away PostgreSQL cluster of the test's own, to stop and start at will (fsync on:
    what it acknowledged survives an immediate stop)."""

    def __init__(self) -> None:
        from tests.bench.common import pg_bin

        self.bin = pg_bin()
        self.work = Path(tempfile.mkdtemp(prefix="hub-faults-pg-"))
        self.work.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.work, "postgres")
        self.data = self.work / "data"
        self.port = free_port()
        subprocess.run(
            [*_as_postgres(), str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
             "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.start()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres(), str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.work} -c listen_addresses=127.0.0.1 -c max_connections=100"
        )
        self._ctl("-l", str(self.work / "log"), "-w", "-t", "60", "start", "-o", options)

    def stop(self, mode: str = "immediate") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def destroy(self) -> None:
        subprocess.run(
            [*_as_postgres(), str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "stop"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        shutil.rmtree(self.work, ignore_errors=True)


class RedisServer:
    """A redis-server of the test's own, without persistence: a restart loses everything."""

    def __init__(self) -> None:
        self.port = free_port()
        self.work = Path(tempfile.mkdtemp(prefix="hub-faults-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.work)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def answers() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(answers, 30, "redis-server to start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def destroy(self) -> None:
        self.kill()
        shutil.rmtree(self.work, ignore_errors=True)


# --- the checks --------------------------------------------------------------------------------


def applied_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(inbox).where(inbox.c.status == "applied")
            ).scalar_one()
        )


def wait_all_applied(engine: sa.Engine, count: int, seconds: float, hubs: list[Hub]) -> float:
    """Seconds until ``count`` messages are applied (fails with the hubs' logs if not)."""
    t0 = time.monotonic()
    try:
        wait_for(lambda: applied_count(engine) >= count, seconds, f"{count} applied messages")
    except AssertionError as exc:
        logs = "\n".join(f"--- {h.name}\n{h.log_tail()}" for h in hubs)
        raise AssertionError(f"{exc}; applied {applied_count(engine)}\n{logs}") from None
    return time.monotonic() - t0


def assert_exactly_once(engine: sa.Engine, burst: Burst, run: str) -> None:
    """Every message acknowledged AA is stored once and applied once; the resources written
    are exactly what the messages ask for, each in its first version."""
    total = len(burst.payloads)
    assert len(burst.acked) == total, burst.summary()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(inbox.c.control_id, inbox.c.status, inbox.c.attempts).where(
                inbox.c.accepted.is_(True)
            )
        ).all()
        counts: dict[str, int] = dict(
            conn.execute(
                sa.select(resources.c.res_type, sa.func.count())
                .where(resources.c.deleted.is_(False))
                .group_by(resources.c.res_type)
            ).all()
        )
        versions = dict(
            conn.execute(
                sa.select(resources.c.res_type, sa.func.max(resources.c.version_id))
                .where(resources.c.res_type.in_(["DiagnosticReport", "Observation"]))
                .group_by(resources.c.res_type)
            ).all()
        )
    stored = Counter(r.control_id for r in rows)
    assert {f"{run}-{n}" for n in range(total)} == set(stored), "a message is missing"
    assert max(stored.values()) == 1, "a message was stored twice"
    assert {r.status for r in rows} == {"applied"}
    # attempts moves in the transaction that applies: a second application would show here.
    assert {r.attempts for r in rows} == {1}
    assert {t: counts.get(t, 0) for t in PER_MESSAGE} == {
        t: n * total for t, n in PER_MESSAGE.items()
    }
    assert versions == {"DiagnosticReport": 1, "Observation": 1}


def report(what: str, burst: Burst, applied_after: float) -> None:
    """One line of figures per run (shown with ``pytest -s``)."""
    print(
        f"\n{what}: {len(burst.payloads)} messages in {burst.finished - burst.started:.1f} s; "
        f"{burst.summary()}; ACK p50 {percentile(burst.latencies, 50) * 1000:.1f} ms, "
        f"p99 {percentile(burst.latencies, 99) * 1000:.1f} ms; all applied "
        f"{applied_after:.1f} s after the last ACK"
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0
