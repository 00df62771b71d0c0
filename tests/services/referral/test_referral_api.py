"""Referrals through the FHIR REST API: the Task the hub opens, what it adds to the request,
the state machine on every Task update, rejection, cancellation from either side, and the
same through a transaction Bundle."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.fhir.validation import validate_resource
from hub.store.schema import referral_events, referrals
from tests.services.referral.conftest import (
    DIRECTION,
    REFERRAL,
    ago,
    fhir_time,
    move,
    now,
    patient,
    refer,
    referral,
    report,
    resident,
    task_of,
)

ZHANG_ID = resident("19800101", "001")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _steps(engine: sa.Engine, request_id: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(referral_events.c.status)
            .where(referral_events.c.request_id == request_id)
            .order_by(referral_events.c.id)
        )
        return [r.status for r in rows]


def test_an_up_referral_opens_a_task_for_the_receiving_hospital(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    before = now()
    sr = refer(client, referral(qs, "QSWSY", "XRMYY", priority="asap"))
    # The hub inferred the direction from the members' kinds and says so in the request.
    assert {"system": DIRECTION, "code": "up", "display": "上转"} in [
        c for cat in sr["category"] for c in cat["coding"]
    ]
    task = task_of(client, sr["id"])
    validate_resource(task, "Task")  # the hub's own Task is valid R4
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["focus"] == {"reference": f"ServiceRequest/{sr['id']}"}
    assert task["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
    assert task["for"] == {"reference": f"Patient/{qs}"}
    assert task["requester"] == {"reference": "Organization/QSWSY"}
    assert task["owner"] == {"reference": "Organization/XRMYY"}
    assert task["priority"] == "asap" and "绿色通道" in task["description"]
    # Green channel: due two hours after the request.
    period = task["restriction"]["period"]
    assert _at(period["start"]) >= before
    assert (_at(period["end"]) - _at(period["start"])).total_seconds() == 2 * 3600


def test_a_routine_referral_is_due_in_three_days(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    authored = ago(hours=5)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY", authored=authored))
    period = task_of(client, sr["id"])["restriction"]["period"]
    assert period["start"] == fhir_time(authored)
    assert (_at(period["end"]) - authored).total_seconds() == 72 * 3600


def test_recent_results_of_the_person_across_members_go_along(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    lab = patient(client, "XJYZX", "JY-1", ZHANG_ID)  # the lab centre's record of him
    other = patient(client, "QSWSY", "QS-2", resident("19900202", "002"), name=[{"text": "李四"}])
    mine = report(client, qs, "QSWSY", ago(days=3))
    centre = report(client, lab, "XJYZX", ago(days=20))
    report(client, qs, "QSWSY", ago(days=200))  # older than the lookback
    report(client, other, "QSWSY", ago(days=1))  # someone else
    given = {"reference": "Observation/ecg-1", "display": "心电图"}
    sr = refer(client, referral(qs, "QSWSY", "XRMYY", supportingInfo=[given]))
    assert sr["supportingInfo"] == [
        given,  # the sender's own first
        {"reference": f"DiagnosticReport/{mine}"},  # then newest first
        {"reference": f"DiagnosticReport/{centre}"},
    ]


def test_a_draft_opens_nothing_until_it_is_active(client: TestClient, engine: sa.Engine) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY", status="draft"))
    assert (
        client.get("/fhir/Task", params={"focus": f"ServiceRequest/{sr['id']}"}).json()["total"]
        == 0
    )
    body = {k: v for k, v in sr.items() if k != "meta"} | {"status": "active"}
    assert client.put(f"/fhir/ServiceRequest/{sr['id']}", json=body).status_code == 200
    assert task_of(client, sr["id"])["status"] == "requested"
    # Writing the active request again opens no second Task.
    assert client.put(f"/fhir/ServiceRequest/{sr['id']}", json=body).status_code == 200
    task_of(client, sr["id"])
    assert _steps(engine, sr["id"]) == ["requested"]


def test_a_request_that_is_not_a_referral_is_left_alone(
    client: TestClient, engine: sa.Engine
) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    body = referral(qs, "QSWSY", "XJYZX")
    body["category"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}]
    body["code"] = {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}
    sr = refer(client, body)
    assert "supportingInfo" not in sr and len(sr["category"]) == 1
    # A lab order may get a Task of its own (order routing's), never a referral's.
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(referrals)).scalar() == 0


def test_what_a_referral_must_say(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    base = referral(qs, "QSWSY", "XRMYY")
    cases: list[tuple[dict[str, Any], str]] = [
        (referral(qs, "QSWSY", "NOBODY"), "ServiceRequest.performer[0]"),
        ({**base, "requester": {"display": "青山"}}, "ServiceRequest.requester"),
        ({**base, "performer": []}, "ServiceRequest.performer"),
        ({**base, "subject": {"reference": "Group/g1"}}, "ServiceRequest.subject"),
        # Between two hospitals the sender must say which way.
        (referral(qs, "XZYY", "XRMYY"), "ServiceRequest.category"),
        # A township centre sending "down" to the lead hospital contradicts the members' kinds.
        (referral(qs, "QSWSY", "XRMYY", direction="down"), "ServiceRequest.category"),
    ]
    for body, where in cases:
        answer = client.post("/fhir/ServiceRequest", json=body)
        assert answer.status_code == 422, (where, answer.text)
        outcome = answer.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == [where]
    assert client.get("/fhir/Task").json().get("total", 0) == 0
    # Said explicitly, a referral between two hospitals is taken.
    sr = refer(client, referral(qs, "XZYY", "XRMYY", direction="up"))
    assert task_of(client, sr["id"])["owner"] == {"reference": "Organization/XRMYY"}


def test_a_practitioner_role_stands_for_its_organisation(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    role = client.post(
        "/fhir/PractitionerRole",
        json={
            "resourceType": "PractitionerRole",
            "organization": {"reference": "Organization/QSWSY"},
        },
    ).json()
    body = referral(qs, "QSWSY", "XRMYY")
    body["requester"] = {"reference": f"PractitionerRole/{role['id']}"}
    sr = refer(client, body)
    assert task_of(client, sr["id"])["requester"] == {"reference": "Organization/QSWSY"}


def test_illegal_transitions_are_refused_with_both_states(
    client: TestClient, engine: sa.Engine
) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY"))
    task = task_of(client, sr["id"])
    for status in ("accepted", "in-progress", "completed", "rejected"):
        outcome = move(client, task, status, expect=422)
        issue = outcome["issue"][0]
        assert f"from requested to {status}" in issue["diagnostics"]
        assert issue["code"] == "business-rule" and issue["expression"] == ["Task.status"]
    # Nothing of a refused update stays: same version, same state.
    assert client.get(f"/fhir/Task/{task['id']}").json()["meta"]["versionId"] == "1"
    task = move(client, task, "received")
    task = move(client, task, "accepted")
    outcome = move(client, task, "received", expect=422)
    assert "from accepted to received" in outcome["issue"][0]["diagnostics"]
    # A JSON Patch goes through the same rules.
    answer = client.patch(
        f"/fhir/Task/{task['id']}",
        json=[{"op": "replace", "path": "/status", "value": "completed"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert answer.status_code == 422, answer.text
    assert "from accepted to completed" in answer.text
    # Other edits in the same state are fine (a note for the referring doctor).
    noted = move(client, task, "accepted", note=[{"text": "已安排心内科床位"}])
    assert noted["meta"]["versionId"] == "4"
    # The focus of a referral Task is fixed.
    outcome = move(client, noted, "accepted", expect=422, focus={"reference": "ServiceRequest/x"})
    assert outcome["issue"][0]["expression"] == ["Task.focus"]
    assert _steps(engine, sr["id"]) == ["requested", "received", "accepted"]


def test_rejection_needs_a_reason_and_revokes_the_request(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY"))
    task = move(client, task_of(client, sr["id"]), "received")
    outcome = move(client, task, "rejected", expect=422)
    assert outcome["issue"][0]["expression"] == ["Task.statusReason"]
    assert "from received to rejected" in outcome["issue"][0]["diagnostics"]
    reason = {"text": "本院无相应专科床位, 建议转市级医院"}
    task = move(client, task, "rejected", statusReason=reason)
    assert task["statusReason"] == reason
    request = client.get(f"/fhir/ServiceRequest/{sr['id']}").json()
    assert request["status"] == "revoked" and request["meta"]["versionId"] == "2"
    # Rejected is final.
    assert (
        "rejected is final" in move(client, task, "accepted", expect=422)["issue"][0]["diagnostics"]
    )


def test_the_referring_centre_cancels_through_the_task(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY"))
    task = move(client, task_of(client, sr["id"]), "received")
    move(client, task, "cancelled", statusReason={"text": "患者拒绝转诊"})
    assert client.get(f"/fhir/ServiceRequest/{sr['id']}").json()["status"] == "revoked"


def test_revoking_the_request_cancels_the_task(client: TestClient, engine: sa.Engine) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY"))
    body = {k: v for k, v in sr.items() if k != "meta"} | {"status": "revoked"}
    assert client.put(f"/fhir/ServiceRequest/{sr['id']}", json=body).status_code == 200
    task = task_of(client, sr["id"])
    assert task["status"] == "cancelled" and task["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/ServiceRequest/{sr['id']}").json()["meta"]["versionId"] == "2"
    assert _steps(engine, sr["id"]) == ["requested", "cancelled"]


def test_deleting_the_request_cancels_the_task(client: TestClient, engine: sa.Engine) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY"))
    move(client, task_of(client, sr["id"]), "received")
    assert client.delete(f"/fhir/ServiceRequest/{sr['id']}").status_code in (200, 204)
    assert task_of(client, sr["id"])["status"] == "cancelled"
    assert _steps(engine, sr["id"]) == ["requested", "received", "cancelled"]


def test_a_referral_under_way_cannot_be_revoked(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    sr = refer(client, referral(qs, "QSWSY", "XRMYY"))
    task = move(client, task_of(client, sr["id"]), "received")
    task = move(client, task, "accepted")
    move(client, task, "in-progress")
    body = {k: v for k, v in sr.items() if k != "meta"} | {"status": "revoked"}
    answer = client.put(f"/fhir/ServiceRequest/{sr['id']}", json=body)
    assert answer.status_code == 422, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["ServiceRequest.status"]
    assert "from in-progress to cancelled" in issue["diagnostics"]
    assert client.get(f"/fhir/ServiceRequest/{sr['id']}").json()["status"] == "active"


def test_a_referral_in_a_transaction_opens_its_task_there(
    client: TestClient, engine: sa.Engine
) -> None:
    pat = "urn:uuid:2f1c0d4e-0000-4000-8000-000000000001"
    req = "urn:uuid:2f1c0d4e-0000-4000-8000-000000000002"
    body = referral("x", "QSWSY", "XRMYY", priority="urgent")
    body["subject"] = {"reference": pat}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": req,
                "resource": body,
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {
                "fullUrl": pat,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {"system": "https://ygt.example.org/fhir/sid/QSWSY/mrn", "value": "QS-9"}
                    ],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    answer = client.post("/fhir", json=bundle)
    assert answer.status_code == 200, answer.text
    location = answer.json()["entry"][0]["response"]["location"]
    request_id = location.split("/")[1]
    task = task_of(client, request_id)
    assert task["for"]["reference"].startswith("Patient/") and task["priority"] == "urgent"
    # A bad referral fails the whole transaction: nothing of it is kept.
    body = referral("x", "QSWSY", "NOBODY")
    body["subject"] = {"reference": pat}
    bundle["entry"][0]["resource"] = body
    bundle["entry"][1]["resource"]["identifier"][0]["value"] = "QS-10"
    answer = client.post("/fhir", json=bundle)
    assert answer.status_code == 422, answer.text
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(referrals)).scalar() == 1
    found = client.get(
        "/fhir/Patient", params={"identifier": "https://ygt.example.org/fhir/sid/QSWSY/mrn|QS-10"}
    ).json()
    assert found.get("total", 0) == 0


def test_the_category_code_is_what_makes_a_referral(client: TestClient) -> None:
    qs = patient(client, "QSWSY", "QS-1", ZHANG_ID)
    body = referral(qs, "QSWSY", "XRMYY")
    body["category"] = [{"coding": [REFERRAL, {"system": DIRECTION, "code": "up"}]}]
    sr = refer(client, body)
    # The direction was given: the hub adds no second coding.
    codes = [c["code"] for cat in sr["category"] for c in cat["coding"]]
    assert codes == ["3457005", "up"]
    assert task_of(client, sr["id"])["status"] == "requested"
