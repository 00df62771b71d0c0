"""FHIR → HL7 v2 for the centres and the orderers (pure): what is kept, how it is escaped, and
that the centre's echo maps back to the same patient and order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hl7apy.parser import parse_message

from adapters.feeds.config import demo_community
from adapters.hl7v2.messages import map_message
from adapters.hl7v2.parse import parse
from hub.services.routing.outbound import Addressing, order_message, result_message

CST = timezone(timedelta(hours=8))
AT = datetime(2026, 10, 22, 9, 1, tzinfo=CST)
SID = "https://ygt.example.org/fhir/sid"
COMMUNITY = demo_community()

REQUEST: dict[str, Any] = {
    "resourceType": "ServiceRequest",
    "identifier": [{"system": f"{SID}/QSWSY/placer", "value": "QS-ORD-1"}],
    "status": "active",
    "intent": "order",
    "priority": "stat",
    "code": {
        "coding": [
            {"system": "https://ygt.example.org/fhir/CodeSystem/local/QSWSY", "code": "XCG"},
            {"system": "http://loinc.org", "code": "58410-2"},
        ],
        "text": "血常规",
    },
    "authoredOn": "2026-10-22T09:00:00+08:00",
    "note": [{"text": "空腹|采血^&~\\注意"}],
}
PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "identifier": [
        {"system": f"{SID}/resident-id", "value": "330521199203150022"},
        {"system": f"{SID}/XRMYY/mrn", "value": "XR-77"},
        {"system": f"{SID}/QSWSY/mrn", "value": "QS9"},
    ],
    "name": [{"family": "欧阳", "given": ["娜娜"]}],
    "gender": "female",
    "birthDate": "1992-03-15",
    "telecom": [{"system": "phone", "value": "13800000000"}],
}
ENCOUNTER = {
    "resourceType": "Encounter",
    "class": {"code": "AMB"},
    "identifier": [{"system": f"{SID}/QSWSY/visit", "value": "V1"}],
}
SPECIMEN = {
    "resourceType": "Specimen",
    "identifier": [{"system": f"{SID}/QSWSY/specimen", "value": "S1"}],
    "type": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v2-0487",
                "code": "BLD",
                "display": "全血",
            }
        ]
    },
    "collection": {"collectedDateTime": "2026-10-22T08:50:00+08:00"},
}


def order(structure: str, control: str = "NW", receiver: str = "XJYZX") -> bytes:
    return order_message(
        structure, control, REQUEST, patient=PATIENT, encounter=ENCOUNTER,
        specimens=[SPECIMEN], orderer=COMMUNITY.members["QSWSY"],
        address=Addressing(COMMUNITY.members[receiver], "HUB-1", AT), community=COMMUNITY,
    )  # fmt: skip


@pytest.mark.parametrize("structure", ["OML_O21", "ORM_O01"])
def test_an_order_keeps_patient_visit_placer_number_and_test(structure: str) -> None:
    message = parse(order(structure))
    assert message.message_type == (*structure.split("_"), structure)
    assert (message.msh.value(5), message.msh.value(6), message.control_id) == (
        "LIS", "XJYZX", "HUB-1",
    )  # fmt: skip
    pid = message.first("PID")
    assert pid is not None
    # The orderer's record number first (the patient's key for it), then others, resident ID.
    assert [(pid.value(3, 1, rep=r), pid.value(3, 4, rep=r), pid.value(3, 5, rep=r))
            for r in range(3)] == [("QS9", "QSWSY", "MR"), ("XR-77", "XRMYY", "MR"),
                                   ("330521199203150022", "", "NNCHN")]  # fmt: skip
    assert (pid.value(5), pid.value(5, 2), pid.value(7), pid.value(8)) == (
        "欧阳", "娜娜", "19920315", "F",
    )  # fmt: skip
    pv1 = message.first("PV1")
    assert pv1 is not None and (pv1.value(2), pv1.value(19), pv1.value(19, 4)) == (
        "O", "V1", "QSWSY",
    )  # fmt: skip
    orc, obr = message.first("ORC"), message.first("OBR")
    assert orc is not None and obr is not None
    assert (orc.value(1), orc.value(2), orc.value(2, 2), orc.value(7, 6)) == (
        "NW", "QS-ORD-1", "QSWSY", "S",
    )  # fmt: skip
    assert orc.value(21, 10) == "QSWSY"
    # The lab centre's own code (its ConceptMap) first, LOINC as the alternate.
    assert [obr.value(4, i) for i in (1, 3, 4, 6)] == ["CBC", "L", "58410-2", "LN"]
    nte = message.first("NTE")
    assert nte is not None and nte.value(3) == "空腹|采血^&~\\注意"  # escaped, read back whole
    if structure == "OML_O21":
        spm = message.first("SPM")
        assert spm is not None and (spm.value(2), spm.value(2, sub=2), spm.value(4)) == (
            "S1", "QSWSY", "BLD",
        )  # fmt: skip
    else:
        assert obr.value(15) == "BLD"  # OBR-15 specimen source in ORM


@pytest.mark.parametrize("structure", ["OML_O21", "ORM_O01"])
def test_hl7apy_reads_what_it_built(structure: str) -> None:
    text = order(structure).decode("utf-8").replace("\r", "\n").strip().replace("\n", "\r")
    message = parse_message(text, find_groups=True)
    assert message.msh.msh_9.to_er7() == f"{structure.replace('_', '^')}^{structure}"


def test_a_cancel_is_orc_ca() -> None:
    orc = parse(order("OML_O21", control="CA")).first("ORC")
    assert orc is not None and (orc.value(1), orc.value(2)) == ("CA", "QS-ORD-1")


def test_an_unknown_structure_is_refused() -> None:
    with pytest.raises(ValueError):
        order("OMG_O19")


REPORT: dict[str, Any] = {
    "resourceType": "DiagnosticReport",
    "identifier": [{"system": f"{SID}/XJYZX/filler", "value": "F1"}],
    "status": "corrected",
    "category": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
    ],
    "code": {
        "coding": [
            {"system": "https://ygt.example.org/fhir/CodeSystem/local/XJYZX", "code": "CBC"},
            {"system": "http://loinc.org", "code": "58410-2"},
        ]
    },
    "performer": [{"reference": "Organization/XJYZX"}],
    "effectiveDateTime": "2026-10-22T10:00:00+08:00",
    "issued": "2026-10-22T11:00:00.123+08:00",
    "conclusion": "白细胞正常\n建议复查",
    "presentedForm": [{"contentType": "application/pdf", "data": "JVBERi0xLjQK"}],
}
OBSERVATIONS: list[dict[str, Any]] = [
    {
        "resourceType": "Observation",
        "status": "corrected",
        "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}], "text": "白细胞"},
        "valueQuantity": {
            "value": 6.5,
            "unit": "10*9/L",
            "system": "http://unitsofmeasure.org",
            "code": "10*9/L",
        },
        "referenceRange": [{"low": {"value": 3.5}, "high": {"value": 9.5}}],
        "interpretation": [{"coding": [{"code": "N"}]}],
        "note": [{"text": "复测"}],
    },
    {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "镜检"},
        "valueString": "未见异常\n形态正常",
    },
]


def result(receiver: str = "QSWSY") -> bytes:
    return result_message(
        REPORT, OBSERVATIONS, request=REQUEST, patient=PATIENT, encounter=ENCOUNTER,
        orderer=COMMUNITY.members["QSWSY"],
        address=Addressing(COMMUNITY.members[receiver], "HUB-2", AT), community=COMMUNITY,
    )  # fmt: skip


def test_a_result_for_the_orderer_in_its_character_set_and_codes() -> None:
    raw = result()
    assert "欧阳".encode("gb18030") in raw  # QSWSY's HIS reads GB 18030
    message = parse(raw)
    assert message.msh.value(18) == "GB 18030-2000" and message.msh.value(6) == "QSWSY"
    obr = message.first("OBR")
    assert obr is not None
    assert (obr.value(2), obr.value(2, 2), obr.value(3), obr.value(3, 2)) == (
        "QS-ORD-1", "QSWSY", "F1", "XJYZX",
    )  # fmt: skip
    assert (obr.value(4), obr.value(24), obr.value(25)) == ("XCG", "LAB", "C")  # its own code
    assert [n.value(3) for n in message.all("NTE")][:2] == ["白细胞正常", "建议复查"]
    first, text, pdf = message.all("OBX")
    assert (first.value(2), first.value(3), first.value(5), first.value(6)) == (
        "NM", "BXB", "6.5", "10*9/L",
    )  # fmt: skip
    assert (first.value(7), first.value(8), first.value(11)) == ("3.5-9.5", "N", "C")
    assert (text.value(2), text.repetitions(5)) == ("TX", ["未见异常", "形态正常"])
    assert (pdf.value(2), pdf.value(5, 5)) == ("ED", "JVBERi0xLjQK")


def test_the_hub_maps_the_echo_back_to_the_same_patient_and_order() -> None:
    # What the township HIS gets is what the hub itself would read as the same order: PID
    # under QSWSY's record number, the placer number in QSWSY's namespace.
    mapped = map_message(
        parse(result()), COMMUNITY, source_ref="test", received_at="2026-10-22T11:00:00+08:00",
        member_override=COMMUNITY.members["XJYZX"],
    )  # fmt: skip
    conditions = [e["request"].get("ifNoneExist") for e in mapped.bundle["entry"]]
    assert mapped.patient_key == f"{SID}/QSWSY/mrn|QS9"
    assert f"identifier={SID}/QSWSY/placer|QS-ORD-1" in conditions  # finds the routed order
    [report] = [e["resource"] for e in mapped.bundle["entry"]
                if e["resource"]["resourceType"] == "DiagnosticReport"]  # fmt: skip
    assert report["status"] == "corrected" and report["basedOn"]
