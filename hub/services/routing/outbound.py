"""FHIR → HL7 v2 for the regional centres and the members that order from them (pure).

An order goes to a centre's LIS/RIS as OML^O21 or ORM^O01 (whichever its Endpoint takes), its
result back to the ordering member as ORU^R01, all v2.5, built with hl7apy.  What is kept:

- PID: the patient's member record numbers (CX-4 the member, CX-5 MR) and resident ID
  (CX-5 NNCHN), name, birth date, sex, phone: what the inbound mapping reads, so the centre's
  echo of PID in its ORU files the result under the same Patient;
- PV1 (when the order names its visit): patient class and visit number;
- ORC/OBR: order control (NW, CA; RE in a result), the placer number with the ordering
  member as namespace (``QS-ORD-1^QSWSY``: the centre echoes it, and the hub finds the order by
  it), the filler number when known, order time, priority, ordering facility, the order's
  notes; OBR-4 the test in the receiver's own code where its ConceptMap has one (``L``), with
  LOINC or the community catalogue code beside it;
- SPM (OML) or OBR-15 (ORM) for the specimen; OBX with value, units, range, flags, status;
  the report's conclusion as NTE and its attached PDF as ED.

Text is escaped for the delimiters (hl7apy escapes only the repetition separator).  The bytes
are in the receiver's character set, named in MSH-18.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message, Segment

from adapters.feeds.config import Community, Member
from hub.services.routing.fields import (
    CHARSETS,
    V2_TABLE,
    Coder,
    authority,
    cx_list,
    ei,
    esc,
    number,
    ts,
)

VERSION = "2.5"
SECTIONS = f"{V2_TABLE}0074"  # diagnostic service sections (LAB, RAD ...)
_SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
_CLASS = {"AMB": "O", "IMP": "I", "EMER": "E", "PRENC": "P", "ACUTE": "I", "NONAC": "I"}
_PRIORITY = {"stat": "S", "asap": "A", "urgent": "A", "routine": "R"}
_REPORT_STATUS = {
    "registered": "I", "partial": "A", "preliminary": "P", "final": "F", "amended": "C",
    "corrected": "C", "appended": "C", "cancelled": "X", "entered-in-error": "X",
}  # fmt: skip
_OBS_STATUS = {
    "registered": "I", "preliminary": "P", "final": "F", "amended": "C", "corrected": "C",
    "cancelled": "X", "entered-in-error": "W", "unknown": "",
}  # fmt: skip


@dataclass(frozen=True)
class Addressing:
    """Who the message goes to, and its header values."""

    receiver: Member
    control_id: str
    at: datetime
    sending_application: str = "YGT_HUB"
    sending_facility: str = "YGT"

    @property
    def receiving_application(self) -> str:
        return self.receiver.applications[0] if self.receiver.applications else ""


def _message(structure: str, address: Addressing) -> Message:
    message = Message(structure, version=VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    msh = message.msh
    msh.msh_3 = esc(address.sending_application)
    msh.msh_4 = esc(address.sending_facility)
    msh.msh_5 = esc(address.receiving_application)
    msh.msh_6 = esc(address.receiver.code)
    msh.msh_7 = address.at.strftime("%Y%m%d%H%M%S%z")
    code, event = structure.split("_")
    msh.msh_9 = f"{code}^{event}^{structure}"
    msh.msh_10 = esc(address.control_id)
    msh.msh_11 = "P"
    msh.msh_12 = VERSION
    msh.msh_18 = CHARSETS.get(address.receiver.charset.upper(), CHARSETS["UTF-8"])[1]
    return message


def _encode(message: Message, receiver: Member) -> bytes:
    codec = CHARSETS.get(receiver.charset.upper(), CHARSETS["UTF-8"])[0]
    return (message.to_er7() + "\r").encode(codec)


def _repeat(segment: Segment, name: str, values: Iterable[str]) -> None:
    for value in values:
        if value:
            segment.add_field(name).value = value


def _pid(
    pid: Segment, patient: dict[str, Any] | None, community: Community, first: str | None
) -> None:
    pid.pid_1 = "1"
    if patient is None:
        return
    _repeat(pid, "pid_3", cx_list(patient, community, first))
    names = patient.get("name") or []
    if names:
        name = names[0]
        family, given = name.get("family") or "", "".join(name.get("given") or [])
        if family or given:
            pid.pid_5 = f"{esc(family)}^{esc(given)}"
        elif name.get("text"):
            pid.pid_5 = esc(name["text"])
    if birth := ts(patient.get("birthDate")):
        pid.pid_7 = birth
    if sex := _SEX.get(str(patient.get("gender") or "")):
        pid.pid_8 = sex
    phones = [t for t in patient.get("telecom") or [] if t.get("system") == "phone"]
    _repeat(pid, "pid_13", [f"^^PH^^^^^^^^^{esc(t['value'])}" for t in phones if t.get("value")])


def _pv1(pv1: Segment, encounter: dict[str, Any], community: Community) -> None:
    pv1.pv1_1 = "1"
    code = str((encounter.get("class") or {}).get("code") or "")
    pv1.pv1_2 = _CLASS.get(code, "U")
    for ident in encounter.get("identifier") or []:
        system, value = str(ident.get("system") or ""), str(ident.get("value") or "")
        if value and (member := authority(system, community, "visit")) is not None:
            pv1.pv1_19 = f"{esc(value)}^^^{member}^VN"
            break


def _orc(
    orc: Segment,
    control: str,
    request: dict[str, Any],
    community: Community,
    orderer: Member | None,
) -> None:
    identifiers = request.get("identifier") or []
    orc.orc_1 = control
    if placer := ei(identifiers, community, "placer"):
        orc.orc_2 = placer
    if filler := ei(identifiers, community, "filler"):
        orc.orc_3 = filler
    if priority := _PRIORITY.get(str(request.get("priority") or "")):
        orc.orc_7 = f"^^^^^{priority}"
    if authored := ts(request.get("authoredOn")):
        orc.orc_9 = authored
    if orderer is not None:
        orc.orc_21 = f"{esc(orderer.name)}^^^^^^^^^{orderer.code}"


def _obr(
    obr: Segment,
    request: dict[str, Any],
    coder: Coder,
    *,
    specimen_source: str = "",
) -> None:
    identifiers = request.get("identifier") or []
    community = coder.community
    obr.obr_1 = "1"
    if placer := ei(identifiers, community, "placer"):
        obr.obr_2 = placer
    if filler := ei(identifiers, community, "filler"):
        obr.obr_3 = filler
    obr.obr_4 = coder.cwe(request.get("code"))
    if specimen_source:
        obr.obr_15 = specimen_source


def _notes(group: Group, notes: Iterable[dict[str, Any]]) -> None:
    for i, note in enumerate((n for n in notes if n.get("text")), start=1):
        nte = group.add_segment("NTE")
        nte.nte_1 = str(i)
        nte.nte_3 = esc(note["text"])


def _collected(specimen: dict[str, Any]) -> str:
    collection = specimen.get("collection") or {}
    period = collection.get("collectedPeriod") or {}
    return ts(collection.get("collectedDateTime") or period.get("start"))


def _spm(spm: Segment, specimen: dict[str, Any], coder: Coder, set_id: int) -> None:
    spm.spm_1 = str(set_id)
    for ident in specimen.get("identifier") or []:
        member = authority(str(ident.get("system") or ""), coder.community, "specimen")
        if ident.get("value"):
            namespace = f"&{member}" if member else ""
            spm.spm_2 = f"{esc(ident['value'])}{namespace}"
            break
    if kind := coder.cwe(specimen.get("type")):
        spm.spm_4 = kind
    if collected := _collected(specimen):
        spm.spm_17 = collected
    if received := ts(specimen.get("receivedTime")):
        spm.spm_18 = received


def _specimen_source(specimens: list[dict[str, Any]], coder: Coder) -> str:
    """OBR-15 (SPS) for ORM: the first specimen's type, its CWE in subcomponents."""
    if not specimens:
        return ""
    kind = coder.cwe(specimens[0].get("type"))
    return kind.replace("^", "&")


