"""Whose archive a stay goes to: the patient's primary-care organisation.

In order: a general practitioner organisation named on any record of the person (PD1-3 or
FHIR), then a primary-care member managing one of the person's records (the township centre's
own record of its resident), then the catchment table of profiles/feedback/catchment.json by
the address's 行政区划代码.  A managing organisation that is a hospital is not an addressee:
it is where the patient was treated, not where the archive is kept.  No answer is an answer
too: such stays are listed for the office, never dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from adapters.feeds.config import Community, profiles_dir
from adapters.hl7v2.datatypes import DIVISION_EXT
from hub.services.feedback.model import PRIMARY_CARE_KINDS


@dataclass(frozen=True)
class Addressee:
    org_id: str | None
    by: str  # general-practitioner | managing-organization | catchment | none


NONE = Addressee(None, "none")


@cache
def catchment() -> dict[str, str]:
    path = profiles_dir() / "feedback" / "catchment.json"
    return dict(json.loads(path.read_text(encoding="utf-8"))["catchment"])


def _org(reference: Any) -> str | None:
    text = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(text, str) and text.startswith("Organization/"):
        return text.split("/", 1)[1]
    return None


def _divisions(patient: Mapping[str, Any]) -> Iterable[str]:
    addresses = sorted(
        patient.get("address") or (), key=lambda a: a.get("use") != "home"
    )  # home first
    for address in addresses:
        for ext in address.get("extension") or ():
            if ext.get("url") == DIVISION_EXT and isinstance(ext.get("valueCode"), str):
                yield ext["valueCode"]


def by_catchment(division: str, table: Mapping[str, str]) -> str | None:
    """The centre of the longest prefix of ``division`` in the table."""
    for length in range(len(division), 5, -1):
        if (centre := table.get(division[:length])) is not None:
            return centre
    return None


def resolve(
    records: list[Mapping[str, Any]], community: Community, table: Mapping[str, str] | None = None
) -> Addressee:
    """The addressee for a person known by ``records`` (the stay's own record first)."""
    primary = {m.org_id for m in community.members.values() if m.kind in PRIMARY_CARE_KINDS}
    for record in records:
        for gp in record.get("generalPractitioner") or ():
            if org := _org(gp):
                return Addressee(org, "general-practitioner")
    for record in records:
        org = _org(record.get("managingOrganization"))
        if org in primary:
            return Addressee(org, "managing-organization")
    table = catchment() if table is None else table
    for record in records:
        for division in _divisions(record):
            if (code := by_catchment(division, table)) and (member := community.member(code)):
                return Addressee(member.org_id, "catchment")
    return NONE
