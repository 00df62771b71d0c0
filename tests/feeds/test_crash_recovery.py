"""kill -9 of the hub in the middle of a burst: nothing acknowledged is lost or applied twice.

Senders behave as real ones do: a message without an ACK is sent again, and some whose ACK
did arrive are sent again anyway (a lost ACK looks the same to them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from adapters.mllp.client import MLLPClient
from tests.bench.feeds import oru
from tests.feeds.helpers import inbox_rows

REPO = Path(__file__).resolve().parents[2]
MESSAGES = 240


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(db_url: str, mllp: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "serve", "--db", db_url, "--port", str(_port()),
         "--mllp-port", str(mllp)],
        cwd=REPO, env={**os.environ, "HUB_LOG_LEVEL": "warning"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", mllp), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("hub serve did not open its MLLP port")


async def _send(port: int, messages: list[bytes], acked: set[int], stop_after: int | None) -> None:
    async def sender(lane: int) -> None:
        try:
            async with MLLPClient("127.0.0.1", port, timeout=30) as client:
                for i in range(lane, len(messages), 4):
                    if i in acked:
                        continue
                    answer = await client.send(messages[i])
                    assert b"MSA|AA" in answer, answer
                    acked.add(i)
        except (OSError, asyncio.IncompleteReadError, Exception):
            if stop_after is None:
                raise

    await asyncio.gather(*(sender(lane) for lane in range(4)))


def test_kill_9_mid_burst_loses_nothing(db_url: str, engine: sa.Engine, clean_db: None) -> None:
    messages = [oru("K", n) for n in range(MESSAGES)]
    mllp = _port()
    hub = _start(db_url, mllp)
    acked: set[int] = set()

    async def burst_then_kill() -> None:
        task = asyncio.create_task(_send(mllp, messages, acked, stop_after=MESSAGES // 2))
        while len(acked) < MESSAGES // 2 and not task.done():
            await asyncio.sleep(0.01)
        os.kill(hub.pid, signal.SIGKILL)
        await task

    asyncio.run(burst_then_kill())
    hub.wait(timeout=30)
    rows = inbox_rows(engine)
    assert len({r.control_id for r in rows}) >= len(acked)  # every ACK was preceded by a commit
    assert len(acked) < MESSAGES  # the kill came mid-burst

    hub = _start(db_url, mllp)
    try:
        resend = set(list(acked)[:20])  # ACKs "lost": the sender sends these again too
        acked -= resend
        asyncio.run(_send(mllp, messages, acked, stop_after=None))
        assert len(acked) == MESSAGES
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = [r.status for r in inbox_rows(engine)]
            if statuses.count("applied") == MESSAGES:
                break
            time.sleep(0.2)
    finally:
        hub.terminate()
        hub.wait(timeout=60)

    statuses = [r.status for r in inbox_rows(engine)]
    assert statuses.count("applied") == MESSAGES and len(statuses) == MESSAGES
    with engine.connect() as conn:
        counts = dict(
            conn.execute(
                sa.text("SELECT res_type, count(*) FROM resources GROUP BY res_type")
            ).all()
        )
    assert counts["DiagnosticReport"] == MESSAGES
    assert counts["Observation"] == MESSAGES * 5
    assert counts["Provenance"] == MESSAGES
    # One record per patient, and one master record per person in the patient index.
    assert counts["Patient"] == MESSAGES * 2
