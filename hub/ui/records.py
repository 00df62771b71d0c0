"""The pages about single records: the message browser and a message (with its replay), the
patient index's open reviews (with their two decisions), and a FHIR resource as stored.

The two changes the office may make go through the hub's own services: a replay through
``hub.queue.replay`` (the same as ``POST /admin/inbox/replay``), a review decision as a FHIR
update of its Task (``hub.services.identity.reviews`` acts on it in the same transaction, as
for any client completing the Task).  Both forms carry the session's CSRF token.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from adapters.feeds.config import Community
from hub.fhir import interactions
from hub.fhir.errors import FhirError
from hub.fhir.interactions import Unit
from hub.fhir.routes import run_read, run_write
from hub.fhir.validation import SUPPORTED
from hub.queue.replay import REPLAYABLE, replay_messages
from hub.search.values import format_instant
from hub.security.checks import acting_as
from hub.services.identity import index_store
from hub.services.identity.model import PATIENT_INDEX
from hub.store import repository as repo
from hub.store.repository import now_micros
from hub.ui import hl7view, queries
from hub.ui.frame import community, message_page, page, read, router, tz
from hub.ui.session import CsrfError, check_csrf, form

STATUSES = ("pending", "applied", "failed", "rejected", "skipped")
PAGE_SIZE = 50
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_COUNT = re.compile(r"^[a-z ]{1,32}$")
VERDICTS = {
    "same-person": "办公室审核：是同一人 same person",
    "different-person": "办公室审核：不是同一人 different people",
}


def _date(raw: str | None) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _filter(request: Request) -> queries.MessageFilter:
    q = request.query_params
    status = q.get("status", "")
    return queries.MessageFilter(
        sender=q.get("sender", "").strip(),
        message_type=q.get("type", "").strip().upper(),
        control_id=q.get("control_id", "").strip(),
        patient=q.get("patient", "").strip(),
        status=status if status in STATUSES else "",
        since=_date(q.get("from")),
        until=_date(q.get("to")),
    )


@router.get("/messages")
async def messages(request: Request) -> HTMLResponse:
    wanted = _filter(request)
    raw_before = request.query_params.get("before", "")
    before = int(raw_before) if raw_before.isdigit() else None

    def load(conn: Connection) -> tuple[list[Any], list[str]]:
        found = queries.search_messages(conn, wanted, tz(request), before=before, limit=PAGE_SIZE)
        return found, queries.senders(conn)

    rows, seen = await read(request, load)
    senders = sorted(set(seen) | set(community(request).members))
    older = None
    if len(rows) == PAGE_SIZE:
        params = {k: v for k, v in request.query_params.items() if k not in ("before", "lang")}
        older = "/ui/messages?" + urlencode({**params, "before": rows[-1].id})
    return page(
        request,
        "messages.html",
        rows=rows,
        wanted=wanted,
        senders=[s for s in senders if s],
        statuses=STATUSES,
        since=request.query_params.get("from", ""),
        until=request.query_params.get("to", ""),
        older=older,
    )


def _targets(provenance: dict[str, Any] | None) -> list[str]:
    if not provenance:
        return []
    out = []
    for target in provenance.get("target") or []:
        ref = str(target.get("reference", ""))
        parts = ref.split("/")
        if len(parts) == 2 and parts[0] in SUPPORTED:
            out.append(ref)
    return out


@router.get("/messages/{inbox_id}")
async def message(request: Request, inbox_id: int) -> HTMLResponse:
    base = community(request).identifier_base

    def load(conn: Connection) -> dict[str, Any] | None:
        row = queries.message(conn, inbox_id)
        if row is None:
            return None
        found = None
        if row.status == "applied" and row.transport != "sql":
            found = queries.provenance(conn, base, row.sender, row.control_id)
        return {"row": row, "provenance": found}

    data = await read(request, load)
    if data is None:
        return message_page(request, "not.found", "messages.none", 404)
    row = data["row"]
    member = community(request).member(row.sender)
    laid = hl7view.lay_out(bytes(row.raw), member.charset if member else "UTF-8", row.error)
    replayed = request.query_params.get("replayed", "")
    counts = [
        (name, n)
        for name, _, n in (part.partition(":") for part in replayed.split(",") if part)
        if _COUNT.match(name) and n.isdigit()
    ]
    return page(
        request,
        "message.html",
        row=row,
        laid=laid,
        entries=queries.bundle_entries(row.bundle),
        bundle_pretty=(
            orjson.dumps(orjson.loads(row.bundle), option=orjson.OPT_INDENT_2).decode()
            if row.bundle
            else ""
        ),
        provenance=data["provenance"],
        targets=_targets(data["provenance"]),
        replayable=row.status in REPLAYABLE,
        replayed=counts,
    )


def _replay_as_hub(engine: Engine, members: Community, inbox_id: int) -> dict[str, int]:
    """Apply the message as the feed worker would: as the hub, not as the office's client.
    The office decided that it is replayed (hub/admin); what the message writes is its
    sender's, checked at intake, and an office client may not write clinical data itself.
    (This runs in the thread pool's copy of the request's context, so the caller is reset
    for this call only.)"""
    acting_as(None)
    return replay_messages(engine, members, [inbox_id])


@router.post("/messages/{inbox_id}/replay")
async def replay(request: Request, inbox_id: int) -> Response:
    sent = await form(request)
    try:
        check_csrf(request, sent.get("csrf", ""))
    except CsrfError:
        return message_page(request, "forbidden.title", "csrf.failed", 403)
    counts = await run_in_threadpool(
        _replay_as_hub, request.app.state.engine, community(request), inbox_id
    )
    summary = ",".join(f"{k}:{v}" for k, v in sorted(counts.items()))
    return RedirectResponse(
        f"/ui/messages/{inbox_id}?{urlencode({'replayed': summary or 'none:0'})}", 303
    )


# --- the patient index's reviews --------------------------------------------------------------


@router.get("/reviews")
async def reviews(request: Request) -> HTMLResponse:
    found = await read(request, queries.open_reviews)
    decided = request.query_params.get("decided", "")
    return page(
        request,
        "reviews.html",
        reviews=found,
        decided=decided if decided in ("same", "different", "already") else "",
    )


def _decide(unit: Unit, task_id: str, verdict: str, who: str) -> bool:
    """Complete the review Task with the office's verdict; False if it was decided already."""
    review = index_store.review_by_task(unit.conn, task_id)
    if review is None or review.status != "open":
        return False
    task = orjson.loads(repo.read(unit.conn, "Task", task_id).content or b"{}")
    if task.get("status") == "completed":
        return False
    moment = format_instant(now_micros())
    task["status"] = "completed"
    task["businessStatus"] = {
        "coding": [{"system": PATIENT_INDEX, "code": verdict}],
        "text": VERDICTS[verdict],
    }
    task["lastModified"] = moment
    note = {"authorString": who, "time": moment, "text": VERDICTS[verdict]}
    task["note"] = [*(task.get("note") or []), note]
    interactions.update(unit, "Task", task_id, task)
    return True


