"""The `hub` command: migrate and serve, configured by flags, environment and file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from hub.config import load_settings

HUB = [sys.executable, "-m", "hub.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    done = subprocess.run(
        [*HUB, "migrate", "--db", url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    from hub.store.migrate import head

    assert f"revision {head()}" in " ".join(done.stderr.split())
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    expected = {
        "resources",
        "resource_history",
        "idx_token",
        "idx_date",
        "inbox",
        "alembic_version",
    }
    assert expected <= tables


def test_serve_answers_metadata_on_the_embedded_default(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "HUB_PORT": str(port)}
    env.pop("HUB_DB_URL", None)
    proc = subprocess.Popen(
        [*HUB, "serve"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                res = httpx.get(f"http://127.0.0.1:{port}/fhir/metadata", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "hub serve did not start"
                time.sleep(0.3)
        assert res.status_code == 200
        assert res.json()["resourceType"] == "CapabilityStatement"
        assert (tmp_path / "hub.db").exists()  # the embedded default: ./hub.db
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text('[hub]\ndb_url = "sqlite:///from-file.db"\nport = 9001\nmax_body_bytes = 4096\n')
    mp = monkeypatch
    mp.delenv("HUB_DB_URL", raising=False)
    mp.setenv("HUB_PORT", "9002")
    settings = load_settings(str(cfg))
    assert settings.db_url == "sqlite:///from-file.db"
    assert settings.port == 9002  # environment beats the file
    assert settings.max_body_bytes == 4096
    assert load_settings(str(cfg), port=9003).port == 9003  # flags beat both
    mp.setenv("HUB_CONFIG", str(cfg))
    assert load_settings().db_url == "sqlite:///from-file.db"


def test_worker_applies_the_inbox_and_stops_cleanly(tmp_path: Path) -> None:
    import signal

    from adapters.feeds.config import demo_community
    from hub.db import make_engine
    from hub.queue.intake import receive
    from hub.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    engine = make_engine(url)
    message = (Path(__file__).parent / "feeds" / "messages" / "story-1-a01.hl7").read_bytes()
    assert receive(engine, message, demo_community(), transport="test").code == "AA"
    worker = subprocess.Popen(
        [*HUB, "worker", "--db", url, "--nice", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                status = conn.execute(sa.text("SELECT status FROM inbox")).scalar_one()
            if status != "pending":
                break
            time.sleep(0.2)
        assert status == "applied"
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    engine.dispose()


def test_feedback_command_runs_a_month(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    done = subprocess.run(
        [*HUB, "feedback", "--month", "2026-10", "--db", db],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "0 stays: 0 new" in " ".join(done.stderr.split())
    bad = subprocess.run(
        [*HUB, "feedback", "--month", "2026-1", "--db", db],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode != 0 and "YYYY-MM" in bad.stderr


def test_token_and_clients_commands(tmp_path: Path) -> None:
    """The local admin client appears on first use with its credentials file readable by its
    owner only; `hub token` prints a bearer token alone on its last line."""
    db = f"sqlite:///{tmp_path / 'hub.db'}"

    def hub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*HUB, *args, "--db", db], capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    admin = hub("token", "--admin")
    assert admin.returncode == 0, admin.stderr
    creds = tmp_path / "hub.db.admin.json"
    assert creds.exists() and (creds.stat().st_mode & 0o777) == 0o600
    assert "admin.json" in admin.stderr  # it says where
    last = admin.stdout.strip().splitlines()[-1]
    assert last.count(".") == 2 and " " not in last  # a JWT, alone
    added = hub("clients", "add", "--id", "qs-his", "--org", "QSWSY", "--scopes",
                "system/Patient.rs", "--secret")  # fmt: skip
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip().splitlines()[-1]
    listed = hub("clients", "list").stdout
    assert "qs-his\tQSWSY\tmember\tsecret" in listed and secret not in listed
    minted = hub("token", "--client", "qs-his", "--scope", "system/Patient.read")
    assert minted.returncode == 0 and "system/Patient.read" in minted.stderr
    refused = hub("token", "--client", "qs-his", "--scope", "system/*.cruds")
    assert refused.returncode != 0
    assert hub("clients", "add", "--id", "x", "--org", "NOPE", "--scopes", "system/*.rs",
               "--secret").returncode != 0  # fmt: skip
