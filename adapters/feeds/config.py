"""The community and its feeds, read from profiles/ (data, not code).

A feed is identified by the sending facility (MSH-4), which names the member; MSH-3 (the
sending application) is recorded, and only checked when the member sets
``restrictApplications`` (each member may run several vendors' systems).  Identifier systems
follow one pattern per member (``{identifierBase}/{member}/{mrn|visit|placer|filler|obx}``),
so an assigning authority in CX-4 (``XRMYY``) names the system directly: the lab centre can
report under the lead hospital's MRN.  Each member's local codes reach LOINC through its
ConceptMap.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote


def profiles_dir() -> Path:
    """$HUB_PROFILES when set; else profiles/ beside the source (a checkout, an editable
    install); else ./profiles (an installed package run from /app, as in the image)."""
    if configured := os.environ.get("HUB_PROFILES"):
        return Path(configured)
    return _default_profiles_dir(os.getcwd())


@cache
def _default_profiles_dir(cwd: str) -> Path:
    # Every unit of work's services ask (their rules files): resolving the path and asking
    # the file system each time cost ~0.2 ms a transaction.
    beside = Path(__file__).resolve().parents[2] / "profiles"
    return beside if beside.is_dir() else Path(cwd) / "profiles"


PROFILES = profiles_dir()
DEFAULT_COMMUNITY = PROFILES / "community" / "community.json"
_NOT_ID = re.compile(r"[^A-Za-z0-9.\-]")
IDENTIFIER_KINDS = (
    "mrn",
    "visit",
    "placer",
    "filler",
    "obx",
    "diagnosis",
    "procedure",
    "specimen",
    "location",
    "practitioner",
)


@lru_cache(maxsize=4096)
def _system(identifier_base: str, member: str, kind: str) -> str:
    # ~30 look-ups a message, always the same few strings: quoted once.
    return f"{identifier_base}/{quote(member, safe='')}/{kind}"


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str | None = None

    def as_fhir(self) -> dict[str, str]:
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True)
class MemberEndpoint:
    """Where the hub reaches a member's system (``endpoint`` in community.json).

    Seeded as the FHIR Endpoint ``Endpoint/<member>`` when the hub starts and it is missing;
    from then on the Endpoint in the store, which the office edits through the FHIR API, is
    what the hub follows."""

    connection: str  # endpoint-connection-type: hl7v2-mllp | hl7-fhir-rest
    address: str  # mllp://host:port, or the base of the member's FHIR rest-hooks
    messages: tuple[str, ...] = ()  # HL7 v2 messages it takes: OML^O21, ORM^O01, ORU^R01
    name: str | None = None


# Where a member's orders may name the performing member (``orderDestination``): MSH-6 (the
# receiving facility) unless its HIS writes it elsewhere, e.g. OBR-20 (filler field 1).
_FIELD_PATH = re.compile(r"^(MSH|ORC|OBR)-(\d{1,3})(?:\.(\d{1,2}))?$")


def field_path(text: str) -> tuple[str, int, int]:
    """A field path ("OBR-20", "MSH-6.1") → (segment, field, component); ValueError else."""
    match = _FIELD_PATH.match(text.strip().upper())
    if not match:
        raise ValueError(f"orderDestination {text!r} is not MSH-n, ORC-n or OBR-n[.c]")
    return match.group(1), int(match.group(2)), int(match.group(3) or 1)


@dataclass(frozen=True)
class Member:
    code: str  # MSH-4 and CX-4 value, and the Organization's id
    name: str
    kind: str  # lead-hospital, lab-centre, imaging-centre, hospital, township-centre, ...
    division: str  # 行政区划代码 of its seat
    identifier_base: str
    applications: tuple[str, ...] = ()
    charset: str = "UTF-8"
    part_of: str | None = None
    concept_map: str | None = None
    feeds: bool = True
    # Where the member's systems take enhanced-mode application ACKs (mllp://host:port).
    application_acks: str | None = None
    # Refuse messages whose MSH-3 (sending application) is not one of ``applications``.
    restrict_applications: bool = False
    # Where the hub delivers to this member's system (orders, results), if anywhere.
    endpoint: MemberEndpoint | None = None
    # The field of its order messages that names the performing member (see field_path).
    order_destination: tuple[str, int, int] = ("MSH", 6, 1)
    # Addresses (CIDR) its feeds may come from; empty: any (a message naming this member as
    # MSH-4 from elsewhere is refused AR and recorded).
    sources: tuple[str, ...] = ()

    def system(self, kind: str) -> str:
        """The identifier system of this member's ``kind`` numbers (mrn, visit, placer, ...)."""
        if kind not in IDENTIFIER_KINDS:
            raise KeyError(kind)
        return _system(self.identifier_base, self.code, kind)

    @property
    def org_id(self) -> str:
        """The member's Organization id: its code, made a valid FHIR id if it is not one."""
        return _NOT_ID.sub("-", self.code)[:64]

    @property
    def reference(self) -> str:
        return f"Organization/{self.org_id}"

    @property
    def local_code_system(self) -> str:
        return f"https://ygt.example.org/fhir/CodeSystem/local/{self.code}"


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    hub_application: str
    hub_facility: str
    identifier_base: str
    tz: timezone
    resident_id_system: str
    ehealth_card_system: str
    insurance_card_system: str
    members: dict[str, Member]
    # Per member code: local code → standard coding (from the member's ConceptMap).
    code_maps: dict[str, dict[str, Coding]] = field(default_factory=dict)

    def member(self, code: str) -> Member | None:
        return self.members.get(code.strip().upper()) if code else None

    def system_for_authority(self, authority: str, kind: str) -> str | None:
        """CX-4 / EI namespace → identifier system, when the authority is a known member."""
        member = self.member(authority)
        return member.system(kind) if member else None

    def standard_coding(self, member_code: str, local_code: str) -> Coding | None:
        return self.code_maps.get(member_code, {}).get(local_code)


