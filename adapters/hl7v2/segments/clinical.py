"""DG1 → Condition (+ Encounter.diagnosis) and PR1 → Procedure, per the guide's DG1[Condition],
DG1[Encounter] and PR1[Procedure] maps."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.errors import REQUIRED_FIELD_MISSING
from adapters.hl7v2.mapped import Context
from adapters.hl7v2.segments.encounter import EncounterRef
from adapters.hl7v2.segments.patient import PatientRef
from adapters.hl7v2.segments.people import practitioner

_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
# DiagnosisType → diagnosis-role.  The guide maps only A (admitting → AD).  F (final) → DD:
# Chinese HIS send final diagnoses with the discharge, and the monthly feedback reads them as
# discharge diagnoses.  W (working) has no role in the value set: no use is given.
_USE = {"A": "AD", "F": "DD"}


def _context_key(encounter: EncounterRef | None, patient: PatientRef) -> str:
    # Diagnoses and procedures belong to a stay; without one, to the patient's record.
    return encounter.visit if encounter else f"mrn:{patient.value}"


def map_diagnoses(ctx: Context, patient: PatientRef, encounter: EncounterRef | None) -> None:
    for dg1 in ctx.message.all("DG1"):
        code = ctx.cwe(dg1, 3)
        if code is None and (text := dg1.value(4).strip()):
            code = {"text": text}  # DG1-4 description (deprecated) when DG1-3 is empty
        if code is None:
            raise ctx.error(dg1, 3, "diagnosis code is empty", REQUIRED_FIELD_MISSING)
        kind = dg1.value(6).strip().upper()
        key_code = dg1.value(3).strip() or dg1.value(4).strip()
        value = f"{_context_key(encounter, patient)}|{key_code}|{kind}"
        system = ctx.sender.system("diagnosis")
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "identifier": [{"system": system, "value": value}],
            "clinicalStatus": dt.coded(_CLINICAL, "active"),
            "verificationStatus": dt.coded(
                _VERIFICATION, "confirmed" if kind == "F" else "provisional"
            ),
            "category": [dt.coded(_CATEGORY, "encounter-diagnosis")],
            "code": code,
            "subject": {"reference": patient.full_url},
        }
        if encounter:
            condition["encounter"] = {"reference": encounter.full_url}
        if recorded := ctx.ts(dg1, 5):
            condition["recordedDate"] = recorded
        if who := practitioner(ctx, dg1, 16):
            condition["asserter"] = who
        url = ctx.put(condition, system, value)
        if encounter is None:
            continue
        diagnosis: dict[str, Any] = {"condition": {"reference": url}}
        if kind in _USE:
            diagnosis["use"] = dt.coded(_ROLE, _USE[kind])
        rank = dg1.value(15).strip()
        if rank.isdigit() and int(rank) > 0:
            diagnosis["rank"] = int(rank)
        encounter.resource.setdefault("diagnosis", []).append(diagnosis)


def map_procedures(ctx: Context, patient: PatientRef, encounter: EncounterRef | None) -> None:
    for pr1 in ctx.message.all("PR1"):
        code = ctx.cwe(pr1, 3)
        if code is None:
            raise ctx.error(pr1, 3, "procedure code is empty", REQUIRED_FIELD_MISSING)
        when = pr1.value(5).strip()
        value = f"{_context_key(encounter, patient)}|{pr1.value(3).strip()}|{when}"
        system = ctx.sender.system("procedure")
        procedure: dict[str, Any] = {
            "resourceType": "Procedure",
            "identifier": [{"system": system, "value": value}],
            "status": "completed",
            "code": code,
            "subject": {"reference": patient.full_url},
        }
        if encounter:
            procedure["encounter"] = {"reference": encounter.full_url}
        if performed := ctx.ts(pr1, 5):
            procedure["performedDateTime"] = performed
        # PR1-11 surgeon (v2.3-v2.4), PR1-12 procedure practitioner (v2.5 on).
        performers = [p for p in (practitioner(ctx, pr1, 11), practitioner(ctx, pr1, 12)) if p]
        if performers:
            procedure["performer"] = [{"actor": p} for p in performers]
        ctx.put(procedure, system, value)
