"""The outbox against a real MLLP receiver: ordered per destination, ACK-checked, retried."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from hub.queue.outbox import Policy, deliver_due, enqueue
from hub.store.schema import outbox
from tests.feeds.helpers import Receiver

FAST = Policy(max_attempts=4, first_delay=0.01, max_delay=0.05, timeout=1)


def order(n: int) -> bytes:
    return (
        "MSH|^~\\&|YGT_HUB|YGT|LIS|XJYZX|20261023083000+0800||ORM^O01^ORM_O01|"
        f"OUT{n}|P|2.4\rPID|1||QS{n}^^^QSWSY^MR\rORC|NW|P{n}\rOBR|1|P{n}||CBC^血常规^L\r"
    ).encode()


def run_until_settled(engine: sa.Engine, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        deliver_due(engine, FAST)
        with engine.connect() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(outbox.c.status == "pending")
            ).scalar_one()
        if not left:
            return
        time.sleep(0.01)
    raise AssertionError("the outbox did not settle")


def rows(engine: sa.Engine) -> dict[str, sa.Row]:  # type: ignore[type-arg]
    with engine.connect() as conn:
        return {r.control_id: r for r in conn.execute(sa.select(outbox))}


@pytest.fixture
def queue(engine: sa.Engine, clean_db: None) -> Iterator[Callable[[str, list[int]], None]]:
    def put(url: str, numbers: list[int]) -> None:
        with engine.begin() as conn:
            for n in numbers:
                enqueue(conn, url, order(n))

    yield put


def test_delivered_in_order_and_acknowledged(engine: sa.Engine, queue) -> None:  # type: ignore[no-untyped-def]
    with Receiver(lambda _cid, _n: "AA") as lis:
        queue(lis.url, [1, 2, 3, 4, 5])
        run_until_settled(engine)
    assert lis.received == [f"OUT{n}" for n in range(1, 6)]
    assert {r.status for r in rows(engine).values()} == {"sent"}
    assert all(b"MSA|AA" in r.ack for r in rows(engine).values())


def test_silence_is_retried_without_reordering(engine: sa.Engine, queue) -> None:  # type: ignore[no-untyped-def]
    def script(cid: str, seen: int) -> str | None:
        if cid == "OUT1" and seen <= 2:
            return None  # connection dropped, no answer
        return "AA"

    with Receiver(script) as lis:
        queue(lis.url, [1, 2])
        run_until_settled(engine)
    assert lis.received == ["OUT1", "OUT1", "OUT1", "OUT2"]
    sent = rows(engine)
    assert sent["OUT1"].status == "sent" and sent["OUT1"].attempts == 3
    assert sent["OUT2"].attempts == 1


def test_reject_is_a_dead_letter_not_retried(engine: sa.Engine, queue) -> None:  # type: ignore[no-untyped-def]
    # AR says the receiver will not take the message as it is: resending it would only hold
    # up the messages behind it (see hub.queue.outbox).
    with Receiver(lambda cid, _n: "AR" if cid == "OUT1" else "AA") as lis:
        queue(lis.url, [1, 2])
        run_until_settled(engine)
    assert lis.received == ["OUT1", "OUT2"]
    result = rows(engine)
    assert result["OUT1"].status == "failed" and result["OUT1"].attempts == 1
    assert result["OUT1"].last_error.startswith("AR from the destination")
    assert result["OUT2"].status == "sent"


def test_application_error_stops_that_message_only(engine: sa.Engine, queue) -> None:  # type: ignore[no-untyped-def]
    with Receiver(lambda cid, _n: "AE" if cid == "OUT1" else "AA") as lis:
        queue(lis.url, [1, 2])
        run_until_settled(engine)
    result = rows(engine)
    assert result["OUT1"].status == "failed" and "AE" in result["OUT1"].last_error
    assert result["OUT2"].status == "sent"


def test_unreachable_destination_gives_up_after_max_attempts(engine: sa.Engine, queue) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    queue(f"mllp://127.0.0.1:{port}", [7])
    run_until_settled(engine)
    [row] = rows(engine).values()
    assert row.status == "failed" and row.attempts == FAST.max_attempts
    assert "gave up" in row.last_error


def test_enqueue_is_part_of_the_callers_transaction(engine: sa.Engine, queue) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        enqueue(conn, "mllp://127.0.0.1:9", order(9))
        raise RuntimeError("the write that caused it failed")
    assert rows(engine) == {}


def test_the_receivers_reason_is_read_from_err_or_msa() -> None:
    from hub.queue.outbox import read_ack

    header = "MSH|^~\\&|LIS|XJYZX|||20261023||ACK|A1|P|"
    v25 = f"{header}2.5\rMSA|AE|OUT1\rERR||OBR^1^4|103^项目未开通^HL70357|E||||项目未开通\r"
    v231 = f"{header}2.3.1\rMSA|AR|OUT1\rERR|OBR^1^4^103&不支持&HL70357\r"
    msa_only = "MSH|^~\\&|LIS|XJYZX|||20261023||ACK|A1|P|2.4\rMSA|AE|OUT1|患者不存在\r"
    assert read_ack(v25.encode()) == ("AE", "项目未开通")
    assert read_ack(v231.encode()) == ("AR", "不支持")
    assert read_ack(msa_only.encode()) == ("AE", "患者不存在")
    # Says GB 18030, is UTF-8: the code still counts.
    wrong = "MSH|^~\\&|HIS|QSWSY|||20261023||ACK|A1|P|2.5||||||GB 18030-2000\rMSA|AR|OUT1|患者\r"
    assert read_ack(wrong.encode("utf-8"))[0] == "AR"
    assert read_ack(b"not an ack") == ("", "")
