"""Reading filed feedback: a Composition's document, a centre's month page by page."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from hub.fhir.errors import NotFound
from hub.security.checks import check_read
from hub.services.feedback.model import DOCUMENT_SYSTEM, package_id
from hub.store import repository as repo
from hub.store.repository import read_many
from hub.store.schema import feedback_documents, resources


def _refs(node: Any) -> list[str]:
    """Every relative reference in a Composition (sections nested at any depth)."""
    found: list[str] = []
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.count("/") == 1:
            found.append(ref)
        for key, value in node.items():
            if key not in ("text", "extension"):
                found += _refs(value)
    elif isinstance(node, list):
        for item in node:
            found += _refs(item)
    return found


def assemble(conn: Connection, composition: dict[str, Any], base: str) -> dict[str, Any]:
    """A document from any stored Composition and the current versions of what it cites."""
    wanted: dict[str, list[str]] = {}
    for ref in dict.fromkeys(_refs({k: v for k, v in composition.items() if k != "meta"})):
        res_type, res_id = ref.split("/")
        wanted.setdefault(res_type, []).append(res_id)
    entries = [{"fullUrl": f"{base}/Composition/{composition['id']}", "resource": composition}]
    for res_type, ids in wanted.items():
        found = read_many(conn, res_type, ids)
        entries += [
            {"fullUrl": f"{base}/{res_type}/{i}", "resource": found[i]} for i in ids if i in found
        ]
    version = (composition.get("meta") or {}).get("versionId", "1")
    return {
        "resourceType": "Bundle",
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:uuid:{composition['id']}-{version}"
            if len(composition["id"]) == 36
            else f"{base}/Composition/{composition['id']}/_history/{version}",
        },
        "type": "document",
        "timestamp": (composition.get("meta") or {}).get("lastUpdated"),
        "entry": entries,
    }


def document(conn: Connection, composition_id: str, base: str) -> dict[str, Any]:
    """The filed document of a feedback Composition at its current version, else assembled."""
    stored = repo.read_current(conn, "Composition", composition_id)
    if stored is None or stored.deleted or stored.content is None:
        raise NotFound(f"Composition/{composition_id} is not known")
    comp = orjson.loads(stored.content)
    check_read(comp)  # an archive system: only its centres' documents
    filed = read_many(conn, "Bundle", [composition_id]).get(composition_id)
    is_feedback = (comp.get("identifier") or {}).get("system") == DOCUMENT_SYSTEM
    if (
        is_feedback
        and filed is not None
        and filed.get("type") == "document"
        and filed["identifier"]["value"].endswith(f"-v{stored.version_id}")
    ):
        filed["entry"][0]["resource"] = comp  # with its meta, as served by read
        return filed
    return assemble(conn, comp, base)


def organisation_month(
    conn: Connection, org_id: str, month: str, *, offset: int, count: int
) -> tuple[int, list[tuple[str, str]], dict[str, Any] | None]:
    """(total, (id, document Bundle JSON) of one page, the month's package if filed)."""
    if repo.read_current(conn, "Organization", org_id) is None:
        raise NotFound(f"Organization/{org_id} is not known")
    where = (
        feedback_documents.c.month == month,
        feedback_documents.c.addressee == org_id,
        feedback_documents.c.digest != "withdrawn",
    )
    total = int(conn.execute(select(func.count()).where(*where)).scalar_one())
    ids = list(
        conn.execute(
            select(feedback_documents.c.composition_id)
            .where(*where)
            .order_by(feedback_documents.c.discharged_at, feedback_documents.c.encounter_id)
            .offset(offset)
            .limit(count)
        ).scalars()
    )
    rows = {
        r.res_id: r.content
        for r in conn.execute(
            select(resources.c.res_id, resources.c.content).where(
                resources.c.res_type == "Bundle", resources.c.res_id.in_(ids or [""])
            )
        )
    }
    package = read_many(conn, "List", [package_id(org_id, month)]).get(package_id(org_id, month))
    return total, [(i, rows[i]) for i in ids if rows.get(i)], package
