"""PID (+ PD1, NK1) → Patient, per the guide's PID[Patient], PD1[Patient] and NK1[Patient]."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.feeds.resident_id import ResidentIdError, parse_resident_id
from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.errors import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING
from adapters.hl7v2.mapped import Context
from adapters.hl7v2.parse import Segment

_RESIDENT_ID = re.compile(r"^(\d{17}[\dXx]|\d{15})$")
_MRN_TYPES = frozenset({"", "MR", "PI", "PT", "MRT"})
_SEX = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "other"}
_MARITAL = {
    "A": "L", "D": "D", "M": "M", "S": "S", "W": "W", "C": "C", "G": "T", "P": "T", "R": "T",
    "E": "L", "N": "A", "I": "I", "B": "U", "U": "UNK", "O": "OTH", "T": "NAVU",
}  # fmt: skip
_RELATIONSHIP = {
    "SEL": "ONESELF", "SPO": "SPS", "DOM": "SIGOTHR", "CHD": "CHILD", "GCH": "GRNDCHILD",
    "NCH": "NCHILD", "SCH": "STPCHLD", "FCH": "CHLDFOST", "DEP": "DEP", "WRD": "WRD",
    "PAR": "PRN", "MTH": "MTH", "FTH": "FTH", "CGV": "CGV", "GRD": "GRD", "GRP": "GRPRN",
    "EXF": "EXT", "SIB": "SIB", "BRO": "BRO", "SIS": "SIS", "FND": "FRND", "OAD": "OAD",
    "EME": "EME", "EMR": "E", "ASC": "ASC", "EMC": "C", "OWN": "OWN", "TRA": "TRA",
    "MGR": "MGR", "NON": "NON", "UNK": "U", "OTH": "O",
}  # fmt: skip
_V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
_V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


@dataclass
class PatientRef:
    full_url: str
    system: str
    value: str
    organization: str  # Organization reference of the member whose MRN is the key

    @property
    def key(self) -> str:
        return f"{self.system}|{self.value}"


INVALID_IDENTIFIER = "https://ygt.example.org/fhir/StructureDefinition/identifier-invalid"


def _type(code: str) -> dict[str, Any]:
    return dt.coded(f"{dt.V2}0203", code)


def identifiers(
    ctx: Context, pid: Segment, n: int = 3, ssn: int | None = 19
) -> list[dict[str, Any]]:
    """CX repetitions → Identifiers; the first member-MRN one is the patient's key."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(system: str | None, value: str, type_code: str, field_no: int) -> None:
        problem = None
        if system == ctx.community.resident_id_system:
            # A 15-digit legacy number and its 18-character form are one identifier.
            try:
                value = parse_resident_id(value).value
            except ResidentIdError as exc:
                problem = exc
        key = (system or "", value)
        if key in seen:
            return
        seen.add(key)
        ident: dict[str, Any] = {"type": _type(type_code)} if type_code else {}
        if system:
            ident["system"] = system
        ident["value"] = value
        if system == ctx.community.resident_id_system:
            ident["use"] = "official"
            if problem is not None:
                # Kept as sent, flagged, and never used to link records (see issue 4).
                ident["extension"] = [{"url": INVALID_IDENTIFIER, "valueCode": problem.reason}]
                ctx.warn(pid, field_no, f"the resident ID is not valid: {problem}", DATA_TYPE_ERROR)
        out.append(ident)

    for rep in range(len(pid.repetitions(n))):
        value = dt.cx_value(pid, n, rep)
        if not value:
            continue
        authority = pid.value(n, 4, rep=rep).strip()
        cx5 = pid.value(n, 5, rep=rep).strip().upper()
        if cx5 == "NNCHN" or (cx5 in ("ID", "") and len(value) == 18 and _RESIDENT_ID.match(value)):
            add(ctx.community.resident_id_system, value.upper(), "NNCHN", n)
        elif cx5 in _MRN_TYPES:
            system = ctx.community.system_for_authority(authority, "mrn")
            add(system or ctx.sender.system("mrn"), value, "MR", n)
        else:
            # Another kind of number (SS, DL, AN ...) under an authority the community does not
            # declare: kept with its type, but with no invented system.
            add(None, value, cx5, n)
    if out and not any(i.get("system") for i in out):
        # No MRN-typed number (CX-5 PK, PN, ...): the first repetition is the sender's own key
        # for the patient (PID-3 lists it first), so it is read as the MRN.
        first = out[0]
        first["system"] = ctx.community.system_for_authority(
            pid.value(n, 4).strip(), "mrn"
        ) or ctx.sender.system("mrn")
    # PID-19 (SSN) carries the resident ID in v2.3.1 Chinese feeds; US SSNs are left alone.
    number = pid.value(ssn).strip() if ssn else ""
    if number and _RESIDENT_ID.match(number) and ssn:
        add(ctx.community.resident_id_system, number.upper(), "NNCHN", ssn)
    return out


