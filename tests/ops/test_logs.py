"""Structured logs: JSON lines, correlation ids per request and per HL7 message, and nothing
clinical in any line, on the happy path and on the failing ones."""

from __future__ import annotations

import logging

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.feeds.service import FeedService
from hub.ops.logs import (
    JsonFormatter,
    TextFormatter,
    bind,
    correlated,
    correlation_id,
    hl7_correlation_id,
    safe_id,
)
from hub.queue import intake, worker
from hub.queue.worker import drain
from hub.store.schema import inbox
from tests.feeds.helpers import ack_code, send_all
from tests.ops.conftest import CapturedLogs
from tests.ops.messages import MRN, PATIENT_NAME, RESIDENT_ID, RESULT_VALUE, SECRETS, oru


def _record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
    record = logging.LogRecord("hub.test", logging.ERROR, __file__, 1, message, None, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    return record


def test_one_json_object_per_line_with_the_bound_fields() -> None:
    with correlated("req-1", route="/fhir/{res_type}"):
        bind(inbox_id=7)
        line = JsonFormatter().format(_record("something happened"))
    entry = orjson.loads(line)
    assert "\n" not in line
    assert entry["level"] == "ERROR" and entry["logger"] == "hub.test"
    assert entry["message"] == "something happened"
    assert entry["correlation_id"] == "req-1"
    assert entry["route"] == "/fhir/{res_type}" and entry["inbox_id"] == 7
    assert entry["time"].endswith("+00:00")
    assert correlation_id() is None  # unbound after the block


def test_exceptions_are_logged_without_their_text() -> None:
    try:
        raise ValueError(f"PID-5 {PATIENT_NAME} {RESIDENT_ID}")
    except ValueError as exc:
        json_line = JsonFormatter().format(_record("failed", exc))
        text_line = TextFormatter().format(_record("failed", exc))
    entry = orjson.loads(json_line)
    assert entry["error"].startswith("ValueError at ops/test_logs.py:")
    assert any("in test_exceptions_are_logged_without_their_text" in f for f in entry["stack"])
    for line in (json_line, text_line):
        assert PATIENT_NAME not in line and RESIDENT_ID not in line
    assert "ValueError at" in text_line


def test_ids_that_are_not_plainly_ids_are_hashed() -> None:
    assert safe_id("JY-R01-0001") == "JY-R01-0001"
    hashed = safe_id(f"{PATIENT_NAME}-1")
    assert hashed.startswith("h-") and PATIENT_NAME not in hashed
    assert hashed == safe_id(f"{PATIENT_NAME}-1")  # stable: lines can still be matched up
    assert hl7_correlation_id("XJYZX", "") == "hl7:XJYZX:-"


def test_request_ids_are_honoured_generated_and_returned(
    client: TestClient, captured_logs: CapturedLogs
) -> None:
    res = client.get("/fhir/Patient", headers={"X-Request-ID": "lb-42"})
    assert res.headers["x-request-id"] == "lb-42"
    res = client.get("/fhir/Patient", headers={"X-Correlation-ID": "his-7"})
    assert res.headers["x-request-id"] == "his-7"
    generated = client.get("/fhir/Patient").headers["x-request-id"]
    assert len(generated) == 32
    # A header that is not plainly an id is replaced, not logged.
    res = client.get("/fhir/Patient", headers={"X-Request-ID": f"{PATIENT_NAME} x".encode()})
    replaced = res.headers["x-request-id"]
    assert replaced != f"{PATIENT_NAME} x" and len(replaced) == 32
    requests = [r for r in captured_logs.records if r["message"] == "request"]
    assert [r["correlation_id"] for r in requests] == ["lb-42", "his-7", generated, replaced]
    assert all(r["route"] == "/fhir/{res_type}" and r["status"] == 200 for r in requests)
    assert PATIENT_NAME not in captured_logs.text


def test_every_line_while_handling_a_message_carries_its_correlation_id(
    feeds: FeedService, engine: sa.Engine, captured_logs: CapturedLogs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert ack_code(send_all(feeds.port or 0, [oru("CORR-1")])[0]) == "AA"
    (received,) = [r for r in captured_logs.records if r["message"] == "received"]
    assert received["correlation_id"] == "hl7:XJYZX:CORR-1"
    assert received["sender"] == "XJYZX" and received["control_id"] == "CORR-1"
    assert received["transport"] == "mllp" and received["ack"] == "AA"
    with engine.connect() as conn:
        inbox_id = conn.execute(sa.select(inbox.c.id)).scalar_one()
    assert received["inbox_id"] == inbox_id

    def broken(*_args: object, **_kwargs: object) -> None:
        logging.getLogger("hub.fhir").warning("about to fail")
        raise RuntimeError("boom")

    monkeypatch.setattr(worker, "apply_transaction", broken)
    drain(engine)
    lines = [r for r in captured_logs.records if r["logger"] in ("hub.fhir", "hub.worker")]
    assert lines[0]["message"] == "about to fail"
    for line in lines:
        assert line["correlation_id"] == "hl7:XJYZX:CORR-1"
        assert line["inbox_id"] == inbox_id


def test_nothing_clinical_in_the_logs(
    feeds: FeedService, client: TestClient, engine: sa.Engine,
    captured_logs: CapturedLogs, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A message with a known name, resident ID, record number and value goes through intake,
    apply, a read by identifier, and three failing paths; none of them reaches a log line."""
    port = feeds.port or 0
    # 1. Intake and apply, the happy path.
    assert ack_code(send_all(port, [oru("SAFE-1")])[0]) == "AA"
    assert drain(engine) == {"applied": 1}
    found = client.get("/fhir/Patient", params={"identifier": RESIDENT_ID}).json()
    assert found["total"] >= 1
    client.get(f"/fhir/Patient/{MRN}")
    # 2. Refused at intake: the same patient, no OBR (the mapper says why, in the ACK only).
    no_obr = b"\r".join(s for s in oru("SAFE-2").split(b"\r") if not s.startswith(b"OBR"))
    assert ack_code(send_all(port, [no_obr])[0]) in ("AE", "AR", "AA")

    # 3. A mapper bug whose exception quotes the message.
    def mapper_bug(*_args: object, **_kwargs: object) -> None:
        raise ValueError(f"PID-5 {PATIENT_NAME} PID-3 {RESIDENT_ID} OBX-5 {RESULT_VALUE}")

    monkeypatch.setattr(intake, "map_parsed", mapper_bug)
    assert ack_code(send_all(port, [oru("SAFE-3")])[0]) == "AE"
    monkeypatch.undo()

    # 4. Applying fails, with the same kind of exception, and is logged with logger.exception
    #    by a caller further up as well.
    assert ack_code(send_all(port, [oru("SAFE-4", value="99.1")])[0]) == "AA"

    def apply_bug(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"Patient {PATIENT_NAME} {RESIDENT_ID} value {RESULT_VALUE}")

    monkeypatch.setattr(worker, "apply_transaction", apply_bug)
    assert drain(engine) == {"failed": 1}
    try:
        apply_bug()
    except RuntimeError:
        logging.getLogger("hub.worker").exception("applying failed")

    lines = captured_logs.records
    assert len([r for r in lines if r["message"] == "received"]) == 4
    assert any(r["logger"] == "hub.intake" and r["level"] == "ERROR" for r in lines)
    assert any(r["logger"] == "hub.worker" and r["level"] == "ERROR" for r in lines)
    text = captured_logs.text
    for secret in SECRETS:
        assert secret not in text, secret
    assert "SAFE-4" in text  # the control id is what correlates, and it is there