# --- messages --------------------------------------------------------------------------------


def order_message(
    structure: str,
    control: str,
    request: dict[str, Any],
    *,
    patient: dict[str, Any] | None,
    encounter: dict[str, Any] | None,
    specimens: list[dict[str, Any]],
    orderer: Member | None,
    address: Addressing,
    community: Community,
) -> bytes:
    """An order (``control`` NW) or its cancel (CA) as OML^O21 or ORM^O01."""
    if structure not in ("OML_O21", "ORM_O01"):
        raise ValueError(f"{structure} is not an order message this hub builds")
    coder = Coder.for_receiver(community, address.receiver)
    message = _message(structure, address)
    prefix = structure
    patient_group = message.add_group(f"{prefix}_PATIENT")
    _pid(patient_group.pid, patient, community, orderer.code if orderer else None)
    if encounter is not None:
        visit = patient_group.add_group(f"{prefix}_PATIENT_VISIT")
        _pv1(visit.pv1, encounter, community)
    order = message.add_group(f"{prefix}_ORDER")
    _orc(order.orc, control, request, community, orderer)
    if structure == "OML_O21":
        detail = order.add_group("OML_O21_OBSERVATION_REQUEST")
        _obr(detail.obr, request, coder)
        if collected := next((c for s in specimens if (c := _collected(s))), ""):
            detail.obr.obr_7 = collected
        _notes(detail, request.get("note") or [])
        for i, specimen in enumerate(specimens, start=1):
            _spm(detail.add_group("OML_O21_SPECIMEN").spm, specimen, coder, i)
    else:
        detail = order.add_group("ORM_O01_ORDER_DETAIL")
        _obr(detail.obr, request, coder, specimen_source=_specimen_source(specimens, coder))
        if collected := next((c for s in specimens if (c := _collected(s))), ""):
            detail.obr.obr_7 = collected
        _notes(detail, request.get("note") or [])
    return _encode(message, address.receiver)


