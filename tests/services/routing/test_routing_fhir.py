"""Members that speak FHIR: a township centre that orders and hears of its results by
Subscription, a centre that takes its orders as Tasks; the office's list and figures."""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from adapters.feeds.config import demo_community
from hub.feeds.bootstrap import load_community_resources
from hub.store.schema import routed_orders
from tests.services.routing.conftest import Hub, eventually
from tests.services.routing.messages import order, result
from tests.services.routing.peers import Peer
from tests.services.subscriptions.receiver import Receiver

SID = "https://ygt.example.org/fhir/sid"
FHIR_REST = {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
             "code": "hl7-fhir-rest"}  # fmt: skip
CHEST_XRAY = "36643-5^胸部X线正侧位^LN"


def created(hub: Hub, resource: dict[str, Any]) -> dict[str, Any]:
    answer = hub.client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def business(task: dict[str, Any]) -> str:
    return str(task["businessStatus"]["coding"][0]["code"])


def test_a_fhir_township_orders_and_hears_of_its_result_by_subscription(hub: Hub) -> None:
    with Peer() as lis, Receiver() as hooks:
        hub.point("XJYZX", lis.url)
        hub.point("LTWSY", hooks.url.rsplit("/", 1)[0])  # its rest-hooks live under this base
        created(hub, {
            "resourceType": "Subscription", "status": "requested", "reason": "我院的分中心检验",
            "criteria": "Task?requester=Organization/LTWSY",
            "channel": {"type": "rest-hook", "endpoint": hooks.url,
                        "payload": "application/fhir+json"},
        })  # fmt: skip
        patient = created(hub, {
            "resourceType": "Patient", "name": [{"family": "柳", "given": ["青"]}],
            "identifier": [{"system": f"{SID}/LTWSY/mrn", "value": "LT1"}],
        })  # fmt: skip
        request = created(hub, {
            "resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "identifier": [{"system": f"{SID}/LTWSY/placer", "value": "LT-ORD-1"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "requester": {"reference": "Organization/LTWSY"},
            "authoredOn": "2026-10-22T09:00:00+08:00",
        })  # fmt: skip
        assert request["performer"] == [
            {"reference": "Organization/XJYZX", "display": "县临床检验中心"}
        ]
        eventually(lambda: hub.statuses() == ["accepted"], what="the LIS took the order")
        [sent] = lis.messages()
        pid = sent.first("PID")
        assert pid is not None and (pid.value(3), pid.value(3, 4)) == ("LT1", "LTWSY")

        hub.send(result("L1", "LT-ORD-1", "F9", org="LTWSY", mrn="LT1"))
        eventually(lambda: hub.statuses() == ["delivered"], what="delivered by rest-hook")
    task = hub.task(request["id"])
    assert (task["status"], business(task)) == ("completed", "delivered")
    heard = [orjson.loads(r.body) for r in hooks.received if r.path.endswith(task["id"])]
    assert [business(t) for t in heard][:3] == ["sent", "accepted", "resulted"]
    assert heard[2]["output"][0]["valueReference"]["reference"].startswith("DiagnosticReport/")
    # No HL7 v2 went to the FHIR-only centre: nothing in the outbox but the order.
    assert [r.topic for r in hub.outbox()] == ["route-order"]


