"""The polling worker's dispatcher: it reads on past what it holds, and still finds what is
put back to pending behind it."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.queue import worker as inbox_worker
from hub.queue.intake import receive
from hub.queue.worker import InboxWorker
from hub.store.schema import inbox
from tests.feeds.test_worker_order import a08, wait_applied

pytestmark = pytest.mark.usefixtures("clean_db")


def test_a_backlog_larger_than_its_prefetch_is_applied_in_order(
    engine: sa.Engine, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_worker, "PREFETCH", 4)
    community = demo_community()
    for n in range(5):
        for p in range(6):
            assert receive(engine, a08(p, n), community, transport="test").code == "AA"
    worker = InboxWorker(engine, threads=2, poll_seconds=0.1)
    worker.start()
    try:
        wait_applied(engine, 30)
    finally:
        worker.stop()
    for p in range(6):
        mrn = f"{community.members['XRMYY'].system('mrn')}|ZY77{p:04d}"
        [entry] = client.get("/fhir/Patient", params={"identifier": mrn}).json()["entry"]
        assert entry["resource"]["telecom"][0]["value"] == f"1390000{p:02d}04"


def test_a_message_put_back_to_pending_behind_the_cursor_is_applied(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    community = demo_community()
    first = receive(engine, a08(1, 0), community, transport="test").inbox_id
    worker = InboxWorker(engine, threads=1, poll_seconds=0.1)
    worker.start()
    try:
        wait_applied(engine, 1)
        for n in range(1, 4):  # the dispatcher reads past these
            receive(engine, a08(2, n), community, transport="test")
            worker.wake()
        wait_applied(engine, 4)
        # As an office replay leaves it: pending again, with an id below everything read.
        with engine.begin() as conn:
            conn.execute(sa.update(inbox).where(inbox.c.id == first).values(status="pending"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(sa.select(inbox.c.status, inbox.c.attempts).where(
                    inbox.c.id == first)).one()  # fmt: skip
            if row.status == "applied" and row.attempts == 2:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"message {first} was not applied again: {row}")
    finally:
        worker.stop()
