"""PV1 (+ PV2) → Encounter, per the guide's PV1[Encounter] and PV2[Encounter] maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.mapped import Context
from adapters.hl7v2.parse import Segment
from adapters.hl7v2.segments.patient import PatientRef
from adapters.hl7v2.segments.people import location, practitioner

_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
# PatientClass[EncounterClass]; classes without a v3 code keep their table 0004 code.
_CLASS = {"E": "EMER", "I": "IMP", "O": "AMB", "P": "PRENC"}
_PRIORITY = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
# AdmissionType: table 0007 codes go to Encounter.type as they are (v2-0007).
_ADMISSION_TYPES = {
    "A": "Accident", "E": "Emergency", "L": "Labor and Delivery", "R": "Routine",
    "N": "Newborn (Birth in healthcare facility)", "U": "Urgent", "C": "Elective",
}  # fmt: skip
# EncounterPriority: PV2-25 visit priority (table 0217) → v3-ActPriority.
_VISIT_PRIORITY = {"1": ("EM", "emergency"), "2": ("UR", "urgent"), "3": ("EL", "elective")}
# Departure: the guide maps PV1-4 to Encounter.type only; the admission types that name a
# priority give Encounter.priority too when PV2-25 is empty (as it is from most county HIS).
_ADMISSION_PRIORITY = {
    "E": ("EM", "emergency"), "U": ("UR", "urgent"), "C": ("EL", "elective"),
    "R": ("R", "routine"),
}  # fmt: skip
# ADT event → Encounter.status.  The guide derives status from PV1-2 only (in-progress);
# the trigger event says more: A03 ends the stay, A05 plans it, A11 cancels the admission
# ("cancelled": it ended before it began; the record is kept, not "entered-in-error").
EVENT_STATUS = {
    "A01": "in-progress", "A02": "in-progress", "A03": "finished", "A04": "in-progress",
    "A05": "planned", "A06": "in-progress", "A07": "in-progress", "A08": "in-progress",
    "A09": "in-progress", "A10": "in-progress", "A11": "cancelled", "A12": "in-progress",
    "A13": "in-progress",
}  # fmt: skip


@dataclass
class EncounterRef:
    full_url: str
    visit: str  # the visit number (identifier value) the Encounter is known by
    resource: dict[str, Any]


def _class(pv1: Segment) -> dict[str, str]:
    code = pv1.value(2).strip().upper()
    if code in _CLASS:
        return {"system": _ACT, "code": _CLASS[code]}
    if code:
        return {"system": f"{dt.V2}0004", "code": code}
    return {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK"}


def _visit(ctx: Context, pv1: Segment, patient: PatientRef, adt: bool) -> tuple[str, str] | None:
    value = pv1.value(19).strip()
    system = ctx.community.system_for_authority(pv1.value(19, 4).strip(), "visit")
    system = system or ctx.sender.system("visit")
    if value:
        return system, value
    admitted = pv1.value(44).strip()
    if adt and admitted:
        # No visit number: the stay is known by the patient's MRN and the admission time, which
        # every later ADT of the same stay repeats, so they still converge on one Encounter.
        return system, f"{patient.value}-{admitted}"
    return None


def _admission_type(ctx: Context, pv1: Segment) -> dict[str, Any] | None:
    """PV1-4 → Encounter.type (AdmissionType): a table 0007 code sent without a coding system
    is the table's; other codes stay the sender's local ones."""
    concept = ctx.cwe(pv1, 4)
    if concept is None:
        return None
    first = concept.get("coding", [{}])[0]
    code = first.get("code", "").upper()
    if first.get("system") == ctx.sender.local_code_system and code in _ADMISSION_TYPES:
        first["system"], first["code"] = f"{dt.V2}0007", code
        first.setdefault("display", _ADMISSION_TYPES[code])
    return concept


def _priority(ctx: Context, pv1: Segment, pv2: Segment | None) -> dict[str, Any] | None:
    """PV2-25 visit priority (EncounterPriority), else what PV1-4's admission type implies."""
    if pv2 is not None and (code := pv2.value(25).strip()):
        if code in _VISIT_PRIORITY:
            return dt.coded(_PRIORITY, *_VISIT_PRIORITY[code])
        return ctx.cwe(pv2, 25)
    admission = pv1.value(4).strip().upper()
    if admission in _ADMISSION_PRIORITY and not pv1.value(4, 3).strip():
        return dt.coded(_PRIORITY, *_ADMISSION_PRIORITY[admission])
    return None


