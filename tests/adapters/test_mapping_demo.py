"""Golden assertions on the community's own messages (tests/adapters/messages/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from adapters.feeds.config import demo_community
from adapters.hl7v2.mapped import Mapped, MappingError
from adapters.hl7v2.messages import map_message
from adapters.hl7v2.parse import parse, parse_text
from hub.fhir.validation import validate_resource

MESSAGES = Path(__file__).resolve().parent / "messages"
MRN = "https://ygt.example.org/fhir/sid/XRMYY/mrn"
RESIDENT = "https://ygt.example.org/fhir/sid/resident-id"
LOINC = "http://loinc.org"


def _map(name: str) -> Mapped:
    message = parse((MESSAGES / name).read_bytes())
    mapped = map_message(
        message,
        demo_community(),
        source_ref=f"inbox/{name}",
        received_at="2026-10-01T08:30:00+08:00",
    )
    for entry in mapped.bundle["entry"]:
        validate_resource(entry["resource"])
    return mapped


def _entries(mapped: Mapped, rtype: str) -> list[dict[str, Any]]:
    return [e for e in mapped.bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _one(mapped: Mapped, rtype: str) -> dict[str, Any]:
    (entry,) = _entries(mapped, rtype)
    return entry


def _urls(mapped: Mapped) -> list[str]:
    return [
        e["request"].get("url", "") + e["request"].get("ifNoneExist", "")
        for e in mapped.bundle["entry"]
        if e["resource"]["resourceType"] != "Provenance"
    ]


def _resident(patient: dict[str, Any]) -> dict[str, Any]:
    (ident,) = [i for i in patient["identifier"] if i.get("system") == RESIDENT]
    return ident


@pytest.mark.parametrize("name", sorted(p.name for p in MESSAGES.glob("*.hl7")))
def test_demo_messages_map_or_refuse_cleanly(name: str) -> None:
    if "bad_nm" in name or "mdm" in name:
        with pytest.raises(MappingError):
            _map(name)
    else:
        assert _map(name).bundle["entry"]


def test_admission_patient_encounter_and_diagnosis() -> None:
    mapped = _map("xrmyy_adt_a01.hl7")
    assert mapped.patient_key == f"{MRN}|XR0001"
    patient = _one(mapped, "Patient")
    assert patient["request"] == {"method": "PUT", "url": f"Patient?identifier={MRN}|XR0001"}
    res = patient["resource"]
    assert res["name"] == [{"family": "张", "given": ["三"], "text": "张三"}]
    assert res["gender"] == "male" and res["birthDate"] == "1980-01-01"
    assert res["generalPractitioner"] == [
        {"reference": "Organization/QSWSY", "display": "青山镇卫生院"}
    ]
    assert res["managingOrganization"] == {"reference": "Organization/XRMYY"}
    (address,) = res["address"]
    assert address["extension"][0]["valueCode"] == "330521"
    assert _resident(res)["value"] == "330521198001010019"
    assert res["contact"][0]["relationship"][0]["coding"][0]["code"] == "SPS"
    encounter = _one(mapped, "Encounter")
    visit = "https://ygt.example.org/fhir/sid/XRMYY/visit"
    assert encounter["request"]["url"] == f"Encounter?identifier={visit}|V20261001001"
    enc = encounter["resource"]
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "IMP"
    assert enc["subject"]["reference"] == patient["fullUrl"]
    assert enc["period"] == {"start": "2026-10-01T08:00:00+08:00"}
    assert {p["type"][0]["coding"][0]["code"] for p in enc["participant"]} == {"ATND", "ADM"}
    assert enc["location"][0]["location"]["display"] == "心内科 301 12床"
    condition = _one(mapped, "Condition")
    assert enc["diagnosis"][0]["condition"]["reference"] == condition["fullUrl"]
    assert enc["diagnosis"][0]["use"]["coding"][0]["code"] == "AD"
    assert unquote(condition["request"]["url"]) == (
        "Condition?identifier=https://ygt.example.org/fhir/sid/XRMYY/diagnosis"
        "|V20261001001\\|I20.0\\|A"
    )
    practitioners = _entries(mapped, "Practitioner")
    assert [p["request"]["method"] for p in practitioners] == ["POST", "POST"]
    assert practitioners[0]["request"]["ifNoneExist"] == (
        "identifier=https://ygt.example.org/fhir/sid/XRMYY/practitioner|D1001"
    )


def test_transfer_and_discharge_converge_on_the_admission() -> None:
    admit, transfer, discharge = (_map(f"xrmyy_adt_{e}.hl7") for e in ("a01", "a02", "a03"))
    for rtype in ("Patient", "Encounter"):
        urls = {_one(m, rtype)["request"]["url"] for m in (admit, transfer, discharge)}
        assert len(urls) == 1
    moved = _one(transfer, "Encounter")["resource"]["location"]
    assert [(loc["location"]["display"], loc["status"]) for loc in moved] == [
        ("ICU 1 3", "active"),
        ("心内科 301 12床", "completed"),
    ]
    enc = _one(discharge, "Encounter")["resource"]
    assert enc["status"] == "finished"
    assert enc["period"]["end"] == "2026-10-10T14:30:00+08:00"
    assert enc["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "1"
    uses = [d["use"]["coding"][0]["code"] for d in enc["diagnosis"]]
    assert uses == ["DD", "DD"] and [d["rank"] for d in enc["diagnosis"]] == [1, 2]
    procedure = _one(discharge, "Procedure")
    assert procedure["resource"]["performedDateTime"] == "2026-10-03T11:00:00+08:00"
    assert procedure["request"]["method"] == "PUT"


def test_resident_id_from_pid19_equals_the_one_from_pid3() -> None:
    from_pid3 = _resident(_one(_map("xrmyy_adt_a01.hl7"), "Patient")["resource"])
    from_pid19 = _resident(_one(_map("xjyzx_oru_cbc.hl7"), "Patient")["resource"])
    assert from_pid3 == from_pid19
    assert from_pid3["type"]["coding"][0]["code"] == "NNCHN"


def test_gb18030_order_with_compound_surname_and_pid19() -> None:
    mapped = _map("qswsy_orm_o01_gb18030.hl7")
    patient = _one(mapped, "Patient")
    assert patient["request"]["method"] == "POST"  # orders never overwrite the ADT's Patient
    res = patient["resource"]
    assert res["name"][0]["family"] == "欧阳" and res["name"][0]["given"] == ["娜娜"]
    assert _resident(res)["value"] == "330521199203150022"
    order = _one(mapped, "ServiceRequest")
    placer = "https://ygt.example.org/fhir/sid/QSWSY/placer"
    assert order["request"] == {
        "method": "PUT",
        "url": f"ServiceRequest?identifier={placer}|QS-ORD-0001",
    }
    req = order["resource"]
    assert req["status"] == "active" and req["intent"] == "order" and req["priority"] == "stat"
    codes = {(c["system"], c["code"]) for c in req["code"]["coding"]}
    assert (LOINC, "58410-2") in codes
    assert ("https://ygt.example.org/fhir/CodeSystem/local/QSWSY", "XCG") in codes
    assert req["performer"][0]["reference"] == "Organization/XJYZX"
    assert req["note"] == [{"text": "空腹采血"}]


def test_lab_result_codes_ranges_flags_and_unmapped_code() -> None:
    mapped = _map("xjyzx_oru_cbc.hl7")
    assert mapped.patient_key == f"{MRN}|XR0001"  # CX-4 XRMYY: the lead hospital's MRN
    assert mapped.unmapped_codes == ["XJYZX|MPV"]
    assert [w.severity for w in mapped.warnings] == ["W"]
    report = _one(mapped, "DiagnosticReport")
    rep = report["resource"]
    assert rep["status"] == "final" and rep["category"][0]["coding"][0]["code"] == "LAB"
    assert (LOINC, "58410-2") in {(c["system"], c["code"]) for c in rep["code"]["coding"]}
    assert rep["issued"] == "2026-10-02T10:25:00+08:00"
    assert rep["conclusion"] == "标本轻度溶血，结果仅供参考"
    order = _one(mapped, "ServiceRequest")
    assert order["request"]["method"] == "POST"
    assert rep["basedOn"] == [{"reference": order["fullUrl"]}]
    observations = {
        e["resource"]["code"]["coding"][0]["code"]: e["resource"]
        for e in _entries(mapped, "Observation")
    }
    assert [r["reference"] for r in rep["result"]] == [
        e["fullUrl"] for e in _entries(mapped, "Observation")
    ]
    wbc = observations["WBC"]
    assert wbc["valueQuantity"] == {
        "value": 11.2,
        "unit": "10*9/L",
        "system": "http://unitsofmeasure.org",
        "code": "10*9/L",
    }
    assert wbc["referenceRange"][0]["low"]["value"] == 3.5
    assert wbc["referenceRange"][0]["high"]["value"] == 9.5
    assert wbc["interpretation"][0]["coding"][0]["code"] == "H"
    assert observations["PLT"]["interpretation"][0]["coding"][0]["code"] == "L"
    assert observations["PLT"]["note"] == [{"text": "已复查"}]
    assert [c["code"] for c in observations["MPV"]["code"]["coding"]] == ["MPV"]
    encounter = _one(mapped, "Encounter")
    assert encounter["request"]["ifNoneExist"].endswith("/XRMYY/visit|V20261001001")
    assert encounter["resource"]["serviceProvider"] == {"reference": "Organization/XRMYY"}


def test_correction_rewrites_the_same_resources() -> None:
    original, corrected = _map("xjyzx_oru_cbc.hl7"), _map("xjyzx_oru_cbc_corrected.hl7")
    assert _urls(original) == _urls(corrected)
    assert _one(corrected, "DiagnosticReport")["resource"]["status"] == "corrected"
    wbc = _entries(corrected, "Observation")[0]["resource"]
    assert wbc["status"] == "corrected" and wbc["valueQuantity"]["value"] == 10.8
    activity = _one(corrected, "Provenance")["resource"]["activity"]["coding"][0]["code"]
    assert activity == "UPDATE"


def test_imaging_report_text() -> None:
    mapped = _map("xyxzx_oru_chest_xray.hl7")
    rep = _one(mapped, "DiagnosticReport")["resource"]
    assert rep["category"][0]["coding"][0]["code"] == "RAD"
    assert (LOINC, "36643-5") in {(c["system"], c["code"]) for c in rep["code"]["coding"]}
    texts = [e["resource"]["valueString"] for e in _entries(mapped, "Observation")]
    assert texts[0] == "检查所见：\n双肺纹理清晰，未见明显实质性病变。\n心影大小形态正常。"


def test_provenance_points_back_to_the_message() -> None:
    mapped = _map("xrmyy_adt_a01.hl7")
    prov = _one(mapped, "Provenance")["resource"]
    assert prov["recorded"] == "2026-10-01T08:30:00+08:00"
    assert prov["agent"][0]["who"]["reference"] == "Organization/XRMYY"
    what = prov["entity"][0]["what"]
    assert what["identifier"]["value"] == "inbox/xrmyy_adt_a01.hl7"
    assert what["display"] == "ADT^A01 XR-ADT-0001"


def test_non_numeric_nm_is_a_data_type_error_at_obx5() -> None:
    with pytest.raises(MappingError) as caught:
        _map("xjyzx_oru_bad_nm.hl7")
    err = caught.value
    assert (err.segment, err.field_no, err.code, err.reject) == ("OBX", 5, "102", False)
    assert err.sequence == 5  # the OBX is the message's fifth segment


def test_unsupported_message_type_is_rejected() -> None:
    with pytest.raises(MappingError) as caught:
        _map("xrmyy_mdm_t02.hl7")
    assert caught.value.code == "200" and caught.value.reject is True


def _text(*segments: str) -> str:
    return "\r".join(segments) + "\r"


def test_unknown_sender_and_unsupported_event_are_rejected() -> None:
    community = demo_community()
    stranger = parse_text(
        _text("MSH|^~\\&|HIS|NOWHERE|YGT_HUB|YGT|20261001||ADT^A01|X1|P|2.4", "PID|1||1")
    )
    with pytest.raises(MappingError) as caught:
        map_message(stranger, community, source_ref="r", received_at="2026-10-01T00:00:00Z")
    assert (caught.value.code, caught.value.field_no, caught.value.reject) == ("204", 4, True)
    swap = parse_text(
        _text("MSH|^~\\&|HIS|XRMYY|YGT_HUB|YGT|20261001||ADT^A17|X2|P|2.4", "PID|1||1")
    )
    with pytest.raises(MappingError) as caught:
        map_message(swap, community, source_ref="r", received_at="2026-10-01T00:00:00Z")
    assert caught.value.code == "201" and caught.value.reject is True


def test_missing_pid3_and_bad_date_name_their_field() -> None:
    community = demo_community()
    no_id = parse_text(
        _text("MSH|^~\\&|HIS|XRMYY|YGT_HUB|YGT|20261001||ADT^A01|X3|P|2.4", "PID|1||||张三")
    )
    with pytest.raises(MappingError) as caught:
        map_message(no_id, community, source_ref="r", received_at="2026-10-01T00:00:00Z")
    assert (caught.value.segment, caught.value.field_no, caught.value.code) == ("PID", 3, "101")
    bad_date = parse_text(
        _text(
            "MSH|^~\\&|HIS|XRMYY|YGT_HUB|YGT|20261001||ADT^A28|X4|P|2.4",
            "PID|1||XR9^^^XRMYY^MR||李雷||19800230|M",
        )
    )
    with pytest.raises(MappingError) as caught:
        map_message(bad_date, community, source_ref="r", received_at="2026-10-01T00:00:00Z")
    assert (caught.value.segment, caught.value.field_no, caught.value.code) == ("PID", 7, "102")


def test_merge_links_prior_and_survivor() -> None:
    message = parse_text(
        _text(
            "MSH|^~\\&|HIS|XRMYY|YGT_HUB|YGT|20261011||ADT^A40^ADT_A39|X5|P|2.5.1",
            "EVN|A40|20261011",
            "PID|1||XR0001^^^XRMYY^MR||张三||19800101|M",
            "MRG|XR0999^^^XRMYY^MR||||||张三",
        )
    )
    mapped = map_message(
        message, demo_community(), source_ref="r", received_at="2026-10-11T00:00:00+08:00"
    )
    survivor, prior = _entries(mapped, "Patient")
    assert prior["request"]["url"] == f"Patient?identifier={MRN}|XR0999"
    assert prior["resource"]["active"] is False
    assert prior["resource"]["link"] == [
        {"other": {"reference": survivor["fullUrl"]}, "type": "replaced-by"}
    ]
    assert survivor["resource"]["link"] == [
        {"other": {"reference": prior["fullUrl"]}, "type": "replaces"}
    ]
    assert mapped.patient_key == f"{MRN}|XR0001"
    for entry in mapped.bundle["entry"]:
        validate_resource(entry["resource"])


def test_cancel_admit_and_cancel_discharge() -> None:
    base = (MESSAGES / "xrmyy_adt_a03.hl7").read_text(encoding="utf-8")
    cancel_discharge = base.replace("ADT^A03^ADT_A03", "ADT^A13^ADT_A01")
    mapped = map_message(
        parse_text(cancel_discharge),
        demo_community(),
        source_ref="r",
        received_at="2026-10-11T00:00:00+08:00",
    )
    enc = _one(mapped, "Encounter")["resource"]
    assert enc["status"] == "in-progress" and "end" not in enc["period"]
    cancel_admit = base.replace("ADT^A03^ADT_A03", "ADT^A11^ADT_A09")
    mapped = map_message(
        parse_text(cancel_admit),
        demo_community(),
        source_ref="r",
        received_at="2026-10-11T00:00:00+08:00",
    )
    assert _one(mapped, "Encounter")["resource"]["status"] == "cancelled"


def test_chinese_names_and_compound_surnames() -> None:
    from adapters.hl7v2.datatypes import split_chinese_name, xpn

    assert split_chinese_name("欧阳娜娜") == ("欧阳", "娜娜")
    assert split_chinese_name("诸葛亮") == ("诸葛", "亮")
    assert split_chinese_name("张 三") == ("张", "三")
    pid = parse_text(
        _text("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4", "PID|1||1||王^小明~Smith^John")
    ).first("PID")
    assert pid is not None
    assert xpn(pid, 5) == {"family": "王", "given": ["小明"], "text": "王小明"}
    assert xpn(pid, 5, 1) == {"family": "Smith", "given": ["John"], "text": "John Smith"}


def test_a_restricted_member_refuses_other_sending_applications() -> None:
    community = demo_community()
    assert community.members["XJYZX"].restrict_applications
    text = (
        "MSH|^~\\&|HIS|XJYZX|YGT_HUB|YGT|20261002103000+0800||ORU^R01^ORU_R01|X1|P|2.5.1\r"
        "PID|1||1^^^XRMYY^MR\r"
    )
    with pytest.raises(MappingError) as err:
        map_message(parse_text(text), community, source_ref="x", received_at="2026-10-02T00:00:00Z")
    assert err.value.reject and err.value.field_no == 3


def _patient_identifiers(pid: str) -> tuple[list[dict[str, Any]], Mapped]:
    text = (
        "MSH|^~\\&|HIS|QSWSY|YGT_HUB|YGT|20261002103000+0800||ADT^A28^ADT_A05|R1|P|2.3.1\r"
        + pid
        + "\r"
    )
    mapped = map_message(
        parse_text(text), demo_community(), source_ref="x", received_at="2026-10-02T00:00:00Z"
    )
    [patient] = [
        e["resource"] for e in mapped.bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    ]
    return patient["identifier"], mapped


def test_a_legacy_15_digit_resident_id_is_the_same_identifier_as_its_18_digit_form() -> None:
    idents, mapped = _patient_identifiers(
        "PID|1||QS004512^^^QSWSY^MR~11010519491231002X^^^^NNCHN||王^芳||19491231|F"
        "||||||||||110105491231002"
    )
    resident = [i for i in idents if i.get("system", "").endswith("/resident-id")]
    assert [i["value"] for i in resident] == ["11010519491231002X"]
    assert not mapped.warnings


def test_an_invalid_resident_id_is_kept_flagged_and_warned() -> None:
    idents, mapped = _patient_identifiers(
        "PID|1||QS004513^^^QSWSY^MR~110105194912310021^^^^NNCHN||王^芳||19491231|F"
    )
    [resident] = [i for i in idents if i.get("system", "").endswith("/resident-id")]
    assert resident["value"] == "110105194912310021"
    assert resident["extension"][0]["valueCode"] == "check-digit"
    assert [w.severity for w in mapped.warnings] == ["W"]
    validate_resource({"resourceType": "Patient", "identifier": idents})
