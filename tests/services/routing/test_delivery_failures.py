"""Receivers that refuse, time out or are down: dead letters with the receiver's reason, the
office's view of them, and replay (HTTP and CLI) once the receiver is fixed."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from adapters.hl7v2.parse import Message
from hub.cli import app as cli
from hub.queue.outbox import Policy
from tests.services.routing.conftest import Hub, eventually
from tests.services.routing.messages import order, result
from tests.services.routing.peers import ACCEPT, HANG, Answer, Peer, free_port


def placer(message: Message) -> str:
    orc = message.first("ORC")
    return orc.value(2) if orc else ""


def test_a_refused_order_is_a_dead_letter_with_the_receivers_reason_and_is_replayed(
    hub: Hub,
) -> None:
    fixed = {"yes": False}

    def lis_says(message: Message, _seen: int) -> Answer:
        if placer(message) == "QS-1" and not fixed["yes"]:
            return Answer("AE", "项目代码 CBC 未开通 (item not enabled)")
        return ACCEPT

    with Peer(lis_says) as lis:
        hub.point("XJYZX", lis.url)
        hub.send(order("Q1", "QS-1"), order("Q2", "QS-2"))
        eventually(lambda: hub.statuses() == ["failed", "accepted"], what="one failed")
        # Refused once, not retried; the order behind it was not held up.
        assert [placer(m) for m in lis.messages()] == ["QS-1", "QS-2"]
        failed = hub.client.get("/admin/outbox", params={"status": "failed"}).json()["messages"]
        [dead] = failed
        assert dead["attempts"] == 1 and dead["destination"] == "Endpoint/XJYZX"
        assert (
            dead["last_error"] == "AE from the destination: 项目代码 CBC 未开通 (item not enabled)"
        )
        shown = hub.client.get(f"/admin/outbox/{dead['id']}").json()
        assert "ORC|NW|QS-1^QSWSY" in shown["payload"] and "MSA|AE" in shown["ack"]
        [listed] = hub.client.get("/admin/routing", params={"status": "failed"}).json()["orders"]
        assert "未开通" in listed["error"] and listed["lastMessage"]["status"] == "failed"
        task = hub.task(hub.routed()[0].request_id)
        assert task["status"] == "failed" and "未开通" in task["statusReason"]["text"]

        fixed["yes"] = True  # the lab centre enables the item; the office replays
        answer = hub.client.post("/admin/outbox/replay", json={"ids": [dead["id"]]})
        assert answer.json() == {"replayed": [dead["id"]]}
        eventually(lambda: hub.statuses() == ["accepted", "accepted"], what="replayed")
        assert [placer(m) for m in lis.messages()] == ["QS-1", "QS-2", "QS-1"]
        # The same bytes again: the LIS can tell a replay by its control id.
        assert lis.raw[2] == lis.raw[0]
    [row] = hub.outbox(id=dead["id"])
    assert (row.status, row.replays, row.failed_at) == ("sent", 1, None)
    assert hub.task(hub.routed()[0].request_id)["businessStatus"]["coding"][0]["code"] == (
        "accepted"
    )


def test_a_reject_ar_is_not_retried(hub: Hub) -> None:
    with Peer(lambda _m, _n: Answer("AR", "不支持的消息版本")) as lis:
        hub.point("XJYZX", lis.url)
        hub.send(order("Q1", "QS-1"))
        eventually(lambda: hub.statuses() == ["failed"], what="failed")
    [row] = hub.outbox(topic="route-order")
    assert row.attempts == 1 and row.last_error == "AR from the destination: 不支持的消息版本"
    assert len(lis.messages()) == 1


def test_a_receiver_that_times_out_ends_as_a_dead_letter_replayed_from_the_cli(
    hub: Hub, db_url: str
) -> None:
    answering = {"yes": False}

    def lis_says(_message: Message, _seen: int) -> Answer:
        return ACCEPT if answering["yes"] else HANG

    with Peer(lis_says) as lis:
        hub.point("XJYZX", lis.url)
        hub.send(order("Q1", "QS-1"))
        eventually(lambda: hub.statuses() == ["failed"], what="given up", seconds=30)
        [row] = hub.outbox(topic="route-order")
        assert row.attempts == 4 and "gave up after 4 attempts" in row.last_error
        assert "timed out" in row.last_error.lower() or "timeout" in row.last_error.lower()
        # Each attempt was the same message (one control id): the LIS can drop repeats.
        assert len({m.control_id for m in lis.messages()}) == 1 and len(lis.messages()) == 4

        answering["yes"] = True
        ran = CliRunner().invoke(cli, ["outbox-replay", "--db", db_url])
        assert ran.exit_code == 0, ran.output
        assert f"replayed 1: {row.id}" in ran.output
        eventually(lambda: hub.statuses() == ["accepted"], what="delivered after replay")


def test_a_receiver_down_comes_back_and_gets_everything_once_in_order(hub: Hub) -> None:
    hub.feeds.delivery.policy = Policy(  # type: ignore[union-attr]
        max_attempts=200, first_delay=0.05, max_delay=0.2, timeout=0.5
    )
    port = free_port()
    hub.point("XJYZX", f"mllp://127.0.0.1:{port}")
    hub.send(*(order(f"Q{n}", f"QS-{n}") for n in range(1, 6)))

    def refused() -> bool:
        rows = hub.outbox(topic="route-order")
        return len(rows) == 5 and rows[0].attempts >= 2

    eventually(refused, what="attempts against a closed port")
    assert hub.statuses() == ["sent"] * 5
    assert hub.outbox(topic="route-order")[1].attempts == 0  # held behind the first
    with Peer(port=port) as lis:
        eventually(lambda: hub.statuses() == ["accepted"] * 5, what="all delivered")
    assert [placer(m) for m in lis.messages()] == [f"QS-{n}" for n in range(1, 6)]
    assert len({m.control_id for m in lis.messages()}) == 5


def test_a_result_the_township_refuses_fails_the_order_until_replayed(hub: Hub) -> None:
    fixed = {"yes": False}

    def his_says(_message: Message, _seen: int) -> Answer:
        return ACCEPT if fixed["yes"] else Answer("AR", "患者不存在")

    with Peer() as lis, Peer(his_says) as his:
        hub.point("XJYZX", lis.url)
        hub.point("QSWSY", his.url)
        hub.send(order("Q1", "QS-1"))
        eventually(lambda: hub.statuses() == ["accepted"])
        hub.send(result("L1", "QS-1", "F1"))
        eventually(lambda: hub.statuses() == ["failed"], what="result refused")
        [routed] = hub.routed()
        assert routed.resulted_at is not None
        assert routed.last_error == "result delivery: AR from the destination: 患者不存在"
        task = hub.task(routed.request_id)
        # The centre did its work: the Task is completed; its delivery failed.
        assert task["status"] == "completed"
        assert task["businessStatus"]["coding"][0]["code"] == "failed"
        fixed["yes"] = True
        replayed: dict[str, Any] = hub.client.post(
            "/admin/outbox/replay", json={"destination": "Endpoint/QSWSY"}
        ).json()
        assert len(replayed["replayed"]) == 1
        eventually(lambda: hub.statuses() == ["delivered"], what="delivered after replay")
    assert len(his.messages()) == 2 and his.raw[0] == his.raw[1]


def test_replay_refuses_a_bad_body(hub: Hub) -> None:
    answer = hub.client.post("/admin/outbox/replay", json={"ids": ["one"]})
    assert answer.status_code == 400
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert hub.client.get("/admin/outbox", params={"status": "lost"}).status_code == 400
