"""FHIR requests as the members' systems send them (pure: values in, JSON-ready dicts out).

Members' systems know their own numbers, not the hub's ids, so every write is a transaction
entry whose references are conditional (``Patient?identifier=<their MRN system>|<MRN>``): the
hub resolves them to the member's own record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.feeds.config import Community
from adapters.hl7v2.datatypes import DIVISION_EXT
from hub.demo.population import CITY, COUNTY, PROVINCE, Resident, record_view

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
REFERRAL = {"system": SNOMED, "code": "3457005", "display": "Patient referral"}
LAB = {"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}
IMAGING = {"system": SNOMED, "code": "363679005", "display": "Imaging"}
REPEAT_REASON = "https://ygt.example.org/fhir/CodeSystem/repeat-reason"
DECISION = "https://ygt.example.org/fhir/CodeSystem/recognition-decision"


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def identifier_query(system: str, value: str) -> str:
    return f"identifier={system}|{value}"


def patient_ref(community: Community, member: str, r: Resident) -> dict[str, str]:
    """A conditional reference to ``member``'s own record of the resident."""
    system = community.members[member].system("mrn")
    return {"reference": f"Patient?{identifier_query(system, r.mrn(member))}"}


def archive_record(community: Community, r: Resident) -> dict[str, Any]:
    """The centre's health-archive record (居民健康档案) of a resident, as a conditional update
    by its record number; the family doctor's institution when they signed a contract."""
    centre = community.members[r.centre]
    view = record_view(r, r.centre)
    identifiers: list[dict[str, Any]] = [
        {
            "use": "usual",
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                ]
            },
            "system": centre.system("mrn"),
            "value": r.mrn(r.centre),
        }
    ]
    if view.resident_id:
        identifiers.append(
            {"use": "official", "system": community.resident_id_system, "value": view.resident_id}
        )
    if r.ehealth_card:
        identifiers.append({"system": community.ehealth_card_system, "value": r.ehealth_card})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "active": True,
        "name": [{"use": "official", "text": view.name, "family": r.family, "given": [r.given]}],
        "telecom": [{"system": "phone", "value": view.phone, "use": "mobile"}],
        "gender": r.sex,
        "birthDate": view.born.isoformat(),
        "address": [
            {
                "extension": [{"url": DIVISION_EXT, "valueCode": r.division}],
                "use": "home",
                "text": r.address_text,
                "line": [r.street],
                "district": COUNTY,
                "city": CITY,
                "state": PROVINCE,
                "postalCode": "313200",
                "country": "CHN",
            }
        ],
        "managingOrganization": {"reference": centre.reference, "display": centre.name},
    }
    if r.contracted:
        patient["generalPractitioner"] = [{"reference": centre.reference, "display": centre.name}]
    query = identifier_query(centre.system("mrn"), r.mrn(r.centre))
    return {"resource": patient, "request": {"method": "PUT", "url": f"Patient?{query}"}}


def referral(
    community: Community,
    r: Resident,
    *,
    number: str,
    requester: str,
    performer: str,
    subject_member: str,
    authored: datetime,
    priority: str,
    reason: tuple[str, str],
    note: str,
    encounter_visit: str | None = None,
) -> dict[str, Any]:
    """A referral ServiceRequest (双向转诊) as the referring member writes it; the hub opens its
    Task, adds the supporting results (and the discharge document going down)."""
    member = community.members[requester]
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": member.system("placer"), "value": number}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [REFERRAL]}],
        "priority": priority,
        "code": {"coding": [REFERRAL], "text": "转诊"},
        "subject": patient_ref(community, subject_member, r),
        "authoredOn": instant(authored),
        "requester": {"reference": member.reference, "display": member.name},
        "performer": [
            {
                "reference": community.members[performer].reference,
                "display": community.members[performer].name,
            }
        ],
        "reasonCode": [{"coding": [{"system": ICD10, "code": reason[0], "display": reason[1]}]}],
        "note": [{"text": note}],
    }
    if encounter_visit:
        visit = identifier_query(member.system("visit"), encounter_visit)
        request["encounter"] = {"reference": f"Encounter?{visit}"}
    query = identifier_query(member.system("placer"), number)
    return {
        "resource": request,
        "request": {"method": "POST", "url": "ServiceRequest", "ifNoneExist": query},
    }


def fhir_order(
    community: Community,
    r: Resident,
    *,
    centre: str,
    number: str,
    code: tuple[str, str],
    imaging: bool,
    authored: datetime,
) -> dict[str, Any]:
    """An order from a centre whose HIS speaks FHIR: the hub routes it like an ORM."""
    member = community.members[centre]
    request = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": member.system("placer"), "value": number}],
        "status": "active",
        "intent": "order",
        "category": [{"coding": [IMAGING if imaging else LAB]}],
        "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
        "subject": patient_ref(community, centre, r),
        "authoredOn": instant(authored),
        "requester": {"reference": member.reference, "display": member.name},
    }
    query = identifier_query(member.system("placer"), number)
    return {
        "resource": request,
        "request": {"method": "POST", "url": "ServiceRequest", "ifNoneExist": query},
    }


def discharge_advice(
    community: Community,
    r: Resident,
    *,
    hospital: str,
    visit: str,
    at: datetime,
    advice: tuple[str, ...],
) -> dict[str, Any]:
    """出院医嘱: a CarePlan of the stay, which the monthly feedback shows the family doctor."""
    member = community.members[hospital]
    visit_query = identifier_query(member.system("visit"), visit)
    plan = {
        "resourceType": "CarePlan",
        "identifier": [{"system": f"{member.system('visit')}/careplan", "value": visit}],
        "status": "active",
        "intent": "plan",
        "category": [{"text": "出院医嘱"}],
        "title": "出院医嘱及随访计划",
        "description": "；".join(advice),
        "subject": patient_ref(community, hospital, r),
        "encounter": {"reference": f"Encounter?{visit_query}"},
        "period": {"start": instant(at)},
        "created": instant(at),
        "author": {"reference": member.reference, "display": member.name},
        "activity": [{"detail": {"status": "not-started", "description": a}} for a in advice],
    }
    query = identifier_query(f"{member.system('visit')}/careplan", visit)
    return {"resource": plan, "request": {"method": "PUT", "url": f"CarePlan?{query}"}}


def recognize_parameters(
    system: str, value: str, codes: list[dict[str, str]], orderer: str, at: datetime
) -> dict[str, Any]:
    """$recognize: is there a result of these items the ordering member may take?"""
    params: list[dict[str, Any]] = [
        {"name": "patientIdentifier", "valueIdentifier": {"system": system, "value": value}}
    ]
    params += [{"name": "code", "valueCoding": c} for c in codes]
    params.append({"name": "orderer", "valueReference": {"reference": f"Organization/{orderer}"}})
    params.append({"name": "at", "valueDateTime": instant(at)})
    return {"resourceType": "Parameters", "parameter": params}


def decided(issue: dict[str, Any], decision: str, reason: str | None, at: datetime) -> dict:
    """The DetectedIssue a $recognize raised, finalised with the clinician's decision."""
    codings = [{"system": DECISION, "code": decision}]
    if reason:
        codings.append({"system": REPEAT_REASON, "code": reason})
    body = {k: v for k, v in issue.items() if k != "meta"}
    body["status"] = "final"
    body["mitigation"] = [{"action": {"coding": codings}, "date": instant(at)}]
    return body


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def subscription(criteria: str, endpoint: str, reason: str) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": reason,
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }
