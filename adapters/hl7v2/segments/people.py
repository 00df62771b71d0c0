"""XCN → Practitioner and PL → Location, each found by identifier with POST ifNoneExist.

These are reference data that every message repeats in part; a conditional create keeps the
first full description instead of letting a thin mention overwrite it.
"""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.mapped import Context
from adapters.hl7v2.parse import Segment

_PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"


def practitioner(ctx: Context, seg: Segment, n: int, rep: int = 0) -> dict[str, str] | None:
    """A reference to the practitioner named by an XCN; display only when it has no number."""
    number = seg.value(n, 1, rep=rep).strip()
    name = dt.xpn(seg, n, rep, offset=1)
    if not number:
        text = (name or {}).get("text", "")
        return {"display": text} if text else None
    authority = seg.value(n, 9, rep=rep).strip()
    system = ctx.community.system_for_authority(authority, "practitioner") or ctx.sender.system(
        "practitioner"
    )
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "identifier": [{"system": system, "value": number}],
    }
    if name:
        resource["name"] = [name]
    ref = {"reference": ctx.post_if_none(resource, system, number)}
    if name and name.get("text"):
        ref["display"] = name["text"]
    return ref


def location(ctx: Context, seg: Segment, n: int) -> dict[str, str] | None:
    """PL (point of care^room^bed^facility) → a reference to a Location of the sender."""
    poc, room, bed = (seg.value(n, i).strip() for i in (1, 2, 3))
    parts = [p for p in (poc, room, bed) if p]
    if not parts:
        return None
    facility = ctx.community.member(seg.value(n, 4).strip())
    owner = facility or ctx.sender
    system = owner.system("location")
    value = "-".join(parts)
    if dt.is_cjk(poc):  # 心内科 12床: the ward, then room and bed the way staff say them
        bed_text = f"{bed}床" if bed and not bed.endswith("床") else bed
        name = " ".join(p for p in (poc, room, bed_text) if p)
    else:
        name = " ".join(parts)
    kind = "bd" if bed else "ro" if room else "wa"
    resource = {
        "resourceType": "Location",
        "identifier": [{"system": system, "value": value}],
        "status": "active",
        "name": name,
        "mode": "instance",
        "physicalType": dt.coded(_PHYSICAL, kind),
        "managingOrganization": {"reference": owner.reference},
    }
    return {"reference": ctx.post_if_none(resource, system, value), "display": name}
