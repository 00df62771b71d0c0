"""Orders from a township HIS over MLLP reach the regional centres' systems over MLLP, and the
results come back to the township HIS: every message once, in order, statuses as they move."""

from __future__ import annotations

from hub.queue.outbox import Policy
from tests.services.routing.conftest import Hub, eventually
from tests.services.routing.messages import order, result
from tests.services.routing.peers import Peer, free_port

CHEST_XRAY = "36643-5^胸部X线正侧位^LN"


def test_orders_reach_the_centres_and_results_come_back_once_in_order(hub: Hub) -> None:
    with Peer() as lis, Peer() as ris, Peer() as his:
        hub.point("XJYZX", lis.url)
        hub.point("XYXZX", ris.url)
        hub.point("QSWSY", his.url)
        hub.send(
            order("Q1", "QS-1"),
            order("Q2", "QS-2", test=CHEST_XRAY, structure="OML^O21^OML_O21"),
            order("Q3", "QS-3", test="XT^血糖^L"),
        )
        eventually(lambda: hub.statuses() == ["accepted"] * 3, what="three accepted orders")
        # The lab centre takes OML^O21, the imaging centre ORM^O01 (their Endpoints say so).
        assert lis.orders() == [("OML^O21", "NW", "QS-1"), ("OML^O21", "NW", "QS-3")]
        assert ris.orders() == [("ORM^O01", "NW", "QS-2")]
        first = lis.messages()[0]
        assert first.msh.value(6) == "XJYZX" and first.msh.value(5) == "LIS"
        pid = first.first("PID")
        assert pid is not None and pid.value(3) == "QS9" and pid.value(3, 4) == "QSWSY"
        assert pid.value(5) == "欧阳" and pid.value(7) == "19920315"
        pv1 = first.first("PV1")
        assert pv1 is not None and pv1.value(19) == "QSWSYVQS-1"
        obr = first.first("OBR")
        assert obr is not None and (obr.value(2), obr.value(2, 2)) == ("QS-1", "QSWSY")
        # The centre's own code first (from its ConceptMap), LOINC beside it.
        assert (obr.value(4), obr.value(4, 3), obr.value(4, 4)) == ("CBC", "L", "58410-2")

        hub.send(
            result("L1", "QS-1", "F1"),
            result("L2", "QS-3", "F3", test="GLU^血糖^L", value="5.2"),
        )
        eventually(lambda: len(his.messages()) == 2, what="two results at the township HIS")
        eventually(
            lambda: hub.statuses() == ["delivered", "accepted", "delivered"],
            what="results delivered",
        )
        assert [(k, c, p) for k, c, p in his.orders()] == [
            ("ORU^R01", "RE", "QS-1"),
            ("ORU^R01", "RE", "QS-3"),
        ]
        oru = his.messages()[0]
        assert oru.msh.value(18) == "GB 18030-2000"  # the township HIS's character set
        obx = oru.first("OBX")
        assert obx is not None and obx.value(5) == "6.5" and obx.value(3) == "BXB"

        # The same result resent by the LIS (a new control id) is not delivered again.
        hub.send(result("L1-again", "QS-1", "F1"))
        eventually(hub.settled, what="the resend applied")
        eventually(lambda: len(hub.outbox(topic="route-result")) == 2)
        assert len(his.messages()) == 2 and len(lis.messages()) == 2 and len(ris.messages()) == 1

    # Through FHIR: the report is based on the order, the Task shows the status.
    [routed] = hub.routed(request_id=hub.routed()[0].request_id)
    report = hub.client.get(f"/fhir/DiagnosticReport/{routed.report_id}").json()
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{routed.request_id}"}]
    task = hub.task(routed.request_id)
    assert task["status"] == "completed"
    assert task["businessStatus"]["coding"][0]["code"] == "delivered"
    assert task["owner"] == {"reference": "Organization/XJYZX"}
    assert task["requester"] == {"reference": "Organization/QSWSY"}
    assert task["output"][0]["valueReference"] == {
        "reference": f"DiagnosticReport/{routed.report_id}"
    }


def test_an_endpoint_changed_through_fhir_is_followed_without_a_restart(hub: Hub) -> None:
    hub.feeds.delivery.policy = Policy(  # type: ignore[union-attr]
        max_attempts=200, first_delay=0.05, max_delay=0.2, timeout=0.5
    )
    old_port = free_port()  # the LIS's old host: gone
    hub.point("XJYZX", f"mllp://127.0.0.1:{old_port}")
    hub.send(order("Q1", "QS-1"), order("Q2", "QS-2"))
    eventually(lambda: any(r.attempts >= 1 for r in hub.outbox()), what="a failed attempt")
    # The queue names the Endpoint, not an address frozen when the order was routed.
    assert {r.destination for r in hub.outbox()} == {"Endpoint/XJYZX"}
    with Peer() as moved:
        hub.point("XJYZX", moved.url)  # the office moves the LIS; nothing is restarted
        eventually(lambda: hub.statuses() == ["accepted", "accepted"], what="delivered")
    assert [o[2] for o in moved.orders()] == ["QS-1", "QS-2"]


def test_a_suspended_endpoint_holds_its_queue_without_spending_attempts(hub: Hub) -> None:
    with Peer() as lis:
        hub.point("XJYZX", lis.url, status="suspended")
        hub.send(order("Q1", "QS-1"))
        eventually(
            lambda: (
                [(r.attempts, r.last_error) for r in hub.outbox()]
                == [(0, "held: Endpoint/XJYZX is suspended")]
            ),
            what="held",
        )
        assert lis.messages() == []
        hub.point("XJYZX", lis.url, status="active")
        eventually(lambda: hub.statuses() == ["accepted"], what="delivered once active")
    assert hub.outbox()[0].attempts == 1


