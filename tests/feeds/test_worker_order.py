"""The background worker: per-patient order kept while patients are applied in parallel."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.feeds.service import FeedService
from tests.feeds.helpers import ack_code, inbox_rows, send_all

PATIENTS = 6
UPDATES = 8


def a08(patient: int, n: int) -> bytes:
    return (
        "MSH|^~\\&|HIS|XRMYY|YGT_HUB|YGT|20261020090000||ADT^A08^ADT_A01|"
        f"U{patient}-{n}|P|2.5||||||UNICODE UTF-8\r"
        "EVN|A08|20261020090000\r"
        f"PID|1||ZY77{patient:04d}^^^XRMYY^MR||王^{patient}||19700101|F|||||"
        f"1390000{patient:02d}{n:02d}\r"
    ).encode()


@pytest.fixture
def running(engine: sa.Engine, clean_db: None) -> Iterator[FeedService]:
    service = FeedService(engine, demo_community(), mllp_port=0, worker_threads=3)
    service.start()
    yield service
    service.stop()


def wait_applied(engine: sa.Engine, count: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses = [r.status for r in inbox_rows(engine)]
        if statuses.count("applied") == count:
            return
        assert "failed" not in statuses, [r.error for r in inbox_rows(engine) if r.error]
        time.sleep(0.05)
    raise AssertionError("the worker did not apply everything in time")


def test_each_patients_updates_apply_in_order(
    running: FeedService, engine: sa.Engine, client: TestClient
) -> None:
    # Interleaved over several connections: a patient's n-th update is always sent (and
    # acknowledged) before its (n+1)-th, since each patient's messages share one connection.
    messages = [a08(p, n) for n in range(UPDATES) for p in range(PATIENTS)]
    answers = send_all(running.port or 0, messages, connections=PATIENTS)
    assert {ack_code(a) for a in answers} == {"AA"}
    wait_applied(engine, PATIENTS * UPDATES)
    for p in range(PATIENTS):
        mrn = f"{demo_community().members['XRMYY'].system('mrn')}|ZY77{p:04d}"
        [patient] = [
            e["resource"]
            for e in client.get("/fhir/Patient", params={"identifier": mrn}).json()["entry"]
        ]
        assert patient["telecom"][0]["value"] == f"1390000{p:02d}{UPDATES - 1:02d}"
        assert patient["meta"]["versionId"] == str(UPDATES)
