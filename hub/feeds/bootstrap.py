"""The community's conformance and directory resources, loaded into the store at start-up.

Mapped messages refer to members as ``Organization/<code>`` and to identifier systems that
profiles/ declares; this puts those resources in the store (one Organization per member, the
community itself, a NamingSystem per member and identifier kind, the code maps and anything
else under profiles/ that is a FHIR resource).  Only what changed is written, so a restart
with the same profiles/ adds no versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine

from adapters.feeds.config import PROFILES, Community, Member
from hub.fhir.interactions import Unit, update
from hub.services.export.scope import GROUP_CHARACTERISTIC, PRIMARY_CARE
from hub.services.routing.endpoints import endpoint_resource
from hub.store import repository as repo

DIVISION_CODE = "https://ygt.example.org/fhir/StructureDefinition/division-code"
COMMUNITY_ORG = "YGT"
_KIND_NAMES = {
    "mrn": ("MR", "病案号/患者号"),
    "visit": ("VN", "就诊号/住院号"),
    "placer": ("PLAC", "申请单号"),
    "filler": ("FILL", "报告单号/标本号"),
}
_ORG_TYPE = {
    "lead-hospital": ("prov", "牵头医院"),
    "hospital": ("prov", "医院"),
    "lab-centre": ("dept", "临床检验中心"),
    "imaging-centre": ("dept", "影像诊断中心"),
    "township-centre": ("prov", "乡镇卫生院"),
    "community-centre": ("prov", "社区卫生服务中心"),
    "health-archive": ("other", "居民健康档案系统"),
}
# Written only when missing: community.json seeds a member's Endpoint, then the office
# changes it through the FHIR API and a restart must not undo that.
_SEEDED_ONLY = frozenset({"Endpoint"})
# Members whose residents (签约居民) a health-archive system pulls by Group export.
_PRIMARY_CARE_KINDS = ("township-centre", "community-centre")


def organization(member: Member, community: Community) -> dict[str, Any]:
    code, label = _ORG_TYPE.get(member.kind, ("other", member.kind))
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "id": member.org_id,
        "identifier": [
            {"system": f"{community.identifier_base}/organization", "value": member.code}
        ],
        "active": True,
        "type": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                        "code": code,
                    }
                ],
                "text": label,
            }
        ],
        "name": member.name,
        "partOf": {"reference": f"Organization/{member.part_of or COMMUNITY_ORG}"},
        # (part_of names a demo member's code, which is a valid id)
    }
    if member.endpoint is not None:
        # Where the hub reaches the member's system (hub.services.routing.endpoints).
        org["endpoint"] = [{"reference": f"Endpoint/{member.org_id}"}]
    if member.division:
        org["address"] = [
            {
                "extension": [{"url": DIVISION_CODE, "valueCode": member.division}],
                "country": "CN",
            }
        ]
    return org


def residents_group(member: Member, community: Community) -> dict[str, Any]:
    """A centre's residents as a definitional Group: every Patient whose primary-care
    organisation it is (see hub.services.export.scope), exportable with Group/{id}/$export."""
    return {
        "resourceType": "Group",
        "id": f"residents-{member.org_id}",
        "identifier": [
            {"system": f"{community.identifier_base}/group", "value": f"residents-{member.code}"}
        ],
        "active": True,
        "type": "person",
        "actual": False,
        "name": f"{member.name}签约居民",
        "managingEntity": {"reference": member.reference},
        "characteristic": [
            {
                "code": {
                    "coding": [{"system": GROUP_CHARACTERISTIC, "code": PRIMARY_CARE}],
                    "text": "签约基层医疗卫生机构",
                },
                "valueReference": {"reference": member.reference},
                "exclude": False,
            }
        ],
    }


def naming_system(member: Member, kind: str) -> dict[str, Any]:
    type_code, label = _KIND_NAMES[kind]
    return {
        "resourceType": "NamingSystem",
        "id": f"{member.org_id.lower()}-{kind}",
        "name": f"{member.code}{kind.capitalize()}",
        "status": "active",
        "kind": "identifier",
        "date": "2026-11-23",
        "publisher": "县域医共体办公室",
        "responsible": member.name,
        "description": f"{member.name} {label}",
        "type": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": type_code}
            ]
        },
        "uniqueId": [{"type": "uri", "value": member.system(kind), "preferred": True}],
    }


def community_resources(community: Community, profiles: Path = PROFILES) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Organization",
            "id": COMMUNITY_ORG,
            "active": True,
            "name": community.name,
            "identifier": [
                {"system": f"{community.identifier_base}/organization", "value": COMMUNITY_ORG}
            ],
        }
    ]
    # Parents before children: the lead hospital before the centres it runs.
    members = sorted(community.members.values(), key=lambda m: m.part_of is not None)
    out += [e for m in members if (e := endpoint_resource(m)) is not None]
    out += [organization(m, community) for m in members]
    out += [naming_system(m, kind) for m in members if m.feeds for kind in _KIND_NAMES]
    out += [residents_group(m, community) for m in members if m.kind in _PRIMARY_CARE_KINDS]
    for path in sorted(profiles.rglob("*.json")):
        if path.name == "community.json":
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("resourceType") and data.get("id"):
            out.append(data)
    return out


def _same(stored: str, wanted: dict[str, Any]) -> bool:
    current = orjson.loads(stored)
    current.pop("meta", None)
    return current == {k: v for k, v in wanted.items() if k != "meta"}


def load_community_resources(engine: Engine, community: Community) -> int:
    """PUT every community resource that is missing or different; returns how many."""
    written = 0
    with engine.begin() as conn:
        unit = Unit.on(conn)
        for resource in community_resources(community):
            current = repo.read_current(conn, resource["resourceType"], resource["id"])
            if current is not None and current.content and _same(current.content, resource):
                continue
            if current is not None and resource["resourceType"] in _SEEDED_ONLY:
                continue  # the office's to change now (or to have deleted): never reset
            update(unit, resource["resourceType"], resource["id"], resource)
            written += 1
        unit.writer.flush()
    return written
