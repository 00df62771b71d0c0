"""Referrals end to end: both sides act through FHIR REST and hear of it by rest-hook, and the
receiving hospital's ADT over MLLP carries the referral on (admission → in-progress with the
Encounter linked, discharge → completed); a down-referral takes the discharge document."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.fhir.validation import validate_resource
from hub.services.subscriptions.delivery import deliver_due
from hub.store.schema import feedback_documents, referrals
from tests.services.feedback.messages import Person, Stay, adt
from tests.services.referral.conftest import (
    Feed,
    ago,
    hl7_time,
    move,
    now,
    patient,
    refer,
    referral,
    report,
    resident,
    task_of,
)
from tests.services.subscriptions.receiver import Receiver

ZHANG_ID = resident("19800101", "001")
# The lead hospital's record of the same person (same resident ID), as its HIS sends it.
ZHANG_XR = Person("ZY1001", "张三", "19800101", "M", ZHANG_ID, gp="QSWSY")


def _subscribe(client: TestClient, url: str, criteria: str) -> None:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "双向转诊",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": url, "payload": "application/fhir+json"},
    }
    answer = client.post("/fhir/Subscription", json=body)
    assert answer.status_code == 201, answer.text


def _deliver_all(engine: sa.Engine) -> None:
    while deliver_due(engine):
        pass


def _heard(receiver: Receiver) -> list[tuple[str, str]]:
    """(Task id, status) of each notification, in order."""
    out = []
    for got in receiver.received:
        body = orjson.loads(got.body)
        assert got.method == "PUT" and got.path.endswith(f"/Task/{body['id']}")
        out.append((body["id"], body["status"]))
    return out


def _encounter(client: TestClient, visit: str) -> dict[str, Any]:
    found = client.get(
        "/fhir/Encounter",
        params={"identifier": f"https://ygt.example.org/fhir/sid/XRMYY/visit|{visit}"},
    ).json()
    assert found["total"] == 1, found
    encounter: dict[str, Any] = found["entry"][0]["resource"]
    return encounter


def test_green_channel_up_referral_end_to_end(
    client: TestClient, engine: sa.Engine, feed: Feed
) -> None:
    with Receiver() as hospital, Receiver() as centre, Receiver() as elsewhere:
        _subscribe(client, hospital.url, "Task?owner=Organization/XRMYY")
        _subscribe(client, centre.url, "Task?requester=Organization/QSWSY")
        _subscribe(client, elsewhere.url, "Task?owner=Organization/XZYY")
        # 青山镇卫生院 refers 张三 up by the green channel, with today's ECG report.
        qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
        ecg = report(client, qs, "QSWSY", ago(hours=2))
        sr = refer(client, referral(qs, "QSWSY", "XRMYY", priority="asap"))
        assert sr["supportingInfo"] == [{"reference": f"DiagnosticReport/{ecg}"}]
        task = task_of(client, sr["id"])
        # The hospital's referral desk takes it on.
        task = move(client, task, "received")
        task = move(client, task, "accepted")
        # The patient arrives: the hospital HIS sends A01 over MLLP for its own record.
        stay = Stay("V-REF-1", hl7_time(now() - timedelta(minutes=1)))
        feed(adt("A01", ZHANG_XR, stay, stay.admitted))
        encounter = _encounter(client, "V-REF-1")
        assert encounter["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
        assert encounter["subject"]["reference"] != f"Patient/{qs}"  # another member's record
        task = task_of(client, sr["id"])
        assert task["status"] == "in-progress"
        assert task["output"][0]["valueReference"] == {"reference": f"Encounter/{encounter['id']}"}
        assert task["executionPeriod"]["start"] == task["lastModified"]
        # A transfer on the ward re-sends the whole Encounter: the link stays, nothing moves.
        feed(adt("A08", ZHANG_XR, stay, hl7_time(now())))
        assert _encounter(client, "V-REF-1")["basedOn"] == encounter["basedOn"]
        assert task_of(client, sr["id"])["meta"]["versionId"] == task["meta"]["versionId"]
        # Discharge: the up-referral is completed, and so is the request.
        stay.discharged = hl7_time(now())
        feed(adt("A03", ZHANG_XR, stay, stay.discharged))
        task = task_of(client, sr["id"])
        assert task["status"] == "completed" and "end" in task["executionPeriod"]
        validate_resource(task, "Task")  # as the hub left it: valid R4
        assert client.get(f"/fhir/ServiceRequest/{sr['id']}").json()["status"] == "completed"
        assert _encounter(client, "V-REF-1")["basedOn"] == encounter["basedOn"]
        # Both sides heard every step of the Task, in order; nobody else heard anything.
        _deliver_all(engine)
        steps = [
            (task["id"], s)
            for s in ("requested", "received", "accepted", "in-progress", "completed")
        ]
        assert _heard(hospital) == steps
        assert _heard(centre) == steps
        assert elsewhere.received == []


def test_an_admission_without_a_referral_or_elsewhere_links_nothing(
    client: TestClient, engine: sa.Engine, feed: Feed
) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XZYY", direction="up"))
    task = move(client, task_of(client, sr["id"]), "received")
    move(client, task, "accepted")
    # Admitted at the lead hospital, not at 县中医院 where he was referred.
    stay = Stay("V-REF-2", hl7_time(now()))
    feed(adt("A01", ZHANG_XR, stay, stay.admitted))
    assert "basedOn" not in _encounter(client, "V-REF-2")
    assert task_of(client, sr["id"])["status"] == "accepted"
    # Someone else admitted to XRMYY: nothing either.
    other = Person("ZY1002", "李四", "19900202", "M", resident("19900202", "002"))
    feed(adt("A01", other, Stay("V-REF-3", hl7_time(now())), hl7_time(now())))
    assert "basedOn" not in _encounter(client, "V-REF-3")


def test_an_admission_before_acceptance_links_but_leaves_the_state(
    client: TestClient, engine: sa.Engine, feed: Feed
) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY", priority="stat"))
    # An earlier stay, begun long before the referral, is not the referral's.
    old = Stay("V-OLD", hl7_time(now() - timedelta(days=2)))
    feed(adt("A01", ZHANG_XR, old, old.admitted))
    assert "basedOn" not in _encounter(client, "V-OLD")
    # The ambulance is faster than the referral desk: admitted while still "requested".
    stay = Stay("V-REF-4", hl7_time(now()))
    feed(adt("A01", ZHANG_XR, stay, stay.admitted))
    encounter = _encounter(client, "V-REF-4")
    assert encounter["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
    task = task_of(client, sr["id"])
    assert task["status"] == "requested"
    assert task["output"][0]["valueReference"]["reference"] == f"Encounter/{encounter['id']}"
    # The desk catches up by hand.
    task = move(client, task, "received")
    task = move(client, task, "accepted")
    move(client, task, "in-progress")
    with engine.connect() as conn:
        row = conn.execute(sa.select(referrals)).one()
    assert row.encounter_id == encounter["id"] and row.status == "in-progress"


def test_down_referral_carries_the_discharge_document(
    client: TestClient, engine: sa.Engine, feed: Feed
) -> None:
    # A stay at the lead hospital, admitted and discharged over MLLP.
    admitted = now() - timedelta(days=6)
    stay = Stay(
        "V-DOWN-1",
        hl7_time(admitted),
        hl7_time(admitted + timedelta(days=5)),
        discharge_dx=[("I21.0", "急性前壁心肌梗死")],
    )
    feed(adt("A01", ZHANG_XR, stay, stay.admitted))
    feed(adt("A03", ZHANG_XR, stay, stay.discharged or ""))
    encounter = _encounter(client, "V-DOWN-1")
    xr = encounter["subject"]["reference"].split("/")[1]
    # The hospital refers him down to his own township centre for recovery.
    sr = refer(client, referral(xr, "XRMYY", "QSWSY"))
    validate_resource(sr, "ServiceRequest")
    document = f"fb-{encounter['id']}"
    assert sr["supportingInfo"][0] == {
        "reference": f"Bundle/{document}",
        "display": "出院小结 discharge summary",
    }
    assert {
        "system": "https://ygt.example.org/fhir/CodeSystem/referral-direction",
        "code": "down",
        "display": "下转",
    } in sr["category"][1]["coding"]
    bundle = client.get(f"/fhir/Bundle/{document}").json()
    assert bundle["type"] == "document"
    composition = bundle["entry"][0]["resource"]
    assert composition["id"] == document and composition["type"]["coding"][0]["code"] == "18842-5"
    assert composition["encounter"]["reference"] == f"Encounter/{encounter['id']}"
    # Filed like the month's run would file it: the run will find it and not file it twice.
    with engine.connect() as conn:
        filed = conn.execute(sa.select(feedback_documents)).one()
    assert filed.encounter_id == encounter["id"] and filed.addressee == "QSWSY"
    task = task_of(client, sr["id"])
    assert task["owner"] == {"reference": "Organization/QSWSY"}
    assert task["priority"] == "routine" and "绿色通道" not in task["description"]
    # The township centre accepts and sees him: a down-referral is completed by hand.
    task = move(client, task, "received")
    task = move(client, task, "accepted")
    task = move(client, task, "in-progress")
    assert move(client, task, "completed")["status"] == "completed"


def test_down_referral_names_its_stay_or_warns(client: TestClient, feed: Feed) -> None:
    admitted = now() - timedelta(days=30)
    first = Stay("V-D-1", hl7_time(admitted), hl7_time(admitted + timedelta(days=3)))
    later = Stay(
        "V-D-2", hl7_time(admitted + timedelta(days=10)), hl7_time(admitted + timedelta(days=12))
    )
    for stay in (first, later):
        feed(adt("A01", ZHANG_XR, stay, stay.admitted))
        feed(adt("A03", ZHANG_XR, stay, stay.discharged or ""))
    one, two = _encounter(client, "V-D-1"), _encounter(client, "V-D-2")
    xr = one["subject"]["reference"].split("/")[1]
    # Without a named stay: the latest one at the referring hospital.
    sr = refer(client, referral(xr, "XRMYY", "QSWSY"))
    assert sr["supportingInfo"][0]["reference"] == f"Bundle/fb-{two['id']}"
    # The stay named in ServiceRequest.encounter wins.
    body = referral(xr, "XRMYY", "QSWSY", encounter={"reference": f"Encounter/{one['id']}"})
    sr = refer(client, body)
    assert sr["supportingInfo"][0]["reference"] == f"Bundle/fb-{one['id']}"
    # No finished stay at the referring hospital: taken, with a warning.
    qs = patient(client, "QSWSY", "QS-1", resident("19700303", "003"), name=[{"text": "王五"}])
    answer = client.post(
        "/fhir/ServiceRequest",
        json=referral(qs, "XZYY", "QSWSY"),
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert answer.status_code == 201, answer.text
    issues = answer.json()["issue"]
    assert issues[0]["severity"] == "warning" and "no finished stay" in issues[0]["diagnostics"]
