"""Every corpus message through a real MLLP socket, the inbox and the worker.

Well-formed messages of the types the hub maps are acknowledged AA, applied, and their patient
is found by the key identifier; other types are stored and answered AR (HL7 0357 code 200/201);
unreadable ones AE/AR with ERR.  A control id reused by the same sender with other content is
refused AE (205), as on a real feed (the corpus reuses "MSG00001" across unrelated samples).
The corpus facilities are registered as members for this test only.
"""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import Community, Member, demo_community
from adapters.hl7v2.batch import split_messages
from adapters.hl7v2.errors import HL7ParseError
from adapters.hl7v2.messages import MAPPERS
from adapters.hl7v2.parse import parse
from adapters.hl7v2.text import msh_fields
from adapters.mllp.framing import frame
from hub.feeds.service import FeedService
from hub.queue.worker import drain
from tests.corpus import hl7v2_files
from tests.feeds.helpers import ack_code, ack_of, inbox_rows, send_all

# Mappable types whose sample is not a usable message, and why.
KNOWN_UNMAPPABLE = {
    "Hl7v2TestTimezoneInput.hl7v2": "an A01 without a PID segment (AE 100)",
}


def corpus_messages() -> list[tuple[str, bytes]]:
    return [(p.name, m) for p in hl7v2_files() for m in split_messages(p.read_bytes())]


def community_with_corpus_senders(messages: list[tuple[str, bytes]]) -> Community:
    base = demo_community()
    extra = {}
    for _, raw in messages:
        try:
            code = parse(raw).msh.value(4).strip().upper()
        except HL7ParseError:
            continue
        if code and code not in base.members:
            extra[code] = Member(code, code, "hospital", "", base.identifier_base)
    return dataclasses.replace(base, members={**base.members, **extra})


OUTCOME = {
    "AA": "accept",
    "CA": "accept",
    "AE": "error",
    "CE": "error",
    "AR": "reject",
    "CR": "reject",
}
# MSH-15 (accept acknowledgment type) → the outcomes that get an answer at all.
ANSWERED = {"": {"accept", "error", "reject"}, "AL": {"accept", "error", "reject"},
            "NE": set(), "ER": {"error", "reject"}, "SU": {"accept"}}  # fmt: skip


def exchange(port: int, messages: list[bytes]) -> list[bytes | None]:
    """Send each message; those whose MSH-15 may mean no answer go on their own short-lived
    connection, so an answer that never comes cannot be mistaken for the next one's."""
    import socket

    answers: list[bytes | None] = []
    for raw in messages:
        header = msh_fields(raw)
        accept_type = header[14].strip().upper() if len(header) >= 15 else ""
        if accept_type in ("", "AL"):
            answers.append(send_all(port, [raw])[0])
            continue
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(frame(raw))
            sock.settimeout(1.0)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                data = b""
        answers.append(data[1 : data.index(b"\x1c")] if data else None)
    return answers


def test_every_corpus_message_is_answered_applied_or_refused(
    engine: sa.Engine, clean_db: None, client: TestClient
) -> None:
    messages = corpus_messages()
    if not messages:
        pytest.skip("../shared/corpus is not beside the repository")
    community = community_with_corpus_senders(messages)
    service = FeedService(engine, community, mllp_port=0, run_worker=False)
    service.start()
    try:
        answers = exchange(service.port or 0, [raw for _, raw in messages])
    finally:
        service.stop()

    seen: dict[tuple[str, str], bytes] = {}
    expected_applied = resends = 0
    for (name, raw), answer in zip(messages, answers, strict=True):
        try:
            message = parse(raw)
        except HL7ParseError:
            assert answer is not None, name
            assert OUTCOME[ack_code(answer)] in ("error", "reject"), name
            assert ack_of(answer).first("ERR") is not None, name
            continue
        kind, event, _ = message.message_type
        sender = message.msh.value(4).strip().upper()
        supported = kind.upper() in MAPPERS and event.upper() in MAPPERS[kind.upper()][0]
        error_code = None
        if not sender:
            outcome = "reject"
        elif not supported:
            outcome, error_code = "reject", ("200", "201")
        elif name in KNOWN_UNMAPPABLE:
            outcome = "error"
        elif (sender, message.control_id) in seen and seen[sender, message.control_id] != raw:
            outcome, error_code = "error", ("205",)
        else:
            outcome = "accept"
            if (sender, message.control_id) in seen:
                resends += 1
            else:
                expected_applied += 1
            seen[sender, message.control_id] = raw
        if outcome not in ANSWERED.get(message.msh.value(15).strip().upper(), ANSWERED[""]):
            assert answer is None, f"{name}: MSH-15 asked for no answer"
            continue
        assert answer is not None, name
        ack = ack_of(answer)
        assert OUTCOME[ack_code(answer)] == outcome, f"{name}: {ack.first('ERR')}"
        if outcome != "accept":
            err = ack.first("ERR")
            assert err is not None, name
            if error_code:
                assert (err.value(3, 1) or err.value(1, 4)) in error_code, name

    assert drain(engine).get("failed", 0) == 0, [r.error for r in inbox_rows(engine) if r.error]
    rows = inbox_rows(engine)
    applied = [r for r in rows if r.status == "applied"]
    assert len(applied) == expected_applied
    assert len(rows) == len(messages) - resends  # a resend is acknowledged, not stored again
    assert expected_applied >= 25  # 28 distinct mappable messages in the corpus today
    for row in applied:
        assert row.patient_key, row.control_id
        found = client.get("/fhir/Patient", params={"identifier": row.patient_key}).json()
        assert found.get("total", len(found.get("entry", []))) >= 1, row.patient_key
