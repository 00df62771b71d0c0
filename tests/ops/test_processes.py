"""The hub's parts as processes of their own, as docker-compose.yml runs them: ``hub api``,
``hub mllp``, ``hub worker`` and ``hub scheduler`` on one store, each with its health and
metrics endpoint, JSON logs, and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa

from hub.store.schema import inbox
from tests.feeds.helpers import ack_code, send_all
from tests.ops.messages import SECRETS, oru

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.log_path = name, logs / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=self._log,
        )  # fmt: skip

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_http(self, url: str, seconds: float = 90) -> httpx.Response:
        deadline = time.monotonic() + seconds
        while True:
            try:
                return httpx.get(url, timeout=5)
            except httpx.TransportError:
                assert self.proc.poll() is None, f"{self.name} died:\n{self.log}"
                assert time.monotonic() < deadline, f"{self.name} did not start:\n{self.log}"
                time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._log.close()


@pytest.fixture
def hub_processes(
    db_url: str, clean_db: None, tmp_path: Path
) -> Iterator[dict[str, tuple[Process, int]]]:
    env = {
        **os.environ,
        "HUB_DB_URL": db_url,
        "HUB_ADMIN_CREDENTIALS": str(tmp_path / "admin.json"),
        "HUB_OPS_HOST": "127.0.0.1",
    }
    env.pop("HUB_LOG_FORMAT", None)  # the default of these commands: JSON
    ports = {name: _free_port() for name in ("api", "mllp", "mllp-ops", "worker", "scheduler")}
    started: dict[str, tuple[Process, int]] = {}
    api = Process("api", ["api", "--port", str(ports["api"])], env, tmp_path)
    started["api"] = (api, ports["api"])
    # The API prepares the store first (as compose's migrate service does), then the others.
    api.wait_http(f"http://127.0.0.1:{ports['api']}/healthz")
    mllp = Process(
        "mllp",
        ["mllp", "--mllp-port", str(ports["mllp"]), "--ops-port", str(ports["mllp-ops"])],
        env, tmp_path,
    )  # fmt: skip
    started["mllp"] = (mllp, ports["mllp-ops"])
    for name, args in (
        ("worker", ["worker", "--no-scheduler", "--ops-port", str(ports["worker"])]),
        ("scheduler", ["scheduler", "--ops-port", str(ports["scheduler"])]),
    ):
        started[name] = (Process(name, args, env, tmp_path), ports[name])
    started["mllp-listener"] = (mllp, ports["mllp"])
    try:
        yield started
    finally:
        for name in ("api", "mllp", "worker", "scheduler"):
            process = started[name][0]
            if process.proc.poll() is None:
                process.proc.kill()
                process.proc.wait(30)


def test_the_parts_run_separately_and_stop_cleanly(
    hub_processes: dict[str, tuple[Process, int]], engine: sa.Engine
) -> None:
    for name in ("api", "mllp", "worker", "scheduler"):
        process, port = hub_processes[name]
        assert process.wait_http(f"http://127.0.0.1:{port}/healthz").status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 200, (name, ready.text)
        assert ready.json()["checks"]["database"]["ok"] is True

    # MLLP in, worker applies: the listener process only stores and acknowledges.
    _, mllp_port = hub_processes["mllp-listener"]
    answers = send_all(mllp_port, [oru(f"P{n}", mrn=f"ZYP{n}") for n in range(5)])
    assert [ack_code(a) for a in answers] == ["AA"] * 5
    deadline = time.monotonic() + 60
    applied = sa.select(sa.func.count()).select_from(inbox).where(inbox.c.status == "applied")
    while True:
        with engine.connect() as conn:
            if conn.execute(applied).scalar_one() == 5:
                break
        assert time.monotonic() < deadline, hub_processes["worker"][0].log
        time.sleep(0.2)

    _, mllp_ops = hub_processes["mllp"]
    metrics = httpx.get(f"http://127.0.0.1:{mllp_ops}/metrics").text
    assert (
        'hub_feed_messages_received_total{ack="AA",message_type="ORU^R01",sender="XJYZX"} 5.0'
        in metrics
    )
    assert "hub_mllp_ack_latency_seconds_count 5.0" in metrics
    _, worker_ops = hub_processes["worker"]
    worker_metrics = httpx.get(f"http://127.0.0.1:{worker_ops}/metrics").text
    assert (
        'hub_feed_messages_applied_total{message_type="ORU^R01",sender="XJYZX"}' in worker_metrics
    )
    _, api_port = hub_processes["api"]
    res = httpx.get(f"http://127.0.0.1:{api_port}/fhir/metadata", headers={"X-Request-ID": "t-1"})
    assert res.status_code == 200 and res.headers["x-request-id"] == "t-1"

    for name in ("api", "mllp", "worker", "scheduler"):
        process = hub_processes[name][0]
        assert process.stop() == 0, (name, process.log)
        lines = [line for line in process.log.splitlines() if line.startswith("{")]
        entries = [orjson.loads(line) for line in lines]  # every JSON line parses
        assert entries, name
        assert all({"time", "level", "logger", "message", "correlation_id"} <= set(e)
                   for e in entries)  # fmt: skip
        for secret in SECRETS:
            assert secret not in process.log, (name, secret)
    mllp_log = hub_processes["mllp"][0].log
    assert '"correlation_id":"hl7:XJYZX:P0"' in mllp_log
    assert '"message":"signal SIGTERM: draining"' in mllp_log
    assert '"correlation_id":"t-1"' in hub_processes["api"][0].log