def _value(obx: Segment, observation: dict[str, Any], coder: Coder) -> None:
    """OBX-2 value type, OBX-5 value and OBX-6 units from value[x]."""
    if (quantity := observation.get("valueQuantity")) is not None:
        obx.obx_2 = "NM"
        if "value" in quantity:
            obx.obx_5 = number(quantity["value"])
        unit = quantity.get("code") or quantity.get("unit")
        if unit:
            system = "UCUM" if quantity.get("system") == "http://unitsofmeasure.org" else ""
            obx.obx_6 = "^".join(esc(p) for p in (unit, quantity.get("unit") or unit, system))
    elif (concept := observation.get("valueCodeableConcept")) is not None:
        obx.obx_2 = "CWE"
        obx.obx_5 = coder.cwe(concept)
    elif (text := observation.get("valueString")) is not None:
        lines = str(text).splitlines() or [""]
        obx.obx_2 = "TX" if len(lines) > 1 or len(str(text)) > 199 else "ST"
        _repeat(obx, "obx_5", [esc(line) or " " for line in lines])
    elif (integer := observation.get("valueInteger")) is not None:
        obx.obx_2 = "NM"
        obx.obx_5 = str(integer)
    elif (moment := observation.get("valueDateTime")) is not None:
        obx.obx_2 = "DTM"
        obx.obx_5 = ts(moment)
    elif (flag := observation.get("valueBoolean")) is not None:
        obx.obx_2 = "ST"
        obx.obx_5 = "Y" if flag else "N"


def _range(observation: dict[str, Any]) -> str:
    for found in observation.get("referenceRange") or []:
        if found.get("text"):
            return esc(found["text"])
        low = (found.get("low") or {}).get("value")
        high = (found.get("high") or {}).get("value")
        if low is not None and high is not None:
            return f"{number(low)}-{number(high)}"
        if low is not None:
            return f">{number(low)}"
        if high is not None:
            return f"<{number(high)}"
    return ""


def _obx(obx: Segment, observation: dict[str, Any], coder: Coder, set_id: int) -> None:
    obx.obx_1 = str(set_id)
    _value(obx, observation, coder)
    obx.obx_3 = coder.cwe(observation.get("code"))
    if reference := _range(observation):
        obx.obx_7 = reference
    flags = [
        str(c["code"])
        for concept in observation.get("interpretation") or []
        for c in concept.get("coding") or []
        if c.get("code")
    ]
    _repeat(obx, "obx_8", [esc(f) for f in flags])
    obx.obx_11 = _OBS_STATUS.get(str(observation.get("status") or ""), "F") or "F"
    if effective := ts(observation.get("effectiveDateTime")):
        obx.obx_14 = effective


def result_message(
    report: dict[str, Any],
    observations: list[dict[str, Any]],
    *,
    request: dict[str, Any] | None,
    patient: dict[str, Any] | None,
    encounter: dict[str, Any] | None,
    orderer: Member | None,
    address: Addressing,
    community: Community,
) -> bytes:
    """A report and its results as ORU^R01, for the member that ordered it."""
    coder = Coder.for_receiver(community, address.receiver)
    message = _message("ORU_R01", address)
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient_group = result.add_group("ORU_R01_PATIENT")
    _pid(patient_group.pid, patient, community, orderer.code if orderer else None)
    if encounter is not None:
        _pv1(patient_group.add_group("ORU_R01_VISIT").pv1, encounter, community)
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    ordered = request or {"identifier": []}
    _orc(order.orc, "RE", ordered, community, orderer)
    # The report's identifier is its filler number (the centre's), which the order lacks.
    identifiers = [*(ordered.get("identifier") or []), *(report.get("identifier") or [])]
    _obr(order.obr, {**ordered, "identifier": identifiers, "code": report.get("code")}, coder)
    if effective := ts(report.get("effectiveDateTime")):
        order.obr.obr_7 = effective
    if issued := ts(report.get("issued")):
        order.obr.obr_22 = issued
    for concept in report.get("category") or []:
        codings = concept.get("coding") or []
        section = next((c["code"] for c in codings if c.get("system") == SECTIONS), None)
        if section:
            order.obr.obr_24 = esc(section)
            break
    order.obr.obr_25 = _REPORT_STATUS.get(str(report.get("status") or ""), "F")
    if report.get("conclusion"):
        _notes(order, [{"text": line} for line in str(report["conclusion"]).splitlines()])
    set_id = 0
    for observation in observations:
        set_id += 1
        group = order.add_group("ORU_R01_OBSERVATION")
        _obx(group.obx, observation, coder, set_id)
        _notes(group, observation.get("note") or [])
    for form in report.get("presentedForm") or []:
        if not form.get("data"):
            continue
        set_id += 1
        group = order.add_group("ORU_R01_OBSERVATION")
        obx = group.obx
        obx.obx_1 = str(set_id)
        obx.obx_2 = "ED"
        obx.obx_3 = coder.cwe(report.get("code"))
        kind, _, subtype = str(form.get("contentType") or "application/pdf").partition("/")
        obx.obx_5 = f"^{esc(kind)}^{esc(subtype.upper())}^Base64^{form['data']}"
        obx.obx_11 = _REPORT_STATUS.get(str(report.get("status") or ""), "F")
    return _encode(message, address.receiver)
