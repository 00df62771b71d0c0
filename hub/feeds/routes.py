"""HTTP intake: ``POST /hl7v2`` with one or more raw HL7 v2 messages; the answer is their ACKs.

For members whose integration engine speaks HTTP rather than MLLP.  The same intake as the
MLLP listener (parse, map, store durably, acknowledge); the body may hold MLLP-framed blocks,
an FHS/BHS batch or plain concatenated messages.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from adapters.hl7v2.batch import split_messages
from hub.feeds.service import reject_unexpected
from hub.queue.intake import receive
from hub.queue.replay import replay_messages
from hub.search.values import format_instant
from hub.security.checks import Forbidden, acting_as, caller
from hub.store.schema import inbox

router = APIRouter()
ER7 = "x-application/hl7-v2+er7"


@router.post("/hl7v2", include_in_schema=True)
async def hl7v2_intake(request: Request) -> Response:
    body = await request.body()
    limit: int = request.app.state.settings.max_body_bytes
    if len(body) > limit:
        ack = reject_unexpected(body[:4096], "")
        return Response(ack, status_code=413, media_type=ER7)
    peer = request.client.host if request.client else None
    engine, community = request.app.state.engine, request.app.state.community
    # A member's system sends only as that member; the office may relay anyone's messages.
    who = caller()
    bound = who.org if who is not None and not who.is_office else None
    if who is not None and not who.is_office and (bound is None or community.member(bound) is None):
        raise Forbidden("only a member's system may send HL7 v2 messages")
    acks: list[bytes] = []
    for message in split_messages(body) or [body]:
        receipt = await run_in_threadpool(
            lambda m=message: receive(
                engine, m, community, transport="http", peer=peer, bound_sender=bound
            )
        )
        if receipt.ack is not None:
            acks.append(receipt.ack)
    worker = getattr(request.app.state, "feed_worker", None)
    if worker is not None:
        worker.wake()
    return Response(b"\n".join(acks), media_type=ER7)


# --- the office's view of the inbox (authentication arrives with issue 8) ---------------------

_LISTED = (
    inbox.c.id,
    inbox.c.transport,
    inbox.c.peer,
    inbox.c.sender,
    inbox.c.application,
    inbox.c.control_id,
    inbox.c.message_type,
    inbox.c.status,
    inbox.c.error,
    inbox.c.received_at,
    inbox.c.applied_at,
    inbox.c.attempts,
)


def _listed(row: Any) -> dict[str, Any]:
    out = {c.name: row._mapping[c.name] for c in _LISTED}
    out["received_at"] = format_instant(row.received_at)
    out["applied_at"] = format_instant(row.applied_at) if row.applied_at else None
    return out


@router.get("/admin/inbox")
async def list_inbox(
    request: Request,
    status: str | None = None,
    sender: str | None = None,
    control_id: str | None = None,
    limit: int = 100,
) -> JSONResponse:
    query = select(*_LISTED).order_by(inbox.c.id.desc()).limit(max(1, min(limit, 1000)))
    if status:
        query = query.where(inbox.c.status == status)
    if sender:
        query = query.where(inbox.c.sender == sender)
    if control_id:
        query = query.where(inbox.c.control_id == control_id)

    def run() -> list[dict[str, Any]]:
        with request.app.state.engine.connect() as conn:
            return [_listed(r) for r in conn.execute(query)]

    return JSONResponse({"messages": await run_in_threadpool(run)})


@router.get("/admin/inbox/{inbox_id}")
async def show_inbox_message(
    request: Request,
    # Ids are 64-bit: a larger number is a 400, not a driver error (found by schemathesis).
    inbox_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
) -> JSONResponse:
    def run() -> dict[str, Any] | None:
        with request.app.state.engine.connect() as conn:
            row = conn.execute(
                select(*_LISTED, inbox.c.raw, inbox.c.bundle).where(inbox.c.id == inbox_id)
            ).first()
        if row is None:
            return None
        out = _listed(row)
        out["raw"] = row.raw.decode("utf-8", errors="replace")
        out["bundle"] = orjson.loads(row.bundle) if row.bundle else None
        return out

    found = await run_in_threadpool(run)
    if found is None:
        return JSONResponse({"error": f"no inbox message {inbox_id}"}, status_code=404)
    return JSONResponse(found)


@router.post("/admin/inbox/replay")
async def replay_inbox(request: Request) -> JSONResponse:
    """Body: {"ids": [..]} (default: every failed message)."""
    body = await request.body()
    try:
        ids = orjson.loads(body).get("ids") if body.strip() else None
        if ids is not None and not all(isinstance(i, int) for i in ids):
            raise ValueError
    except (ValueError, AttributeError, orjson.JSONDecodeError):
        return JSONResponse({"error": 'the body is {"ids": [inbox ids]}'}, status_code=400)
    engine, community = request.app.state.engine, request.app.state.community

    def replay() -> dict[str, int]:
        # The office replays what a member sent: it is applied as the feed worker applies it,
        # not held to the office's own (read-only) scopes.
        acting_as(None)
        return replay_messages(engine, community, ids)

    counts = await run_in_threadpool(replay)
    return JSONResponse({"result": counts})