def test_a_cancel_follows_its_order_to_the_centre(hub: Hub) -> None:
    with Peer() as lis:
        hub.point("XJYZX", lis.url)
        hub.send(order("Q1", "QS-1"), order("Q1-CA", "QS-1", control="CA"))
        eventually(lambda: len(lis.messages()) == 2, what="order and cancel")
        eventually(lambda: hub.statuses() == ["cancelled"])
    assert lis.orders() == [("OML^O21", "NW", "QS-1"), ("OML^O21", "CA", "QS-1")]
    [routed] = hub.routed()
    task = hub.task(routed.request_id)
    assert task["status"] == "cancelled"
    assert task["businessStatus"]["coding"][0]["code"] == "cancelled"
    request = hub.client.get(f"/fhir/ServiceRequest/{routed.request_id}").json()
    assert request["status"] == "revoked"


def test_a_change_follows_its_order_and_a_resend_that_changes_nothing_sends_nothing(
    hub: Hub,
) -> None:
    with Peer() as lis, Peer() as his:
        hub.point("XJYZX", lis.url)
        hub.point("QSWSY", his.url)
        hub.send(order("Q1", "QS-1"))
        eventually(lambda: hub.statuses() == ["accepted"], what="the order accepted")
        # The township makes it urgent and adds a note (ORC XO): the centre hears of it.
        hub.send(order("Q1-XO", "QS-1", control="XO", priority="S", note="加急 急诊转入"))
        eventually(lambda: len(lis.messages()) == 2, what="the change at the LIS")
        # The same order resent unchanged: nothing more goes to the centre.
        hub.send(order("Q1-XO-again", "QS-1", control="XO", priority="S", note="加急 急诊转入"))
        eventually(hub.settled, what="the resend applied")
        # A change after the result: the centre has answered, nothing is sent.
        hub.send(result("L1", "QS-1", "F1"))
        eventually(lambda: hub.statuses() == ["delivered"], what="the result delivered")
        hub.send(order("Q1-late", "QS-1", control="XO", priority="R", note="改为常规"))
        eventually(hub.settled, what="the late change applied")
    assert lis.orders() == [("OML^O21", "NW", "QS-1"), ("OML^O21", "XO", "QS-1")]
    change = lis.messages()[1]
    orc = change.first("ORC")
    assert orc is not None and orc.value(7, 6) == "S"
    nte = change.first("NTE")
    assert nte is not None and nte.value(3) == "加急 急诊转入"
    assert [r.topic for r in hub.outbox() if r.topic != "route-result"] == [
        "route-order", "route-change"]  # fmt: skip
    [routed] = hub.routed()
    assert routed.last_error is None
    task = hub.task(routed.request_id)
    assert task["priority"] == "stat"


def test_a_destination_named_in_the_message_wins_where_the_feed_says_to_look(hub: Hub) -> None:
    with Peer() as lis, Peer() as ris:
        hub.point("XJYZX", lis.url)
        hub.point("XYXZX", ris.url)
        # 白沙镇卫生院's HIS names the performing centre in OBR-20 (community.json); a blood
        # count it sends to the imaging centre's ECG room goes there, not to the lab centre.
        hub.send(order("B1", "BS-1", org="BSWSY", mrn="BS1", obr20="XYXZX"))
        # 青山镇卫生院 names it in MSH-6 (the default).
        hub.send(order("Q1", "QS-1", receiving="XYXZX"))
        eventually(lambda: len(ris.messages()) == 2, what="two orders at the RIS")
    # (Two patients: applied side by side, so either may come first.)
    assert sorted(o[2] for o in ris.orders()) == ["BS-1", "QS-1"] and lis.messages() == []
    assert {r.destination for r in hub.routed()} == {"XYXZX"}
    for routed in hub.routed():
        request = hub.client.get(f"/fhir/ServiceRequest/{routed.request_id}").json()
        assert request["performer"][0]["reference"] == "Organization/XYXZX"


def test_orders_the_rules_do_not_route_stay_where_they_are(hub: Hub) -> None:
    # The lead hospital's order to its own LIS (MSH-6 XRMYY) is not the centres' business.
    hub.send(order("R1", "XR-1", org="XRMYY", mrn="XR1", receiving="XRMYY"))
    eventually(hub.settled, what="applied")
    assert hub.routed() == [] and hub.outbox() == []


def test_a_result_echoing_the_placer_number_without_its_namespace_finds_the_order(
    hub: Hub,
) -> None:
    with Peer() as lis, Peer() as his:
        hub.point("XJYZX", lis.url)
        hub.point("QSWSY", his.url)
        hub.send(order("Q1", "QS-1"))
        eventually(lambda: hub.statuses() == ["accepted"])
        # ORC-2 "QS-1", not "QS-1^QSWSY": the mapping takes it for the lab centre's own number.
        hub.send(result("L1", "QS-1", "F1", namespace=False))
        eventually(lambda: hub.statuses() == ["delivered"], what="delivered all the same")
    [routed] = hub.routed()
    report = hub.client.get(f"/fhir/DiagnosticReport/{routed.report_id}").json()
    assert report["basedOn"] == [{"reference": f"ServiceRequest/{routed.request_id}"}]
    assert [o[2] for o in his.orders()] == ["QS-1"]
