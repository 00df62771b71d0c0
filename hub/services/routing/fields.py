"""Values as HL7 v2 fields, for the messages the hub sends (pure).

Escaping (hl7apy escapes only the repetition separator), times with their precision and offset,
codes as the receiver knows them (``Coder``: its local code for a standard one, where its
ConceptMap has it), and the community's identifiers as CX and EI, whose assigning authority is
the member whose system holds the number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapters.feeds.config import Community, Member

LOINC = "http://loinc.org"
CATALOGUE = "https://ygt.example.org/fhir/CodeSystem/recognition-catalogue"
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"
# Member charset → (Python codec, HL7 table 0211 name for MSH-18).
CHARSETS = {
    "UTF-8": ("utf-8", "UNICODE UTF-8"),
    "GB18030": ("gb18030", "GB 18030-2000"),
    "GBK": ("gb18030", "GB 18030-2000"),
}


@dataclass(frozen=True)
class Coder:
    """Codes as the receiver knows them: its local code for a standard one, where its
    ConceptMap has it, sent as ``L``; the standard code beside it."""

    community: Community
    receiver: Member
    # "system|code" of a standard code → (the receiver's local code, its display)
    _reverse: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def for_receiver(cls, community: Community, receiver: Member) -> Coder:
        reverse: dict[str, tuple[str, str]] = {}
        for local, standard in community.code_maps.get(receiver.code, {}).items():
            key = f"{standard.system}|{standard.code}"
            reverse.setdefault(key, (local, standard.display or ""))
        return cls(community, receiver, reverse)

    def cwe(self, concept: dict[str, Any] | None) -> str:
        """CodeableConcept → CWE ``code^text^system^altcode^alttext^altsystem``."""
        if not concept:
            return ""
        codings = concept.get("coding") or []
        text = concept.get("text") or next((c["display"] for c in codings if c.get("display")), "")
        triplets: list[tuple[str, str, str]] = []
        standard = next(
            (c for c in codings if c.get("system") in (LOINC, CATALOGUE) and c.get("code")), None
        )
        if standard is not None:
            local, known = self._reverse.get(f"{standard['system']}|{standard['code']}", ("", ""))
            text = text or known  # the name the receiver's ConceptMap gives the test
            if local:
                triplets.append((local, text, "L"))
            triplets.append((standard["code"], standard.get("display") or text, _name(standard)))
        for coding in codings:
            if len(triplets) >= 2:
                break
            system = coding.get("system") or ""
            if coding is standard or not coding.get("code"):
                continue
            if system == self.receiver.local_code_system:
                triplets.insert(0, (coding["code"], coding.get("display") or text, "L"))
            elif name := _name(coding):
                triplets.append((coding["code"], coding.get("display") or text, name))
        parts: list[str] = []
        for code, display, system in triplets[:2]:
            parts += [code, display, system]
        if not parts:
            return f"^{esc(text)}" if text else ""
        return "^".join(esc(p) for p in parts)


def _name(coding: dict[str, Any]) -> str:
    """A coding system URI → its HL7 v2 name (LN, HL70078 ...); "" for one without."""
    system = str(coding.get("system") or "")
    if system == LOINC:
        return "LN"
    if system == CATALOGUE:
        return "YGT"  # the community's own catalogue code (YGT-L001 ...)
    if system.startswith(V2_TABLE):
        return f"HL7{system[len(V2_TABLE) :]}"
    if "/CodeSystem/local/" in system:
        return f"99{system.rsplit('/', 1)[-1]}"  # another member's local code
    return ""


def esc(text: Any) -> str:
    """Escape HL7 delimiters in a value; line breaks become spaces (for one-line fields)."""
    out = str(text).replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        out = out.replace(char, f"\\{code}\\")
    return out.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def ts(value: Any) -> str:
    """A FHIR date, dateTime or instant → HL7 DTM, keeping its precision and offset."""
    if not isinstance(value, str) or not value:
        return ""
    if len(value) <= 10:  # YYYY, YYYY-MM, YYYY-MM-DD
        return value.replace("-", "")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    stamp = moment.strftime("%Y%m%d%H%M%S")
    return stamp + moment.strftime("%z") if moment.tzinfo else stamp


def number(value: Any) -> str:
    text = str(value)
    return text[:-2] if text.endswith(".0") and isinstance(value, float) else text


# --- identifiers -----------------------------------------------------------------------------


def authority(system: str, community: Community, kind: str) -> str | None:
    """The member whose ``kind`` numbers a system holds ({base}/{member}/{kind}), if any."""
    base = community.identifier_base.rstrip("/") + "/"
    if not system.startswith(base):
        return None
    member, _, tail = system[len(base) :].partition("/")
    return member if tail == kind and member in community.members else None


def cx_list(patient: dict[str, Any], community: Community, first: str | None) -> list[str]:
    """PID-3 repetitions: member record numbers (the ordering member's first), resident ID."""
    records: list[tuple[int, str]] = []
    for ident in patient.get("identifier") or []:
        system, value = str(ident.get("system") or ""), str(ident.get("value") or "")
        if not value:
            continue
        if system == community.resident_id_system:
            records.append((2, f"{esc(value)}^^^^NNCHN"))
        elif (member := authority(system, community, "mrn")) is not None:
            records.append((0 if member == first else 1, f"{esc(value)}^^^{member}^MR"))
    return [cx for _, cx in sorted(records, key=lambda r: r[0])]


def ei(identifiers: Iterable[dict[str, Any]], community: Community, kind: str) -> str:
    """The first ``kind`` (placer, filler) identifier as EI ``number^namespace``."""
    for ident in identifiers:
        system, value = str(ident.get("system") or ""), str(ident.get("value") or "")
        if value and (member := authority(system, community, kind)) is not None:
            return f"{esc(value)}^{member}"
    return ""


def placer_member(request: dict[str, Any], community: Community) -> str | None:
    """The member whose placer number the order carries (the orderer, for a feed's order)."""
    for ident in request.get("identifier") or []:
        member = authority(str(ident.get("system") or ""), community, "placer")
        if member is not None and ident.get("value"):
            return member
    return None


# --- segments --------------------------------------------------------------------------------