def _participants(ctx: Context, pv1: Segment) -> list[dict[str, Any]]:
    out = []
    for n, code in ((7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")):
        for rep in range(len(pv1.repetitions(n))):
            who = practitioner(ctx, pv1, n, rep)
            if who:
                out.append(
                    {
                        "type": [dt.coded(_PARTICIPATION, code)],
                        "individual": who,
                    }
                )
    return out


def _hospitalization(ctx: Context, pv1: Segment) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pre := pv1.value(5).strip():
        out["preAdmissionIdentifier"] = {"system": ctx.sender.system("visit"), "value": pre}
    if source := pv1.value(14).strip():
        out["admitSource"] = dt.coded(f"{dt.V2}0023", source)
    if pv1.value(13).strip().upper() == "R":
        out["reAdmission"] = dt.coded(f"{dt.V2}0092", "R")
    # Discharge disposition: the guide's map has no v2 codes on its left side, so the sender's
    # table 0112 code is kept as it is (Chinese HIS send WS 445 离院方式 codes here).
    if disposition := pv1.value(36).strip():
        out["dischargeDisposition"] = dt.coded(f"{dt.V2}0112", disposition)
    return out


def map_encounter(
    ctx: Context, pv1: Segment | None, patient: PatientRef, *, event: str, adt: bool
) -> EncounterRef | None:
    """ADT replaces the Encounter (PUT); orders and results only create it when missing."""
    if pv1 is None:
        return None
    visit = _visit(ctx, pv1, patient, adt)
    if visit is None:
        return None
    system, value = visit
    status = EVENT_STATUS.get(event, "in-progress") if adt else "unknown"
    if adt and event == "A08" and pv1.value(45).strip():
        status = "finished"
    if adt and pv1.value(2).strip().upper() == "P" and event not in ("A03", "A11"):
        status = "planned"
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"use": "official", "system": system, "value": value}],
        "status": status,
        "class": _class(pv1),
    }
    if admission_type := _admission_type(ctx, pv1):
        enc["type"] = [admission_type]
    pv2 = ctx.message.first("PV2")
    if priority := _priority(ctx, pv1, pv2):
        enc["priority"] = priority
    enc["subject"] = {"reference": patient.full_url}
    if service := ctx.cwe(pv1, 10):
        enc["serviceType"] = service
    if participants := _participants(ctx, pv1):
        enc["participant"] = participants
    period: dict[str, str] = {}
    if start := ctx.ts(pv1, 44):
        period["start"] = start
    end = ctx.ts(pv1, 45)
    if end and event not in ("A13", "A11") and status == "finished":
        period["end"] = end  # A13 cancels the discharge: the stay has no end again
    if period:
        enc["period"] = period
    locations = []
    if (here := location(ctx, pv1, 3)) is not None:
        done = status in ("finished", "cancelled")
        locations.append({"location": here, "status": "completed" if done else "active"})
    # A02: the prior location (PV1-6) is where the patient was.  A12 cancels the transfer:
    # PV1-3 is where the patient is again and PV1-6 the place never really stayed in, so it
    # is left out and the PUT puts the Encounter back where it was.
    if event == "A02" and (before := location(ctx, pv1, 6)) is not None:
        locations.append({"location": before, "status": "completed"})
    if locations:
        enc["location"] = locations
    if hospitalization := _hospitalization(ctx, pv1):
        enc["hospitalization"] = hospitalization
    if pv2 is not None and (reason := ctx.cwe(pv2, 3)):
        enc["reasonCode"] = [reason]
    # The visit belongs to the member that numbered it (PV1-19 CX-4), not to a lab reporting on it.
    owner = ctx.community.member(pv1.value(19, 4).strip()) or ctx.sender
    enc["serviceProvider"] = {"reference": owner.reference}
    url = ctx.write(enc, system, value, update=adt)
    return EncounterRef(url, value, enc)