def patient_key(ctx: Context, pid: Segment, idents: list[dict[str, Any]]) -> tuple[str, str, str]:
    mrn_systems = {m.system("mrn"): m for m in ctx.community.members.values()}
    mrn_systems.setdefault(ctx.sender.system("mrn"), ctx.sender)
    for ident in idents:
        member = mrn_systems.get(ident.get("system", ""))
        if member is not None:
            return ident["system"], ident["value"], member.reference
    for ident in idents:  # no MRN: the resident ID (or any system) still names the person
        if ident.get("system"):
            return ident["system"], ident["value"], ctx.sender.reference
    n = 1 if pid.name == "MRG" else 3
    raise ctx.error(pid, n, "no usable patient identifier", REQUIRED_FIELD_MISSING)


def _organization(ctx: Context, seg: Segment, n: int) -> dict[str, str] | None:
    """XON → a reference to the member it names (XON.10, XON.3, XON.1), else display only."""
    name = seg.value(n, 1).strip()
    for candidate in (seg.value(n, 10), seg.value(n, 3), seg.value(n, 1), seg.value(n, 6)):
        member = ctx.community.member(candidate.strip())
        if member is not None:
            return {"reference": member.reference, "display": member.name}
    return {"display": name} if name else None


def _contacts(ctx: Context) -> list[dict[str, Any]]:
    out = []
    for nk1 in ctx.message.all("NK1"):
        contact: dict[str, Any] = {}
        code = nk1.value(3).strip().upper()
        relation = ctx.cwe(nk1, 3)
        if relation is not None:
            if code in _RELATIONSHIP:
                standard = {"system": _V3_ROLE, "code": _RELATIONSHIP[code]}
                relation["coding"] = [standard, *relation.get("coding", [])]
            contact["relationship"] = [relation]
        if name := dt.xpn(nk1, 2):
            contact["name"] = name
        telecom = dt.xtn_all(nk1, 5, "home") + dt.xtn_all(nk1, 6, "work")
        if telecom:
            contact["telecom"] = telecom
        if address := dt.xad(nk1, 4):
            contact["address"] = address
        if contact:
            out.append(contact)
    return out


def patient_resource(
    ctx: Context, pid: Segment, *, full: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    idents = identifiers(ctx, pid)
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": idents}
    if names := dt.xpn_all(pid, 5):
        patient["name"] = names
    telecom = dt.xtn_all(pid, 13, "home") + dt.xtn_all(pid, 14, "work")
    if telecom:
        patient["telecom"] = telecom
    sex = pid.value(8).strip().upper()
    if sex:
        patient["gender"] = _SEX.get(sex, "unknown")
    if birth := ctx.date(pid, 7):
        patient["birthDate"] = birth
    if died := ctx.ts(pid, 29):
        patient["deceasedDateTime"] = died
    elif pid.value(30).strip().upper() in ("Y", "N"):
        patient["deceasedBoolean"] = pid.value(30).strip().upper() == "Y"
    if addresses := dt.xad_all(pid, 11):
        patient["address"] = addresses
    marital = pid.value(16).strip().upper()
    if marital in _MARITAL:
        patient["maritalStatus"] = dt.coded(_V3_MARITAL, _MARITAL[marital])
    if full:
        if contacts := _contacts(ctx):
            patient["contact"] = contacts
        pd1 = ctx.message.first("PD1")
        if pd1 is not None and (org := _organization(ctx, pd1, 3)):
            patient["generalPractitioner"] = [org]
    return patient, idents


def map_patient(ctx: Context, pid: Segment | None, *, update: bool) -> PatientRef:
    """The message's Patient: ADT replaces it (PUT); orders and results only create it."""
    if pid is None:
        raise ctx.error(ctx.message.msh, None, "the message has no PID segment", "100")
    patient, idents = patient_resource(ctx, pid, full=update)
    system, value, org = patient_key(ctx, pid, idents)
    patient["managingOrganization"] = {"reference": org}
    url = ctx.write(patient, system, value, update=update)
    return PatientRef(url, system, value, org)
