"""``hub demo`` for real: a small county's three days played through a ``hub serve`` it starts
(SQLite, real MLLP and HTTP ports), checked against the plan in the store it leaves; and the
hub serving on afterwards, the office logging in with the secret the demo printed."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from adapters.feeds.config import demo_community
from hub.demo.events import Check, Message
from hub.demo.population import build_population
from hub.demo.run import last_month
from hub.demo.traffic import Plan, build_plan

HUB = [sys.executable, "-m", "hub.cli"]
COMMUNITY = demo_community()
CENTRES = {m.code for m in COMMUNITY.members.values() if m.kind.endswith("-centre")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(db: str, residents: int, days: int, month: str, *more: str) -> list[str]:
    ports = ["--port", str(_free_port()), "--mllp-port", str(_free_port())]
    return [*HUB, "demo", "--db", db, "--residents", str(residents), "--days", str(days),
            "--month", month, *ports, *more]  # fmt: skip


def _env() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "120"}
    for name in ("HUB_DB_URL", "HUB_PORT", "HUB_MLLP_PORT", "HUB_BASE_URL"):
        env.pop(name, None)
    return env


def _rows(engine: sa.Engine, sql: str, **params: object) -> list[tuple]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def test_three_days_of_a_small_county_end_with_what_the_plan_says(tmp_path: Path) -> None:
    db, month = f"sqlite:///{tmp_path / 'demo.db'}", last_month(COMMUNITY)
    started = time.monotonic()
    done = subprocess.run(
        _command(db, 200, 3, month, "--exit"), cwd=tmp_path, env=_env(),
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert time.monotonic() - started < 60
    out = " ".join(done.stdout.split())
    assert re.search(r"demo done in \d+\.\d s", out) and "/ui" in out and "ygt-office" in out
    plan: Plan = build_plan(COMMUNITY, build_population(COMMUNITY, 200), month, 3)
    e = plan.expected
    engine = sa.create_engine(db)

    # Every message was taken; the broken ones refused and kept, byte for byte, for replay.
    inbox = dict(_rows(engine, "SELECT status, count(*) FROM inbox GROUP BY status"))
    assert set(inbox) == {"applied", "rejected"} and inbox["rejected"] == e.malformed == 3
    broken = {m.payload for m in plan.events if isinstance(m, Message) and m.expect != ("AA",)}
    kept = _rows(engine, "SELECT raw, error FROM inbox WHERE status = 'rejected'")
    assert {bytes(raw) for raw, _ in kept} == broken and all(error for _, error in kept)
    assert {"utf-8", "PID", "MSH-4"} <= {w for _, err in kept for w in ("utf-8", "PID", "MSH-4")
                                         if w in err}  # fmt: skip

    # The patient index: each resident's archive record, and their records elsewhere linked.
    records = _rows(engine, "SELECT master_id, method FROM mpi_records WHERE active")
    people = {master for master, _ in records}
    reviews = _rows(engine, "SELECT count(*) FROM mpi_reviews WHERE status = 'open'")[0][0]
    assert len(records) > e.residents and e.residents <= len(people) <= e.residents + reviews
    assert Counter(method for _, method in records)["key"] > 0

    # Results, routed orders and what the clinicians did with recognisable results.
    reports = _rows(engine, "SELECT count(*) FROM resources WHERE res_type = 'DiagnosticReport'")
    assert reports[0][0] > 20
    checks = _rows(engine, "SELECT month, source, orderer, decision FROM recognition_checks")
    assert {row[0] for row in checks} == {month}
    asked = [c for c in checks if c[1] == "operation"]
    assert len(asked) == sum(1 for c in plan.events if isinstance(c, Check))
    taken = sum(1 for c in asked if c[3] == "accepted" and c[2] in CENTRES)
    routed = _rows(engine, "SELECT status FROM routed_orders")
    assert len(routed) == e.township_orders - taken
    assert not [s for (s,) in routed if s == "failed"]
    assert not _rows(engine, "SELECT id FROM outbox WHERE status != 'sent'")

    # Referrals both ways, the green channel, and the month's feedback documents.
    referrals = Counter(d for (d,) in _rows(engine, "SELECT direction FROM referrals"))
    assert referrals == Counter(up=e.referrals_up, down=e.referrals_down)
    green = _rows(engine, "SELECT count(*) FROM referrals WHERE green")
    assert green[0][0] == e.green_channel >= 1
    filed = _rows(engine, "SELECT count(*) FROM feedback_documents WHERE month = :m", m=month)
    assert filed[0][0] == e.discharges_in_month >= 1
    engine.dispose()


def test_the_hub_serves_on_and_the_office_logs_in_with_the_printed_secret(
    tmp_path: Path,
) -> None:
    db, month = f"sqlite:///{tmp_path / 'demo.db'}", last_month(COMMUNITY)
    command = _command(db, 80, 1, month)
    base = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    proc = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while not any("keeps running" in line for line in lines):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        [secret] = [m.group(1) for ln in lines if (m := re.match(r"^\s+([\w-]{40,})\s*$", ln))]
        token = httpx.post(f"{base}/auth/token", data={"grant_type": "client_credentials"},
                           auth=("ygt-office", secret), timeout=30)  # fmt: skip
        assert token.status_code == 200, token.text
        office = {"Authorization": f"Bearer {token.json()['access_token']}"}
        kept = httpx.get(f"{base}/admin/inbox", params={"status": "rejected"}, headers=office)
        assert kept.status_code == 200 and len(kept.json()["messages"]) == 3
        found = httpx.get(f"{base}/fhir/Patient", params={"_summary": "count"}, headers=office)
        assert found.json()["total"] >= 80
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, "".join(lines) + rest
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/fhir/metadata", timeout=5)
