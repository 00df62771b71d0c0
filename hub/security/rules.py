"""The community's authorisation rules, read from profiles/security/rules.json (data, not
code branches), and the pure checks made with them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from adapters.feeds.config import profiles_dir


@dataclass(frozen=True)
class Rules:
    open_paths: tuple[str, ...]
    office_paths: tuple[str, ...]
    operations: dict[str, tuple[tuple[str, str], ...]]
    office_operations: frozenset[str]
    write_as_self: dict[str, tuple[str, ...]]
    archive_reads: dict[str, str]
    sensitive: frozenset[tuple[str, str]]


@cache
def rules() -> Rules:
    data = json.loads((profiles_dir() / "security" / "rules.json").read_text(encoding="utf-8"))
    return Rules(
        tuple(data["open"]),
        tuple(data["office"]),
        {k: tuple((t, a) for t, a in v) for k, v in data["operations"].items()},
        frozenset(data["officeOperations"]),
        {k: tuple(v) for k, v in data["writeAsSelf"].items()},
        dict(data["archiveReads"]),
        frozenset((s["system"], s["code"]) for s in data["sensitive"]),
    )


def path_matches(path: str, patterns: Iterable[str]) -> bool:
    for p in patterns:
        if p.endswith("$"):
            if path == p[:-1]:
                return True
        elif path.startswith(p):
            return True
    return False


def _org_refs(value: Any) -> list[str]:
    """Organization ids referenced at an element (a Reference or a list of them)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        ref = item.get("reference") if isinstance(item, dict) else None
        if isinstance(ref, str) and ref.startswith("Organization/"):
            out.append(ref.split("/")[1])
    return out


def write_refusal(resource: dict[str, Any], org: str | None, table: Rules) -> str | None:
    """Why a member client may not write ``resource`` as ``org``, or None when it may.

    A member writes only the types the rules list, and where they list elements, one of them
    must name the member itself."""
    res_type = resource.get("resourceType", "")
    if res_type not in table.write_as_self:
        return f"a member system may not write {res_type} resources"
    paths = table.write_as_self[res_type]
    if not paths:
        return None
    named = [o for p in paths for o in _org_refs(resource.get(p))]
    if org is None or org not in named:
        return f"{res_type}.{'/'.join(paths)} must name the writing member (Organization/{org})"
    # With one element (a report's performer) every organisation named must be the member;
    # with several (a Task's requester or owner) naming itself in one of them suffices.
    strangers = sorted(set(named) - {org}) if len(paths) == 1 else []
    if strangers:
        return f"{res_type}.{paths[0]} names another organisation ({strangers[0]})"
    return None


def is_sensitive(resource: dict[str, Any], table: Rules) -> bool:
    labels = (resource.get("meta") or {}).get("security") or ()
    return any((s.get("system"), s.get("code")) in table.sensitive for s in labels)


def archive_refusal(resource: dict[str, Any], orgs: set[str], table: Rules) -> str | None:
    """A health-archive client reads only what is addressed to its organisations."""
    res_type = resource.get("resourceType", "")
    if res_type not in table.archive_reads:
        return f"a health-archive system may not read {res_type} resources"
    from hub.services.feedback.model import ADDRESSEE_EXT

    addressees = {
        (x.get("valueReference") or {}).get("reference", "").split("/")[-1]
        for x in resource.get("extension") or ()
        if x.get("url") == ADDRESSEE_EXT
    }
    if addressees & orgs:
        return None
    return f"{res_type}/{resource.get('id')} is not addressed to this system's organisation"