def test_a_centre_speaking_fhir_takes_its_orders_as_tasks(hub: Hub) -> None:
    hub.point("XYXZX", "https://ris.xyxzx.example.org/fhir", connectionType=FHIR_REST,
              payloadType=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                        "endpoint-payload-type", "code": "any"}]}],
              payloadMimeType=["application/fhir+json"])  # fmt: skip
    with Peer() as his:
        hub.point("QSWSY", his.url)
        hub.send(order("Q1", "QS-1", test=CHEST_XRAY), order("Q2", "QS-2", test=CHEST_XRAY))
        eventually(lambda: len(hub.routed()) == 2, what="two routed")
        assert hub.outbox() == []  # nothing to send: the centre reads its Tasks
        found = hub.client.get(
            "/fhir/Task", params={"owner": "Organization/XYXZX", "status": "requested",
                                  "_sort": "authored-on"},
        ).json()  # fmt: skip
        tasks = [e["resource"] for e in found["entry"]]
        assert len(tasks) == 2 and {business(t) for t in tasks} == {"sent"}
        first, second = (hub.task(r.request_id) for r in hub.routed())

        # The centre accepts one (whatever it writes in businessStatus, the hub keeps its own).
        accepted = {**first, "status": "accepted", "businessStatus": {"text": "已登记"}}
        accepted.pop("meta")
        answer = hub.client.put(f"/fhir/Task/{first['id']}", json=accepted)
        assert answer.status_code == 200 and business(answer.json()) == "accepted"
        # ... and rejects the other with a reason.
        rejected = {**second, "status": "rejected", "statusReason": {"text": "设备检修"}}
        rejected.pop("meta")
        assert hub.client.put(f"/fhir/Task/{second['id']}", json=rejected).status_code == 200
        assert hub.statuses() == ["accepted", "failed"]
        assert hub.routed()[1].last_error == "centre: 设备检修"

        # Its report, based on the order, goes back to the township HIS over MLLP.
        created(hub, {
            "resourceType": "DiagnosticReport", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5"}]},
            "subject": first["for"], "basedOn": [{"reference": first["focus"]["reference"]}],
            "performer": [{"reference": "Organization/XYXZX"}],
            "conclusion": "两肺未见明显异常",
        })  # fmt: skip
        eventually(lambda: hub.statuses()[0] == "delivered", what="result delivered")
    [oru] = his.messages()
    assert oru.message_type[:2] == ("ORU", "R01")
    assert [n.value(3) for n in oru.all("NTE")] == ["两肺未见明显异常"]


def test_a_fhir_order_without_a_placer_number_is_given_one_the_lis_can_echo(hub: Hub) -> None:
    with Peer() as lis:
        hub.point("XJYZX", lis.url)
        patient = created(hub, {
            "resourceType": "Patient",
            "identifier": [{"system": f"{SID}/CDSQ/mrn", "value": "CD7"}],
        })  # fmt: skip
        request = created(hub, {
            "resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "identifier": [{"system": "urn:oid:2.16.156.1.7", "value": "his-internal-1"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "requester": {"reference": "Organization/CDSQ"},
        })  # fmt: skip
        [number] = [i["value"] for i in request["identifier"]
                    if i["system"] == f"{SID}/CDSQ/placer"]  # fmt: skip
        eventually(lambda: hub.statuses() == ["accepted"], what="the LIS took the order")
        orc = lis.messages()[0].first("ORC")
        assert orc is not None and (orc.value(2), orc.value(2, 2)) == (number, "CDSQ")
        hub.send(result("L1", number, "F7", org="CDSQ", mrn="CD7", test="GLU^血糖^L"))
        # CDSQ has no Endpoint: the result waits in FHIR for it, the order is resulted.
        eventually(lambda: hub.statuses() == ["resulted"], what="resulted")
    [routed] = hub.routed()
    assert routed.request_id == request["id"] and routed.report_id is not None


def test_a_revoked_fhir_order_cancels_its_task(hub: Hub) -> None:
    patient = created(hub, {
        "resourceType": "Patient",
        "identifier": [{"system": f"{SID}/CDSQ/mrn", "value": "CD1"}],
    })  # fmt: skip
    request = created(hub, {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "11524-6"}]},  # ECG
        "subject": {"reference": f"Patient/{patient['id']}"},
        "requester": {"reference": "Organization/CDSQ"},
    })  # fmt: skip
    # ECG goes to the lead hospital (rules.json), which has no Endpoint: offered as a Task.
    [routed] = hub.routed()
    assert (routed.destination, routed.channel, routed.endpoint) == ("XRMYY", "fhir", None)
    revoked = {**request, "status": "revoked"}
    revoked.pop("meta")
    assert hub.client.put(f"/fhir/ServiceRequest/{request['id']}", json=revoked).status_code == 200
    task = hub.task(request["id"])
    assert (task["status"], business(task), hub.statuses()) == (
        "cancelled", "cancelled", ["cancelled"],
    )  # fmt: skip


