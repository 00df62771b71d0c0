"""The office's handles on the monthly feedback, and the printable view of a document.

``POST /admin/feedback/runs`` {"month": "2026-10", "org": "QSWSY"?} runs it now (409 while
another run holds the lease); ``GET /admin/feedback/runs`` lists the runs;
``GET /admin/feedback/unaddressed?month=`` lists the stays no centre was found for;
``GET /feedback/Composition/{id}/print`` is the document as an A4 HTML page.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from hub.fhir.errors import BadRequest, Conflict, FhirError
from hub.fhir.routes import engine_of, run_read
from hub.search.values import format_instant
from hub.services.feedback import pull
from hub.services.feedback.document import patient_name
from hub.services.feedback.model import MONTH
from hub.services.feedback.printable import render
from hub.services.feedback.run import DEFAULT_BASE, FeedbackBusy, run_month
from hub.store.repository import read_many
from hub.store.schema import feedback_documents, feedback_runs

router = APIRouter()


def _month(raw: Any) -> str:
    if not isinstance(raw, str) or not MONTH.match(raw):
        raise BadRequest("month is required, as YYYY-MM (e.g. 2026-10)", code="required")
    return raw


@router.post("/admin/feedback/runs")
async def start_run(request: Request) -> JSONResponse:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequest('the body must be JSON: {"month": "YYYY-MM"}') from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    month, org = _month(body.get("month")), body.get("org")
    community = request.app.state.community
    if org is not None and community.member(str(org)) is None:
        raise BadRequest(f"org {org!r} is not a member of the community", code="value")
    base = request.app.state.settings.base_url or DEFAULT_BASE
    try:
        summary = await run_in_threadpool(
            run_month, engine_of(request), community, month, org=org, trigger="admin", base=base
        )
    except FeedbackBusy as exc:
        raise Conflict(str(exc)) from exc
    return JSONResponse(summary.as_dict())


@router.get("/admin/feedback/runs")
async def list_runs(request: Request, month: str | None = None) -> JSONResponse:
    def read(conn: Any) -> list[dict[str, Any]]:
        query = select(feedback_runs).order_by(feedback_runs.c.id.desc()).limit(100)
        if month:
            query = query.where(feedback_runs.c.month == _month(month))
        return [
            {
                "id": r.id, "month": r.month, "org": r.org, "trigger": r.trigger,
                "status": r.status, "started": format_instant(r.started_at),
                "finished": format_instant(r.finished_at) if r.finished_at else None,
                "summary": orjson.loads(r.summary) if r.summary else None,
            }
            for r in conn.execute(query)
        ]  # fmt: skip

    return JSONResponse(
        await run_in_threadpool(run_read, engine_of(request), lambda u: read(u.conn))
    )


@router.get("/admin/feedback/unaddressed")
async def unaddressed(request: Request, month: str | None = None) -> JSONResponse:
    wanted = _month(month)

    def read(conn: Any) -> list[dict[str, Any]]:
        rows = conn.execute(
            select(feedback_documents)
            .where(
                feedback_documents.c.month == wanted,
                feedback_documents.c.addressee.is_(None),
                feedback_documents.c.digest != "withdrawn",
            )
            .order_by(feedback_documents.c.discharged_at)
        ).all()
        patients = read_many(conn, "Patient", [r.patient_id for r in rows])
        return [
            {
                "encounter": f"Encounter/{r.encounter_id}",
                "patient": f"Patient/{r.patient_id}",
                "name": patient_name(patients.get(r.patient_id)),
                "discharged": format_instant(r.discharged_at),
                "composition": f"Composition/{r.composition_id}",
            }
            for r in rows
        ]

    return JSONResponse(
        await run_in_threadpool(run_read, engine_of(request), lambda u: read(u.conn))
    )


@router.get("/feedback/Composition/{res_id}/print", response_class=HTMLResponse)
async def printable(res_id: str, request: Request) -> HTMLResponse:
    base = request.app.state.settings.base_url or DEFAULT_BASE
    try:
        bundle = await run_in_threadpool(
            run_read, engine_of(request), lambda u: pull.document(u.conn, res_id, base)
        )
    except FhirError as exc:
        return HTMLResponse(f"<!DOCTYPE html><p>{exc.status}: 未找到该文档</p>", exc.status)
    return HTMLResponse(render(bundle))
