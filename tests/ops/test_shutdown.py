"""Graceful shutdown: SIGTERM drains in-flight work.

The listener answers the message in hand before it closes a connection, the worker finishes
the transaction it is in, and a real ``hub serve`` stopped in the middle of a burst exits 0
having lost nothing it acknowledged and half-written nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from adapters.mllp.framing import END_BLOCK, frame
from adapters.mllp.listener import MLLPServer
from hub.queue.worker import drain
from hub.store.schema import inbox, resources
from tests.feeds.helpers import ack_code
from tests.ops.messages import oru

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the listener on its own -----------------------------------------------------------------


async def _exchange_during_stop(handler_seconds: float, grace: float) -> tuple[bytes, float]:
    """Send one message; stop the server while its handler runs; what came back, how long
    stop() took."""
    started = asyncio.Event()

    async def slow(payload: bytes, _peer: str) -> bytes:
        started.set()
        await asyncio.sleep(handler_seconds)
        return b"ACK " + payload

    server = MLLPServer(slow, port=0)
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(frame(b"M1"))
    await writer.drain()
    await started.wait()
    t0 = time.monotonic()
    await server.stop(grace)
    took = time.monotonic() - t0
    answer = await reader.read()  # everything until the server closed the connection
    assert await idle_reader.read() == b""  # an idle connection is simply closed
    writer.close()
    idle_writer.close()
    return answer, took


def test_the_message_in_hand_is_answered_before_the_connection_closes() -> None:
    answer, took = asyncio.run(_exchange_during_stop(handler_seconds=0.5, grace=5))
    assert answer == frame(b"ACK M1")
    assert 0.3 < took < 3


def test_a_handler_past_the_grace_period_is_cut_off() -> None:
    answer, took = asyncio.run(_exchange_during_stop(handler_seconds=30, grace=0.3))
    assert answer == b""  # no ACK: the sender will resend, and the resend is recognised
    assert took < 3


# --- a real hub serve, stopped in the middle of a burst ---------------------------------------


class Sender(threading.Thread):
    """One member system: a kept-open connection, one message at a time, each waiting for its
    ACK; stops at the first connection the hub closes or refuses."""

    def __init__(self, port: int, lane: int, burst: int) -> None:
        super().__init__(daemon=True)
        self.port, self.lane, self.burst = port, lane, burst
        self.acked: list[str] = []
        self.unanswered: list[str] = []
        self.codes: list[str] = []

    def run(self) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        except OSError:
            return
        with sock:
            for n in range(self.burst):
                control_id = f"SD{self.lane}-{n}"
                try:
                    sock.sendall(frame(oru(control_id, mrn=f"ZYSD{self.lane}X{n}")))
                    buffer = b""
                    while END_BLOCK not in buffer:
                        chunk = sock.recv(65536)
                        if not chunk:
                            raise ConnectionError("closed by the hub")
                        buffer += chunk
                except OSError:
                    self.unanswered.append(control_id)
                    return
                self.codes.append(ack_code(buffer[1 : buffer.index(END_BLOCK)]))
                self.acked.append(control_id)


def _count(engine: sa.Engine, query: sa.Select[tuple[int]]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_sigterm_during_a_burst_loses_nothing_acknowledged(
    db_url: str, engine: sa.Engine, clean_db: None, tmp_path: Path
) -> None:
    mllp_port, http_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "HUB_DB_URL": db_url,
        "HUB_FEEDBACK_SCHEDULE": "false",
        "HUB_ADMIN_CREDENTIALS": str(tmp_path / "admin.json"),
        "HUB_LOG_FORMAT": "json",
        "HUB_SHUTDOWN_TIMEOUT": "10",
    }
    log_file = (tmp_path / "hub.log").open("wb")
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--port", str(http_port),
         "--mllp-port", str(mllp_port)],
        cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", mllp_port), timeout=1).close()
                break
            except OSError:
                assert hub.poll() is None, (tmp_path / "hub.log").read_text()
                assert time.monotonic() < deadline, "hub serve did not start"
                time.sleep(0.2)
        senders = [Sender(mllp_port, lane, burst=400) for lane in range(4)]
        for sender in senders:
            sender.start()
        # SIGTERM once the burst is well under way (messages in flight on every connection).
        while sum(len(s.acked) for s in senders) < 60:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        hub.send_signal(signal.SIGTERM)
        code = hub.wait(timeout=60)
    finally:
        if hub.poll() is None:
            hub.kill()
        log_file.close()
    for sender in senders:
        sender.join(30)
    log = (tmp_path / "hub.log").read_text()
    assert code == 0, log

    acked = {cid for s in senders for cid in s.acked}
    print(f"acked {len(acked)}, cut off {sum(len(s.unanswered) for s in senders)}")
    assert all(c in ("AA", "CA") for s in senders for c in s.codes)
    assert 60 <= len(acked) < 1600  # stopped mid-burst
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(inbox.c.control_id, inbox.c.status).where(inbox.c.accepted.is_(True))
        ).all()
    stored = {r.control_id: r.status for r in rows}
    assert acked <= set(stored), "an acknowledged message is missing"
    assert len(rows) == len(stored)  # none stored twice

    observations = sa.select(sa.func.count()).where(
        resources.c.res_type == "Observation", resources.c.deleted.is_(False)
    )
    applied = sa.select(sa.func.count()).select_from(inbox).where(inbox.c.status == "applied")
    # Each message is one Observation, written with its inbox row's status in one transaction:
    # whatever the hub applied before it stopped is whole, and nothing else was written.
    assert _count(engine, observations) == _count(engine, applied)
    # The next worker applies what was left pending; then every accepted message is applied
    # exactly once.
    drain(engine)
    assert _count(engine, applied) == len(stored)
    assert _count(engine, observations) == len(stored)
