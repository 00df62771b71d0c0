"""Demo data for the dashboard's tests, made the way members make it: HL7 v2 over MLLP for the
lead hospital and the lab centre, FHIR REST for the rest.

October 2026 in the community's zone: a stay at the lead hospital (admitted, a lab result,
discharged) of a patient whose family doctor is at 青山镇卫生院 (QSWSY), and a stay of a patient
no centre can be found for; recognition checks at QSWSY (one accepted, one repeated because
the condition changed); an urgent up-referral from QSWSY to the lead hospital, accepted; a lab
order from QSWSY routed to the lab centre; and two newborn records the patient index can only
suggest are one child (a review for the office).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from adapters.feeds.resident_id import check_character
from tests.services.feedback.messages import Person, Stay, adt

MESSAGES = Path(__file__).resolve().parents[1] / "feeds" / "messages"
MONTH = "2026-10"
SID = "https://ygt.example.org/fhir/sid"
RESIDENT_ID = f"{SID}/resident-id"
LOINC = "http://loinc.org"
CBC = "58410-2"  # 血常规, certified at the lab centre
STORY_MRN = "ZY0099123"  # the lead hospital's record in tests/feeds/messages/story-*.hl7


def mrn(member: str) -> str:
    return f"{SID}/{member}/mrn"


def resident(first17: str) -> str:
    return first17 + check_character(first17)


def story(name: str) -> bytes:
    return (MESSAGES / name).read_bytes()


def malformed_result() -> bytes:
    """The lab centre's result with a number that is not one: refused at intake (AE)."""
    return (
        story("story-3-oru.hl7")
        .replace(b"||132|", b"||one hundred|")
        .replace(b"JY-R01-0001", b"JY-R01-0099")
    )


ZHAO = Person("ZY0004", "赵流浪", "19700404", "M", resident("33052119700404004"))


def homeless_stay() -> list[bytes]:
    """A stay of a patient with no family doctor and no address: no addressee."""
    stay = Stay("V-ZHAO", "20261011080000", "20261016100000")
    return [adt("A01", ZHAO, stay, stay.admitted), adt("A03", ZHAO, stay, "20261016100000")]


def create(api: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    answer = api.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def patient(member: str, number: str, name: str, birth: str, gender: str,
            **more: Any) -> dict[str, Any]:  # fmt: skip
    identifiers = [{"system": mrn(member), "value": number}]
    if "resident_id" in more:
        identifiers.append({"system": RESIDENT_ID, "value": more.pop("resident_id")})
    return {
        "resourceType": "Patient", "identifier": identifiers,
        "name": [{"text": name, "family": name[0], "given": [name[1:]]}],
        "gender": gender, "birthDate": birth, **more,
    }  # fmt: skip


def duplicate_records(api: httpx.Client) -> list[str]:
    """Two lead-hospital records under one MRN (a registration desk's slip): the ADT that
    follows cannot tell which to update, so it fails and waits for the office."""
    return [
        create(api, patient("XRMYY", STORY_MRN, "张三", "1960-03-15", "male"))["id"]
        for _ in range(2)
    ]


def recognition(api: httpx.Client) -> None:
    """QSWSY asks twice about a blood count the lab centre did for the same person at the
    lead hospital: once the result is used, once the test is repeated (condition changed)."""
    person = resident("33052119751002002")
    lead = create(api, patient("XRMYY", "ZY0077001", "李娜", "1975-10-02", "female",
                               resident_id=person))  # fmt: skip
    centre = create(api, patient("QSWSY", "QS-004512", "李娜", "1975-10-02", "female",
                                 resident_id=person))  # fmt: skip
    create(api, {
        "resourceType": "DiagnosticReport", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": CBC}]},
        "subject": {"reference": f"Patient/{lead['id']}"},
        "effectiveDateTime": "2026-10-20T09:00:00+08:00",
        "performer": [{"reference": "Organization/XJYZX"}],
    })  # fmt: skip
    for at, decision, reason in (
        ("2026-10-21T10:00:00+08:00", "accepted", None),
        ("2026-10-21T11:00:00+08:00", "reordered", "condition-changed"),
    ):
        issue = _recognise(api, centre["id"], "QSWSY", at)
        _decide(api, issue, decision, reason)


def _recognise(api: httpx.Client, subject: str, orderer: str, at: str) -> str:
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{subject}"}},
        {"name": "code", "valueCoding": {"system": LOINC, "code": CBC}},
        {"name": "orderer", "valueReference": {"reference": f"Organization/{orderer}"}},
        {"name": "at", "valueDateTime": at},
    ]}  # fmt: skip
    answer = api.post("/fhir/ServiceRequest/$recognize", json=params)
    assert answer.status_code == 200, answer.text
    [item] = [p for p in answer.json()["parameter"] if p["name"] == "item"]
    [issue] = [p["valueReference"]["reference"] for p in item["part"] if p["name"] == "issue"]
    return str(issue)


