"""The monthly package of each primary-care centre: a List of that month's documents.

Each entry names a document, its version, and a flag against the package's previous version:
new, amended (reissued since), withdrawn (no longer this centre's, or the stay no longer ends
in the month; kept as a deleted entry so a puller learns of it).  The List is rewritten only
when an entry changed, so a rerun on unchanged data leaves it at its version.  Stays without an
addressee go to the month's list for the office (``fbu-YYYY-MM``), never nowhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from adapters.feeds.config import Community
from hub.fhir.interactions import Unit
from hub.search.values import format_instant
from hub.services.feedback.model import (
    ADDRESSEE_EXT,
    BASE,
    CHANGE_DISPLAY,
    CHANGE_FLAG_CS,
    PACKAGE_CODE,
    PACKAGE_SYSTEM,
    UNADDRESSED_CODE,
    package_id,
    unaddressed_id,
)
from hub.store.repository import now_micros, read_many
from hub.store.schema import feedback_documents, of_type, resources

VERSION_EXT = f"{BASE}/StructureDefinition/feedback-document-version"


def _flag(code: str) -> dict[str, Any]:
    return {"coding": [{"system": CHANGE_FLAG_CS, "code": code, "display": CHANGE_DISPLAY[code]}]}


def _previous(package: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {e["item"]["reference"]: e for e in (package or {}).get("entry") or () if "item" in e}


def _version(entry: dict[str, Any]) -> int:
    return next(
        (x["valueInteger"] for x in entry.get("extension") or () if x.get("url") == VERSION_EXT),
        0,
    )


def _entries(rows: list[Any], previous: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current = set()
    for r in rows:
        ref = f"Composition/{r.composition_id}"
        current.add(ref)
        before = previous.get(ref)
        withdrawn = r.digest == "withdrawn"
        if before is not None and _version(before) == r.version:
            out.append(before)  # unchanged since the last package: keep it as it was
            continue
        code = "withdrawn" if withdrawn else ("new" if before is None and r.version == 1
                                              else "amended")  # fmt: skip
        entry: dict[str, Any] = {
            "extension": [{"url": VERSION_EXT, "valueInteger": r.version}],
            "flag": _flag(code),
            "date": format_instant(r.updated_at),
            "item": {"reference": ref},
        }
        if withdrawn:
            entry["deleted"] = True
        out.append(entry)
    for ref, before in previous.items():
        if ref not in current:  # went to another centre
            out.append({**before, "flag": _flag("withdrawn"), "deleted": True})
    return out


def _note(entries: list[dict[str, Any]], previous: dict[str, dict[str, Any]]) -> str:
    changed = [e for e in entries if previous.get(e["item"]["reference"]) != e]
    counts = {c: 0 for c in ("new", "amended", "withdrawn")}
    for e in changed:
        counts[e["flag"]["coding"][0]["code"]] += 1
    return (
        f"本版：新增 {counts['new']} 份，更正 {counts['amended']} 份，撤回 {counts['withdrawn']} 份"
    )


def _filed_packages(conn: Connection, month: str) -> dict[str, str]:
    """Package id → centre, of the packages already filed for the month."""
    found = conn.execute(
        select(resources.c.res_id).where(
            of_type("List"),
            resources.c.res_id.like(f"fbp-%-{month}"),
            resources.c.deleted.is_(False),
        )
    ).scalars()
    return {i: i[4 : -len(month) - 1] for i in found}


_EMPTY = "http://terminology.hl7.org/CodeSystem/list-empty-reason"


def _list(
    list_id: str,
    identifier: str,
    title: str,
    code: dict[str, str],
    now: str,
    entries: list[dict[str, Any]],
    empty: dict[str, Any],
    *,
    mode: str = "snapshot",
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "List",
        "id": list_id,
        "identifier": [{"system": PACKAGE_SYSTEM, "value": identifier}],
        "status": "current",
        "mode": mode,
        "title": title,
        "code": {"coding": [code]},
        "date": now,
    }
    if entries:
        out["entry"] = entries
    else:
        out["emptyReason"] = empty
    return out


def _write_if_changed(unit: Unit, held: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if (
        held is not None
        and held.get("entry") == wanted.get("entry")
        and held.get("status") == wanted.get("status")
    ):
        return False
    unit.writer.update(wanted, wanted["id"])
    return True


def file_packages(
    conn: Connection,
    community: Community,
    month: str,
    *,
    org: str | None,
    organizations: dict[str, dict[str, Any]],
) -> int:
    """Write the month's packages (and the office's list) that changed; returns how many."""
    query = select(feedback_documents).where(feedback_documents.c.month == month)
    if org is not None:
        query = query.where(feedback_documents.c.addressee == org)
    rows = sorted(conn.execute(query).all(), key=lambda r: (r.discharged_at, r.encounter_id))
    by_org: dict[str | None, list[Any]] = {}
    for r in rows:
        by_org.setdefault(r.addressee, []).append(r)
    ids = {package_id(o, month): o for o in by_org if o is not None}
    if org is None:
        # A centre whose every document moved away still gets its package rewritten.
        ids.update({i: o for i, o in _filed_packages(conn, month).items() if i not in ids})
    elif package_id(org, month) not in ids:
        ids[package_id(org, month)] = org
    held = read_many(conn, "List", [*ids, unaddressed_id(month)])
    ids = {i: o for i, o in ids.items() if by_org.get(o) or i in held}
    unit = Unit.on(conn)
    now = format_instant(now_micros())
    written = 0
    for list_id, o in sorted(ids.items()):
        previous = _previous(held.get(list_id))
        entries = _entries(by_org.get(o, []), previous)
        name = (organizations.get(o) or {}).get("name", o)
        package = _list(
            list_id, f"{o}-{month}", f"{name} {month} 住院信息每月反馈", PACKAGE_CODE, now,
            entries, {"coding": [{"system": _EMPTY, "code": "nilknown"}]},
        )  # fmt: skip
        package["extension"] = [
            {"url": ADDRESSEE_EXT, "valueReference": {"reference": f"Organization/{o}"}}
        ]
        package["note"] = [{"text": _note(entries, previous)}]
        written += _write_if_changed(unit, held.get(list_id), package)
    if org is None:
        open_stays = [r for r in by_org.get(None, []) if r.digest != "withdrawn"]
        office = _list(
            unaddressed_id(month), f"unaddressed-{month}",
            f"{month} 无接收机构的出院住院（待办公室处理）", UNADDRESSED_CODE, now,
            [{"item": {"reference": f"Encounter/{r.encounter_id}"}} for r in open_stays],
            {"text": "本月出院者均已找到接收机构"}, mode="working",
        )  # fmt: skip
        if open_stays or unaddressed_id(month) in held:
            written += _write_if_changed(unit, held.get(unaddressed_id(month)), office)
    unit.writer.flush()
    return written
