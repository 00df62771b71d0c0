"""The office's view of the outbox: what the hub must still deliver, and its dead letters.

- ``GET /admin/outbox?status=pending|sent|failed&destination=&topic=&limit=``: messages,
  newest first, with attempts, the last error (a dead letter's reason: the receiver's AE/AR
  text, or why delivery gave up) and how often the office replayed it.
- ``GET /admin/outbox/{id}``: one message with its bytes and the ACK it got, as text.
- ``POST /admin/outbox/replay`` with ``{"ids": [...]}``, ``{"destination": "Endpoint/XJYZX"}``
  or nothing (every dead letter): back in the queue with fresh attempts, in their old place.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from hub.fhir.errors import BadRequest, NotFound
from hub.fhir.routes import engine_of, run_read
from hub.queue.outbox import replay
from hub.search.values import format_instant
from hub.store.schema import outbox

router = APIRouter()
_STATUSES = ("pending", "sent", "failed")
_LISTED = (
    outbox.c.id, outbox.c.destination, outbox.c.control_id, outbox.c.status, outbox.c.topic,
    outbox.c.topic_id, outbox.c.attempts, outbox.c.replays, outbox.c.last_error,
    outbox.c.created_at, outbox.c.next_attempt_at, outbox.c.sent_at, outbox.c.failed_at,
)  # fmt: skip


def _listed(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {c.name: row._mapping[c.name] for c in _LISTED}
    for name in ("created_at", "next_attempt_at", "sent_at", "failed_at"):
        value = out.pop(name)
        out[name.removesuffix("_at")] = format_instant(value) if value is not None else None
    if out["status"] != "pending":
        out["next_attempt"] = None
    return out


@router.get("/admin/outbox")
async def list_outbox(
    request: Request,
    status: str | None = None,
    destination: str | None = None,
    topic: str | None = None,
    limit: int = 100,
) -> JSONResponse:
    if status and status not in _STATUSES:
        raise BadRequest(f"status must be one of {', '.join(_STATUSES)}", code="value")
    query = select(*_LISTED).order_by(outbox.c.id.desc()).limit(max(1, min(limit, 1000)))
    for column, value in (
        (outbox.c.status, status),
        (outbox.c.destination, destination),
        (outbox.c.topic, topic),
    ):
        if value:
            query = query.where(column == value)

    def read(conn: Any) -> list[dict[str, Any]]:
        return [_listed(r) for r in conn.execute(query)]

    found = await run_in_threadpool(run_read, engine_of(request), lambda u: read(u.conn))
    return JSONResponse({"messages": found})


@router.get("/admin/outbox/{outbox_id}")
async def show_outbox_message(
    request: Request,
    # Ids are 64-bit: a larger number is a 400, not a driver error (found by schemathesis).
    outbox_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> JSONResponse:
    def read(conn: Any) -> dict[str, Any]:
        row = conn.execute(
            select(*_LISTED, outbox.c.payload, outbox.c.ack).where(outbox.c.id == outbox_id)
        ).first()
        if row is None:
            raise NotFound(f"no outbox message {outbox_id}")
        out = _listed(row)
        # Bytes in the receiver's character set: shown for reading, not for resending.
        out["payload"] = _text(row.payload)
        out["ack"] = _text(row.ack) if row.ack is not None else None
        return out

    return JSONResponse(
        await run_in_threadpool(run_read, engine_of(request), lambda u: read(u.conn))
    )


def _text(raw: bytes) -> str:
    for codec in ("utf-8", "gb18030"):
        try:
            return bytes(raw).decode(codec)
        except UnicodeDecodeError:
            continue
    return bytes(raw).decode("utf-8", errors="replace")


@router.post("/admin/outbox/replay")
async def replay_outbox(request: Request) -> JSONResponse:
    """Body: {"ids": [...]} or {"destination": "..."}; empty: every dead letter."""
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise BadRequest('the body is {"ids": [outbox ids]} or {"destination": "..."}') from exc
    if not isinstance(body, dict):
        raise BadRequest('the body is {"ids": [outbox ids]} or {"destination": "..."}')
    ids, destination = body.get("ids"), body.get("destination")
    if ids is not None and not (
        isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
    ):
        raise BadRequest("ids must be a list of outbox ids (integers)", code="value")
    if destination is not None and not isinstance(destination, str):
        raise BadRequest("destination must be a string", code="value")
    engine = engine_of(request)

    def run() -> list[int]:
        with engine.begin() as conn:
            return replay(conn, ids, destination=destination)

    replayed = await run_in_threadpool(run)
    return JSONResponse({"replayed": replayed})
