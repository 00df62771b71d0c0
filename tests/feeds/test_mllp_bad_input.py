"""Bad input over a real MLLP socket: answered AE/AR with ERR, kept, and the listener lives on."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.mllp.client import MLLPClient
from adapters.mllp.framing import frame
from hub.feeds.service import FeedService
from tests.feeds.helpers import ack_code, ack_of, inbox_rows, send_all

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "hl7v2"
GOOD_HEADER = "MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261023083000+0800||ORU^R01^ORU_R01|{cid}|P|2.5.1"


def _bad_inputs() -> list[Path]:
    root = CORPUS / "nHapi" / "BadInputs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_fuzzer_inputs_are_answered_and_kept(feeds: FeedService, engine: sa.Engine) -> None:
    paths = _bad_inputs()
    if not paths:
        pytest.skip("../shared/corpus is not beside the repository")
    answers = send_all(feeds.port or 0, [p.read_bytes() for p in paths], connections=4)
    for path, answer in zip(paths, answers, strict=True):
        code = ack_code(answer)
        assert code in ("AA", "AE", "AR"), path.name
        if code != "AA":
            assert ack_of(answer).first("ERR") is not None, path.name
    rows = inbox_rows(engine)
    assert len(rows) == len(paths)
    rejected = [r for r in rows if r.status == "rejected"]
    assert rejected and all(r.error for r in rejected)
    # Kept byte for byte, whatever they were (some fuzzer files are empty).
    assert sorted(r.raw for r in rows) == sorted(p.read_bytes() for p in paths)


def test_unreadable_header_gets_ar_and_is_kept(feeds: FeedService, engine: sa.Engine) -> None:
    [answer] = send_all(feeds.port or 0, [b"this is not HL7 at all"])
    assert ack_code(answer) == "AR"
    [row] = inbox_rows(engine)
    assert row.status == "rejected" and not row.accepted
    assert row.raw == b"this is not HL7 at all"


def test_broken_segment_names_segment_and_field(feeds: FeedService, engine: sa.Engine) -> None:
    message = (GOOD_HEADER.format(cid="B1") + "\rPID|1||123^^^XRMYY\r!!bad line\r").encode()
    [answer] = send_all(feeds.port or 0, [message])
    ack = ack_of(answer)
    assert ack.first("MSA").value(1) == "AE"  # type: ignore[union-attr]
    assert ack.first("MSA").value(2) == "B1"  # type: ignore[union-attr]
    err = ack.first("ERR")
    assert err is not None and err.value(2, 1) == "MSH" and err.value(3, 1)  # segment, code


def test_wrong_character_set_is_refused_not_garbled(feeds: FeedService, engine: sa.Engine) -> None:
    text = GOOD_HEADER.format(cid="CS1") + "||||||UNICODE UTF-8\rPID|1||1^^^XRMYY||张三\r"
    [answer] = send_all(feeds.port or 0, [text.encode("gb18030")])
    assert ack_code(answer) in ("AE", "AR")
    [row] = inbox_rows(engine)
    assert row.status == "rejected" and "utf-8" in row.error.lower()


def test_broken_framing_closes_only_that_connection(feeds: FeedService, engine: sa.Engine) -> None:
    port = feeds.port or 0
    # A block that never ends, then the peer goes away.
    with socket.create_connection(("127.0.0.1", port)) as raw:
        raw.sendall(b"\x0bMSH|^~\\&|LIS|XJYZX|")
    # Junk with no block at all, then a proper message on the same socket.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"\r\n\r\n" + frame(b"not hl7"))
        answer = raw.recv(65536)
        assert answer.startswith(b"\x0b") and b"MSA|AR" in answer
    [answer] = send_all(port, [b"still not hl7"])
    assert ack_code(answer) == "AR"


def test_oversized_block_is_refused_and_listener_lives(engine: sa.Engine, clean_db: None) -> None:
    from adapters.feeds.config import demo_community

    service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False)
    assert service.server is not None
    service.server.max_frame = 1024
    service.start()
    try:

        async def oversized() -> bytes:
            client = MLLPClient("127.0.0.1", service.port or 0, timeout=10)
            try:
                return await client.send(b"MSH|" + b"x" * 5000)
            finally:
                await client.close()

        with pytest.raises((ConnectionError, OSError, asyncio.IncompleteReadError, Exception)):
            asyncio.run(oversized())
        [answer] = send_all(service.port or 0, [b"small and wrong"])
        assert ack_code(answer) == "AR"
    finally:
        service.stop()


def test_many_concurrent_connections(feeds: FeedService, engine: sa.Engine) -> None:
    messages = [f"junk {i}".encode() for i in range(60)]
    answers = send_all(feeds.port or 0, messages, connections=20)
    assert all(ack_code(a) == "AR" for a in answers)
    assert len(inbox_rows(engine)) == 60