def _decide(api: httpx.Client, issue_ref: str, decision: str, reason: str | None) -> None:
    issue = api.get(f"/fhir/{issue_ref}").json()
    codings = [{"system": "https://ygt.example.org/fhir/CodeSystem/recognition-decision",
                "code": decision}]  # fmt: skip
    if reason:
        codings.append({"system": "https://ygt.example.org/fhir/CodeSystem/repeat-reason",
                        "code": reason})  # fmt: skip
    issue["status"] = "final"
    issue["mitigation"] = [{"action": {"coding": codings}, "date": "2026-10-21T10:05:00+08:00"}]
    answer = api.put(f"/fhir/{issue_ref}", json=issue)
    assert answer.status_code == 200, answer.text


def referral_and_routed_order(api: httpx.Client) -> dict[str, str]:
    """An urgent up-referral (green channel) QSWSY → XRMYY, accepted by the hospital; and a
    blood count ordered at QSWSY, which the hub routes to the lab centre.  Both made now: a
    month's referral figures count referrals made in it and steps taken in it."""
    person = resident("33052119551111001")
    centre = create(api, patient("QSWSY", "QS-000777", "王建国", "1955-11-11", "male",
                                 resident_id=person))  # fmt: skip
    referral = {"system": "http://snomed.info/sct", "code": "3457005",
                "display": "Patient referral"}  # fmt: skip
    request = create(api, {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [referral]}], "priority": "urgent",
        "code": {"coding": [referral]}, "subject": {"reference": f"Patient/{centre['id']}"},
        "requester": {"reference": "Organization/QSWSY"},
        "performer": [{"reference": "Organization/XRMYY"}],
        "reasonCode": [{"text": "胸痛待查"}],
    })  # fmt: skip
    tasks = api.get("/fhir/Task", params={"focus": f"ServiceRequest/{request['id']}"}).json()
    task = tasks["entry"][0]["resource"]
    for status in ("received", "accepted"):
        task = {k: v for k, v in task.items() if k != "meta"} | {"status": status}
        answer = api.put(f"/fhir/Task/{task['id']}", json=task)
        assert answer.status_code == 200, answer.text
        task = answer.json()
    order = create(api, {
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"coding": [{"system": LOINC, "code": CBC}]},
        "subject": {"reference": f"Patient/{centre['id']}"},
        "requester": {"reference": "Organization/QSWSY"},
    })  # fmt: skip
    return {"referral": request["id"], "order": order["id"]}


def newborns(api: httpx.Client) -> list[str]:
    """Twin-like records of one newborn at two members, no ID yet: only ever suggested."""
    home = {"telecom": [{"system": "phone", "value": "13700003333"}],
            "address": [{"text": "浙江省湖州市德清县乾元镇城北村3号"}]}  # fmt: skip
    return [
        create(api, patient(member, number, "张三之子", "2026-10-20", "male", **home))["id"]
        for member, number in (("XRMYY", "NB1"), ("XFYBJY", "NB2"))
    ]


def master_of(api: httpx.Client, record_id: str) -> str:
    record = api.get(f"/fhir/Patient/{record_id}").json()
    [refer] = [link for link in record.get("link", []) if link["type"] == "refer"]
    return str(refer["other"]["reference"]).split("/")[1]
