"""The other intakes: POST /hl7v2, hub ingest (files, FHS/BHS batches), the office's inbox API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.hl7v2.batch import split_messages
from hub.queue.worker import drain
from tests.feeds.helpers import ack_code, inbox_rows

MESSAGES = Path(__file__).with_name("messages")
REPO = Path(__file__).resolve().parents[2]


def test_split_messages_handles_frames_batches_and_blank_lines() -> None:
    one, two = b"MSH|^~\\&|A|B|||1||ADT^A08|1|P|2.5\rPID|1\r", b"MSH|^~\\&|A|B|||1||ADT^A08|2|P|2.5"
    assert split_messages(b"\x0b" + one + b"\x1c\r\x0b" + two + b"\x1c\r") == [one, two]
    batch = b"FHS|^~\\&\rBHS|^~\\&\r" + one + b"\n\n" + two + b"\nBTS|2\rFTS|1\r"
    assert split_messages(batch) == [one, two + b"\r"]
    assert split_messages(one.replace(b"\r", b"\r\n")) == [one]


def test_post_hl7v2_returns_one_ack_per_message(client: TestClient, engine: sa.Engine) -> None:
    stranger = b"MSH|^~\\&|HIS|NOBODY|YGT_HUB|YGT|20261020||ADT^A08|N1|P|2.5\rPID|1||1\r"
    body = (MESSAGES / "story-1-a01.hl7").read_bytes() + b"\r\n" + stranger
    res = client.post("/hl7v2", content=body, headers={"Content-Type": "x-application/hl7-v2+er7"})
    assert res.status_code == 200
    acks = split_messages(res.content)
    assert [ack_code(a) for a in acks] == ["AA", "AR"]
    assert [r.status for r in inbox_rows(engine)] == ["pending", "rejected"]
    assert [r.transport for r in inbox_rows(engine)] == ["http", "http"]


def test_inbox_api_lists_shows_and_replays(client: TestClient, engine: sa.Engine) -> None:
    raw = (MESSAGES / "story-3-oru.hl7").read_bytes().replace(b"|NM|HGB", b"|NM|HGB", 1)
    broken = raw.replace(b"||132|", b"||one hundred|")
    client.post("/hl7v2", content=broken)
    [row] = client.get("/admin/inbox", params={"status": "rejected"}).json()["messages"]
    assert row["sender"] == "XJYZX" and "OBX" in row["error"]
    shown = client.get(f"/admin/inbox/{row['id']}").json()
    assert "one hundred" in shown["raw"] and shown["bundle"] is None
    # Replay cannot fix bad content (the sender must resend); the message stays rejected.
    result = client.post("/admin/inbox/replay", json={"ids": [row["id"]]}).json()["result"]
    assert result == {"still rejected": 1}
    assert client.post("/admin/inbox/replay", content=b"[1, 2]").status_code == 400
    assert client.get("/admin/inbox/999999").status_code == 404


def test_hub_ingest_files(tmp_path: Path, db_url: str, engine: sa.Engine, clean_db: None) -> None:
    batch = tmp_path / "stay.hl7"
    batch.write_bytes(
        b"FHS|^~\\&|HIS|XRMYY\rBHS|^~\\&|HIS|XRMYY\r"
        + b"\r".join((MESSAGES / f).read_bytes().rstrip(b"\r") for f in ("story-1-a01.hl7",))
        + b"\rBTS|1\rFTS|1\r"
    )
    lab = MESSAGES / "story-3-oru.hl7"
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "ingest", str(batch), str(lab), "--db", db_url],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "AA 1" in done.stderr and "CA 1" in done.stderr
    assert "applied 2" in done.stderr
    assert drain(engine) == {}
    assert {r.transport for r in inbox_rows(engine)} == {"file"}
