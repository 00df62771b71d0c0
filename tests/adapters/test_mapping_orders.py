"""Golden assertions on order messages: ask-at-order-entry OBX and OBR-15 specimens."""

from __future__ import annotations

from urllib.parse import unquote

from tests.adapters.test_mapping_demo import _entries, _map, _one

SID = "https://ygt.example.org/fhir/sid"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"


def _refs(resource: dict, element: str) -> list[str]:
    return [r["reference"] for r in resource.get(element, [])]


def test_order_entry_answers_are_observations_the_order_points_at() -> None:
    mapped = _map("qswsy_orm_o01_aoe.hl7")
    order = _one(mapped, "ServiceRequest")
    answers = _entries(mapped, "Observation")
    assert _refs(order["resource"], "supportingInfo") == [a["fullUrl"] for a in answers]
    assert [unquote(a["request"]["url"]) for a in answers] == [
        f"Observation?identifier={SID}/QSWSY/obx|QS-ORD-0002\\|FAST\\|",
        f"Observation?identifier={SID}/QSWSY/obx|QS-ORD-0002\\|LMP\\|",
    ]
    assert all(a["request"]["method"] == "PUT" for a in answers)
    fasting, last_period = (a["resource"] for a in answers)
    patient, encounter = _one(mapped, "Patient"), _one(mapped, "Encounter")
    for answer in (fasting, last_period):
        assert answer["subject"] == {"reference": patient["fullUrl"]}
        assert answer["encounter"] == {"reference": encounter["fullUrl"]}
        assert answer["status"] == "final"  # OBX-11 O (order detail) and F alike
        assert "category" not in answer  # not a lab result
        assert answer["performer"][0]["reference"] == "Organization/QSWSY"
    assert fasting["identifier"] == [{"system": f"{SID}/QSWSY/obx", "value": "QS-ORD-0002|FAST|"}]
    assert fasting["code"]["text"] == "空腹"
    assert fasting["valueCodeableConcept"]["coding"] == [
        {"system": f"{V2}0136", "code": "Y", "display": "是"}
    ]
    assert fasting["effectiveDateTime"] == "2026-10-06T08:55:00+08:00"  # ORC-9: when asked
    assert last_period["code"]["text"] == "末次月经"
    assert last_period["valueDateTime"] == "2026-09-12"
    assert last_period["effectiveDateTime"] == "2026-10-06T08:52:00+08:00"  # OBX-14
    assert last_period["note"] == [{"text": "患者自述，周期规律"}]
    # The answers are listed in the Provenance like every other entry.
    prov = _one(mapped, "Provenance")["resource"]
    targets = {t["reference"] for t in prov["target"]}
    assert {a["fullUrl"] for a in answers} <= targets


def test_obr15_specimen_source_without_spm() -> None:
    mapped = _map("qswsy_orm_o01_aoe.hl7")
    order = _one(mapped, "ServiceRequest")
    specimen = _one(mapped, "Specimen")
    assert _refs(order["resource"], "specimen") == [specimen["fullUrl"]]
    assert specimen["request"] == {
        "method": "PUT",
        "url": f"Specimen?identifier={SID}/QSWSY/specimen|QS-ORD-0002-1",
    }
    res = specimen["resource"]
    assert res["type"] == {
        "coding": [{"system": f"{V2}0070", "code": "SER", "display": "血清"}],
        "text": "血清",
    }
    assert res["request"] == [{"reference": order["fullUrl"]}]
    assert res["subject"] == {"reference": _one(mapped, "Patient")["fullUrl"]}
    assert res["collection"] == {
        "collectedDateTime": "2026-10-06T08:50:00+08:00",  # OBR-7
        "bodySite": {
            "coding": [{"system": f"{V2}0163", "code": "LA", "display": "左臂"}],
            "text": "左臂",
        },
    }
    assert res["receivedTime"] == "2026-10-06T08:58:00+08:00"  # OBR-14
    assert res["note"] == [{"text": "静脉血"}]  # SPS-3 free text


