"""The office's view of order routing: ``GET /admin/routing``.

``?status=sent|accepted|resulted|delivered|failed|cancelled&destination=XJYZX&orderer=QSWSY
&month=2026-10&limit=100``: routed orders, newest first, each with its timestamps, its error
and where its latest message (order, cancel or result) stands in the outbox.  Dead letters
themselves are at ``GET /admin/outbox?status=failed`` and are replayed with
``POST /admin/outbox/replay``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.fhir.errors import BadRequest
from hub.fhir.routes import engine_of, run_read
from hub.services.routing import listing
from hub.services.routing.status import STATUSES

router = APIRouter()


@router.get("/admin/routing")
async def list_routed(
    request: Request,
    status: str | None = None,
    destination: str | None = None,
    orderer: str | None = None,
    month: str | None = None,
    limit: int = 100,
) -> JSONResponse:
    if status and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}", code="value")

    def read(conn: Any) -> list[dict[str, Any]]:
        return listing.routed(
            conn, status=status, destination=destination, orderer=orderer, month=month,
            limit=limit,
        )  # fmt: skip

    found = await run_in_threadpool(run_read, engine_of(request), lambda u: read(u.conn))
    return JSONResponse({"orders": found})