def _tz(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))


def _code_map(path: Path) -> dict[str, Coding]:
    """A FHIR ConceptMap file → {local code: target coding} (equivalent/wider/equal targets)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, Coding] = {}
    for group in data.get("group", []):
        target_system = group.get("target")
        for element in group.get("element", []):
            for target in element.get("target", []):
                if target.get("equivalence", "equivalent") in ("unmatched", "disjoint"):
                    continue
                out[element["code"]] = Coding(target_system, target["code"], target.get("display"))
                break
    return out


def _endpoint(raw: Any) -> MemberEndpoint | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.get("connectionType") or not raw.get("address"):
        raise ValueError(f"a member endpoint needs connectionType and address: {raw!r}")
    return MemberEndpoint(
        connection=raw["connectionType"],
        address=raw["address"],
        messages=tuple(raw.get("messages", ())),
        name=raw.get("name"),
    )


def load_community(path: Path | str = DEFAULT_COMMUNITY) -> Community:
    path = Path(path)
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    base = data["identifierBase"].rstrip("/")
    members = {}
    code_maps = {}
    for raw in data["members"]:
        member = Member(
            code=raw["code"],
            name=raw["name"],
            kind=raw["kind"],
            division=raw.get("division", ""),
            identifier_base=base,
            applications=tuple(raw.get("applications", ())),
            charset=raw.get("charset", "UTF-8"),
            part_of=raw.get("partOf"),
            concept_map=raw.get("conceptMap"),
            feeds=raw.get("feeds", True),
            application_acks=raw.get("applicationAcks"),
            restrict_applications=raw.get("restrictApplications", False),
            endpoint=_endpoint(raw.get("endpoint")),
            order_destination=field_path(raw.get("orderDestination", "MSH-6")),
            sources=tuple(raw.get("sources", ())),
        )
        members[member.code] = member
        if member.concept_map:
            code_maps[member.code] = _code_map(
                path.parent / "concept-maps" / f"{member.concept_map}.json"
            )
    return Community(
        id=data["id"],
        name=data["name"],
        hub_application=data["hub"]["application"],
        hub_facility=data["hub"]["facility"],
        identifier_base=base,
        tz=_tz(data.get("timezone", "+08:00")),
        resident_id_system=data["residentIdSystem"],
        ehealth_card_system=data["eHealthCardSystem"],
        insurance_card_system=data["insuranceCardSystem"],
        members=members,
        code_maps=code_maps,
    )


@cache
def demo_community() -> Community:
    return load_community(DEFAULT_COMMUNITY)
