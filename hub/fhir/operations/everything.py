"""GET /fhir/Patient/{id}/$everything: the community-wide record of a person.

The id may be a member's record or the master: either way the answer covers every record
linked to the person in the patient index, and everything that refers to any of them (the
Patient compartment, audit trail aside).  ``_since`` (lastUpdated), ``_type`` and ``_count``
narrow it; pages follow by row id, so a page never repeats or skips what the last one held.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hub.fhir.bundles import page_url
from hub.fhir.errors import BadRequest, NotFound
from hub.fhir.interactions import Unit
from hub.fhir.responses import fhir_response
from hub.fhir.routes import base_url, engine_of, parse_since, run_read
from hub.fhir.validation import SUPPORTED
from hub.search.sql import Sql, execute
from hub.services.identity import lookup
from hub.store import repository as repo

router = APIRouter()
_DEFAULT_COUNT = 100
_MAX_COUNT = 1000
_LEFT_OUT = ("AuditEvent",)


def _count(raw: str | None) -> int:
    if raw is None:
        return _DEFAULT_COUNT
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequest("_count must be a positive integer", code="value")
    return min(int(raw), _MAX_COUNT)


def _types(raw: list[str]) -> list[str]:
    types = [t.strip() for item in raw for t in item.split(",") if t.strip()]
    unknown = [t for t in types if t not in SUPPORTED]
    if unknown:
        raise BadRequest(f"_type {unknown[0]!r} is not served by this hub", code="value")
    return types


def everything_page(
    unit: Unit, res_id: str, *, since: int | None, types: list[str], count: int, after: int
) -> tuple[list[tuple[int, str]], int, list[str]]:
    """(rid, content) of one page, the total, and the person's record ids."""
    current = repo.read_current(unit.conn, "Patient", res_id)
    if current is None or current.deleted:
        raise NotFound(f"Patient/{res_id} is not known")
    person = lookup.person_of(unit.conn, res_id)
    ids = sorted({res_id, *([person] if person else []),
                  *(lookup.records_of_person(unit.conn, person) if person else [])})  # fmt: skip
    marks = ",".join("?" for _ in ids)
    where = (
        f"NOT r.deleted AND r.res_type NOT IN ({','.join('?' for _ in _LEFT_OUT)}) AND ("
        f"(r.res_type = 'Patient' AND r.res_id IN ({marks})) OR r.rid IN ("
        f"SELECT x.rid FROM idx_reference x WHERE x.target_type = 'Patient' "
        f"AND x.target_id IN ({marks})))"
    )
    params: list[Any] = [*_LEFT_OUT, *ids, *ids]
    if types:
        where += f" AND r.res_type IN ({','.join('?' for _ in types)})"
        params += types
    if since is not None:
        where += " AND r.last_updated >= ?"
        params.append(since)
    total = execute(
        unit.conn, Sql(f"SELECT count(*) FROM resources r WHERE {where}", tuple(params))
    )
    rows = execute(
        unit.conn,
        Sql(
            f"SELECT r.rid, r.content FROM resources r WHERE {where} AND r.rid > ? "
            "ORDER BY r.rid LIMIT ?",
            (*params, after, count + 1),
        ),
    )
    return [(int(r[0]), r[1]) for r in rows], int(total[0][0]), ids


@router.get("/Patient/{res_id}/$everything")
async def everything(request: Request, res_id: str) -> Response:
    q = request.query_params
    count = _count(q.get("_count"))
    types = _types(q.getlist("_type"))
    since = parse_since(q.get("_since"))
    cursor = q.get("_cursor", "0")
    if not cursor.isdigit():
        raise BadRequest("_cursor is not one this server made", code="value")
    base = base_url(request)

    def run(unit: Unit) -> bytes:
        rows, total, _ = everything_page(
            unit, res_id, since=since, types=types, count=count, after=int(cursor)
        )
        page, more = rows[:count], len(rows) > count
        keep = [(k, v) for k, v in q.multi_items() if k != "_cursor"]
        path = f"Patient/{res_id}/$everything"
        links = [{"relation": "self", "url": page_url(base, path, list(q.multi_items()))}]
        if more:
            after = [*keep, ("_cursor", str(page[-1][0]))]
            links.append({"relation": "next", "url": page_url(base, path, after)})
        entries = []
        for _, content in page:
            resource = orjson.loads(content)
            entries.append({
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            })  # fmt: skip
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": total,
                  "link": links, "entry": entries}  # fmt: skip
        return orjson.dumps(bundle)

    return fhir_response(200, await run_in_threadpool(run_read, engine_of(request), run))