def test_spm_wins_over_obr15_and_specimen_obx_are_not_answers() -> None:
    mapped = _map("qswsy_oml_o21_spm.hl7")
    (specimen,) = _entries(mapped, "Specimen")
    assert specimen["request"]["url"] == f"Specimen?identifier={SID}/QSWSY/specimen|QS-S-0003"
    assert specimen["resource"]["type"]["coding"][0]["code"] == "SER"  # SPM-4, not OBR-15 BLD
    order = _one(mapped, "ServiceRequest")["resource"]
    assert _refs(order, "specimen") == [specimen["fullUrl"]]
    # OBX 1 before the SPM is an answer; the OBX after it describes the specimen (the guide
    # maps it to nothing).
    (answer,) = _entries(mapped, "Observation")
    assert answer["resource"]["identifier"][0]["value"] == "QS-ORD-0003|FAST|"
    assert _refs(order, "supportingInfo") == [answer["fullUrl"]]


def test_result_with_obr15_links_the_specimen_like_an_spm() -> None:
    mapped = _map("xjyzx_oru_r01_obr15.hl7")
    specimen = _one(mapped, "Specimen")
    # Known by the order number in its placer's system: the clinic's order (above) and the
    # lab's result meet on one Specimen.
    order_specimen = _one(_map("qswsy_orm_o01_aoe.hl7"), "Specimen")
    assert specimen["request"]["url"] == order_specimen["request"]["url"]
    res = specimen["resource"]
    assert res["type"]["coding"][0]["code"] == "SER"
    assert res["receivedTime"] == "2026-10-06T09:30:00+08:00"
    report = _one(mapped, "DiagnosticReport")["resource"]
    assert _refs(report, "specimen") == [specimen["fullUrl"]]
    (obs,) = _entries(mapped, "Observation")
    assert obs["resource"]["specimen"] == {"reference": specimen["fullUrl"]}
    assert res["request"] == [{"reference": _one(mapped, "ServiceRequest")["fullUrl"]}]


def test_one_order_over_two_obr_lists_each_answer_once() -> None:
    from adapters.feeds.config import demo_community
    from adapters.hl7v2.messages import map_message
    from adapters.hl7v2.parse import parse_text
    from hub.fhir.validation import validate_resource

    text = "\r".join(
        [
            "MSH|^~\\&|HIS|QSWSY|LIS|XJYZX|20261008090000||OML^O21^OML_O21|QS-OML-0002|P|2.5.1",
            "PID|1||QS-004512^^^QSWSY^PI||欧阳娜娜||19920315|F",
            "ORC|NW|QS-ORD-0004^QSWSY",
            "OBR|1|QS-ORD-0004^QSWSY||HIV^HIV抗体^L",
            "OBR|2|QS-ORD-0004^QSWSY||TP^梅毒抗体^L",
            "OBX|1|ST|PREG^妊娠^L||否||||||O",
            "OBX|2|ED|CONSENT^知情同意书^L||^AP^PDF^Base64^JVBERi0=||||||F",
        ]
    )
    mapped = map_message(
        parse_text(text + "\r"),
        demo_community(),
        source_ref="r",
        received_at="2026-10-08T09:00:00+08:00",
    )
    for entry in mapped.bundle["entry"]:
        validate_resource(entry["resource"])
    order = _one(mapped, "ServiceRequest")["resource"]
    (answer,) = _entries(mapped, "Observation")
    assert answer["resource"]["valueString"] == "否"
    assert _refs(order, "supportingInfo") == [answer["fullUrl"]]
    # An ED value has no place on an R4 Observation: skipped, with a warning at OBX-5.
    (ed,) = [w for w in mapped.warnings if w.field_no == 5]
    assert (ed.segment, ed.sequence, ed.code, ed.severity) == ("OBX", 7, "102", "W")
