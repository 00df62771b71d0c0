"""Pulling the monthly inpatient feedback (住院信息每月反馈) over FHIR.

``GET|POST /fhir/Composition/{id}/$document``: the document (the filed one for a feedback
Composition, else assembled from the Composition and what it cites).
``GET /fhir/Organization/{id}/$inpatient-feedback?month=YYYY-MM``: a searchset of the month's
documents addressed to the organisation, ``_count`` per page (default 10, at most 50), next and
previous links; the month's package (List) comes with the first page as an include.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hub.fhir.bundles import page_url
from hub.fhir.errors import BadRequest
from hub.fhir.interactions import Unit
from hub.fhir.responses import fhir_response
from hub.fhir.routes import base_url, engine_of, run_read
from hub.services.feedback import pull
from hub.services.feedback.model import MONTH

router = APIRouter()
_DEFAULT_COUNT, _MAX_COUNT = 10, 50


T = TypeVar("T")


async def _read(request: Request, action: Callable[[Unit], T]) -> T:
    return await run_in_threadpool(run_read, engine_of(request), action)


@router.get("/Composition/{res_id}/$document")
@router.post("/Composition/{res_id}/$document")
async def composition_document(res_id: str, request: Request) -> Response:
    base = base_url(request)
    return fhir_response(200, await _read(request, lambda u: pull.document(u.conn, res_id, base)))


def _int(raw: str | None, name: str, default: int, low: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < low:
        raise BadRequest(f"{name} must be an integer ≥ {low}", code="value")
    return int(raw)


@router.get("/Organization/{res_id}/$inpatient-feedback")
async def inpatient_feedback(res_id: str, request: Request) -> Response:
    params = request.query_params
    month = params.get("month") or ""
    if not MONTH.match(month):
        raise BadRequest("month is required, as YYYY-MM (e.g. 2026-10)", code="required")
    count = min(_int(params.get("_count"), "_count", _DEFAULT_COUNT, 1), _MAX_COUNT)
    offset = _int(params.get("_offset"), "_offset", 0, 0)
    base = base_url(request)

    total, documents, package = await _read(
        request,
        lambda u: pull.organisation_month(u.conn, res_id, month, offset=offset, count=count),
    )
    path = f"Organization/{res_id}/$inpatient-feedback"

    def link(relation: str, at: int) -> dict[str, str]:
        query = [("month", month), ("_count", str(count)), ("_offset", str(at))]
        return {"relation": relation, "url": page_url(base, path, query)}

    links = [link("self", offset)]
    if offset + count < total:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(offset - count, 0)))
    # Stored documents are spliced in as they are: no parse and re-serialise per page.
    parts = [
        b'{"fullUrl":"'
        + f"{base}/Bundle/{doc_id}".encode()
        + b'","resource":'
        + doc.encode()
        + b',"search":{"mode":"match"}}'
        for doc_id, doc in documents
    ]
    if package is not None and offset == 0:
        parts.append(orjson.dumps({
            "fullUrl": f"{base}/List/{package['id']}", "resource": package,
            "search": {"mode": "include"},
        }))  # fmt: skip
    head = orjson.dumps(
        {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links}
    )
    return fhir_response(200, head[:-1] + b',"entry":[' + b",".join(parts) + b"]}")