def test_the_office_changes_an_endpoint_and_a_restart_keeps_it(hub: Hub) -> None:
    hub.point("XJYZX", "mllp://10.1.2.3:2601")
    load_community_resources(hub.engine, demo_community())  # what hub serve does at start
    endpoint = hub.client.get("/fhir/Endpoint/XJYZX").json()
    assert endpoint["address"] == "mllp://10.1.2.3:2601"
    organization = hub.client.get("/fhir/Organization/XJYZX").json()
    assert organization["endpoint"] == [{"reference": "Endpoint/XJYZX"}]


def _row(n: int, **values: Any) -> dict[str, Any]:
    base = {
        "request_id": f"sr-{n}", "task_id": f"route-sr-{n}", "orderer": "QSWSY",
        "destination": "XJYZX", "endpoint": "Endpoint/XJYZX", "channel": "hl7v2",
        "message": "OML^O21", "kind": "lab", "item": "58410-2", "month": "2026-10",
        "ordered_at": 1_792_630_800_000_000 + n, "routed_at": 1_792_630_800_000_000 + n,
        "status": "sent", "updated_at": 1_792_630_800_000_000, "resulted_at": None,
        "delivered_at": None, "last_error": None,
    }  # fmt: skip
    return {**base, **values}


def test_the_routing_report_counts_per_member_and_month(hub: Hub) -> None:
    minute = 60_000_000
    start = 1_792_630_800_000_000  # 2026-10-22 09:00 +08:00
    rows = [
        _row(1, status="delivered", resulted_at=start + 30 * minute, delivered_at=start + 31),
        _row(2, status="delivered", resulted_at=start + 90 * minute, delivered_at=start + 95),
        _row(3, status="failed", resulted_at=start + 60 * minute, last_error="result delivery: AR"),
        _row(4, status="failed", last_error="order delivery: AE"),
        _row(5, status="cancelled"),
        _row(6, orderer="BSWSY", destination="XYXZX", kind="imaging", status="resulted",
             resulted_at=start + 240 * minute),
        _row(7, status="accepted", month="2026-11"),
    ]  # fmt: skip
    with hub.engine.begin() as conn:
        conn.execute(sa.insert(routed_orders), rows)
    report = hub.client.get("/fhir/$routing-report", params={"month": "2026-10"}).json()

    def figures(name: str, member: str) -> dict[str, Any]:
        for group in report["parameter"]:
            parts = {p["name"]: p for p in group.get("part", [])}
            if group["name"] == name and parts["member"]["valueString"] == member:
                return {k: next(v for n, v in p.items() if n.startswith("value"))
                        for k, p in parts.items()}  # fmt: skip
        raise AssertionError(f"no {name} {member}")

    assert figures("group", "QSWSY") == {
        "member": "QSWSY", "routed": 5, "resulted": 3, "delivered": 2, "failed": 2,
        "cancelled": 1, "medianTurnaroundMinutes": 60.0,
    }  # fmt: skip
    assert figures("centre", "XYXZX")["medianTurnaroundMinutes"] == 240.0
    assert figures("total", "*")["routed"] == 6
    one = hub.client.get("/fhir/$routing-report", params={"month": "2026-10", "member": "BSWSY"})
    names = [(g["name"], g["part"][0]["valueString"]) for g in one.json()["parameter"][1:]]
    assert names == [("group", "BSWSY"), ("total", "*")]
    assert hub.client.get("/fhir/$routing-report", params={"month": "10/2026"}).status_code == 400
    listed = hub.client.get(
        "/admin/routing", params={"status": "failed", "destination": "XJYZX"}
    ).json()["orders"]
    assert [o["serviceRequest"] for o in listed] == ["ServiceRequest/sr-4", "ServiceRequest/sr-3"]


def test_the_capability_statement_lists_the_report(hub: Hub) -> None:
    statement = hub.client.get("/fhir/metadata").json()
    operations = {o["name"] for o in statement["rest"][0]["operation"]}
    assert "routing-report" in operations
    definition = hub.client.get("/fhir/OperationDefinition/routing-report").json()
    assert definition["code"] == "routing-report" and definition["system"] is True
