"""Golden assertions on ADT visit events: admission type and priority, admit reason, class
changes (A06/A07), a cancelled transfer (A12) and next of kin."""

from __future__ import annotations

from typing import Any

from adapters.feeds.config import demo_community
from adapters.hl7v2.mapped import Mapped
from adapters.hl7v2.messages import map_message
from adapters.hl7v2.parse import parse_text
from hub.fhir.validation import validate_resource
from tests.adapters.test_mapping_demo import MESSAGES, _map, _one

VISIT = "https://ygt.example.org/fhir/sid/XRMYY/visit"
ACT_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
V2_0007 = "http://terminology.hl7.org/CodeSystem/v2-0007"


def _map_text(text: str) -> Mapped:
    mapped = map_message(
        parse_text(text), demo_community(), source_ref="r", received_at="2026-10-11T00:00:00+08:00"
    )
    for entry in mapped.bundle["entry"]:
        validate_resource(entry["resource"])
    return mapped


def _locations(encounter: dict[str, Any]) -> list[tuple[str, str]]:
    return [(loc["location"]["display"], loc["status"]) for loc in encounter["location"]]


def test_admit_reason_from_pv2_3() -> None:
    enc = _one(_map("xrmyy_adt_a01.hl7"), "Encounter")["resource"]
    assert enc["reasonCode"] == [
        {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/sid/icd-10",
                    "code": "I20.0",
                    "display": "不稳定型心绞痛",
                }
            ],
            "text": "不稳定型心绞痛",
        }
    ]
    # No PV1-4 and no PV2-25: neither type nor priority is made up.
    assert "type" not in enc and "priority" not in enc


def test_admission_type_gives_type_and_priority() -> None:
    enc = _one(_map("xrmyy_adt_a06.hl7"), "Encounter")["resource"]
    assert enc["type"] == [{"coding": [{"system": V2_0007, "code": "E", "display": "Emergency"}]}]
    assert enc["priority"] == {
        "coding": [{"system": ACT_PRIORITY, "code": "EM", "display": "emergency"}]
    }
    assert enc["reasonCode"][0]["coding"][0]["code"] == "J18.9"


def test_visit_priority_pv2_25_wins_over_the_admission_type() -> None:
    base = (MESSAGES / "xrmyy_adt_a01.hl7").read_text(encoding="utf-8")
    pv1 = "PV1|1|I|心内科^301^12^XRMYY||||D1001"
    assert pv1 in base
    text = base.replace(pv1, "PV1|1|I|心内科^301^12^XRMYY|C|||D1001").replace(
        "PV2|||I20.0^不稳定型心绞痛^I10", "PV2|||I20.0^不稳定型心绞痛^I10" + "|" * 22 + "2"
    )
    enc = _one(_map_text(text), "Encounter")["resource"]
    assert enc["type"][0]["coding"][0]["code"] == "C"  # elective admission...
    assert enc["priority"]["coding"] == [  # ...made urgent by PV2-25
        {"system": ACT_PRIORITY, "code": "UR", "display": "urgent"}
    ]
    # A sender's own admission type codes stay its own, and imply no priority.
    local = base.replace(pv1, "PV1|1|I|心内科^301^12^XRMYY|2^急诊入院|||D1001")
    enc = _one(_map_text(local), "Encounter")["resource"]
    assert enc["type"][0]["coding"][0] == {
        "system": "https://ygt.example.org/fhir/CodeSystem/local/XRMYY",
        "code": "2",
        "display": "急诊入院",
    }
    assert "priority" not in enc


def test_a06_and_a07_change_the_class_of_one_encounter() -> None:
    admitted, back = _map("xrmyy_adt_a06.hl7"), _map("xrmyy_adt_a07.hl7")
    requests = [_one(m, "Encounter")["request"] for m in (admitted, back)]
    assert requests == [{"method": "PUT", "url": f"Encounter?identifier={VISIT}|V20261005002"}] * 2
    assert _one(admitted, "Patient")["request"] == _one(back, "Patient")["request"]
    inpatient = _one(admitted, "Encounter")["resource"]
    outpatient = _one(back, "Encounter")["resource"]
    assert inpatient["class"]["code"] == "IMP" and outpatient["class"]["code"] == "AMB"
    assert inpatient["status"] == outpatient["status"] == "in-progress"
    assert inpatient["period"] == outpatient["period"] == {"start": "2026-10-05T09:00:00+08:00"}
    assert _locations(inpatient) == [("呼吸内科 205 3床", "active")]
    assert _locations(outpatient) == [("呼吸内科门诊", "active")]
    assert "type" not in outpatient and "priority" not in outpatient


def test_a12_puts_the_patient_back_where_the_transfer_took_them_from() -> None:
    admit, transfer, cancel = (_map(f"xrmyy_adt_{e}.hl7") for e in ("a01", "a02", "a12"))
    urls = {_one(m, "Encounter")["request"]["url"] for m in (admit, transfer, cancel)}
    assert urls == {f"Encounter?identifier={VISIT}|V20261001001"}
    enc = _one(cancel, "Encounter")["resource"]
    assert enc["status"] == "in-progress"
    # Only PV1-3: the ICU of the cancelled transfer (PV1-6) is not kept as a past location.
    assert _locations(enc) == [("心内科 301 12床", "active")]
    assert enc["period"] == {"start": "2026-10-01T08:00:00+08:00"}


def test_next_of_kin_stays_a_patient_contact() -> None:
    mapped = _map("xrmyy_adt_a01.hl7")
    (contact,) = _one(mapped, "Patient")["resource"]["contact"]
    assert contact["relationship"][0]["coding"][0]["code"] == "SPS"
    assert contact["name"]["text"] == "李四"
    assert contact["telecom"] == [{"system": "phone", "value": "13900000002", "use": "mobile"}]
    types = {e["resource"]["resourceType"] for e in mapped.bundle["entry"]}
    assert "RelatedPerson" not in types  # the hub does not serve RelatedPerson