@router.post("/reviews/{task_id}")
async def decide(request: Request, task_id: str) -> Response:
    sent = await form(request)
    try:
        check_csrf(request, sent.get("csrf", ""))
    except CsrfError:
        return message_page(request, "forbidden.title", "csrf.failed", 403)
    verdict = sent.get("verdict", "")
    if verdict not in VERDICTS or not _ID.match(task_id):
        return message_page(request, "not.found", "reviews.none", 404)
    principal = getattr(request.state, "principal", None)
    who = f"{principal.client_id} (dashboard)" if principal is not None else "dashboard"
    try:
        done = await run_in_threadpool(
            run_write,
            request.app.state.engine,
            lambda unit: _decide(unit, task_id, verdict, who),
        )
    except FhirError as exc:
        return page(request, "notice.html", status=exc.status, title_key="forbidden.title",
                    text_key="", detail=str(exc))  # fmt: skip
    outcome = ("same" if verdict == "same-person" else "different") if done else "already"
    return RedirectResponse(f"/ui/reviews?decided={outcome}", 303)


# --- a resource as stored -----------------------------------------------------------------------


def _references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.count("/") == 1 and ref.split("/")[0] in SUPPORTED:
            found.append(ref)
        for value in node.values():
            found += _references(value)
    elif isinstance(node, list):
        for item in node:
            found += _references(item)
    return found


@router.get("/resources/{res_type}/{res_id}")
async def resource(request: Request, res_type: str, res_id: str) -> HTMLResponse:
    if res_type not in SUPPORTED or not _ID.match(res_id):
        return message_page(request, "not.found", "resource.title", 404)
    try:
        result = await run_in_threadpool(
            run_read,
            request.app.state.engine,
            lambda unit: interactions.read(unit, res_type, res_id),
        )
    except FhirError as exc:
        return page(request, "notice.html", status=exc.status, title_key="not.found",
                    text_key="", detail=str(exc))  # fmt: skip
    assert result.stored is not None
    content = orjson.loads(result.stored.content or b"{}")
    return page(
        request,
        "resource.html",
        res_type=res_type,
        res_id=res_id,
        pretty=orjson.dumps(content, option=orjson.OPT_INDENT_2).decode(),
        references=list(dict.fromkeys(_references(content))),
    )
