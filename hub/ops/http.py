"""The HTTP side of operations: a correlation id and a latency observation for every request,
``/readyz`` and ``/metrics`` on the API.

The request middleware wraps the whole application, outside Starlette's error middleware, so
the 500 answer of an unexpected error carries its ``X-Request-ID`` too and the error's log line
its correlation id.  It is plain ASGI (no BaseHTTPMiddleware): streaming bodies (Bulk Data
files) pass straight through, and the contextvar it sets is the one the handlers see.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.ops import health, metrics
from hub.ops.logs import SAFE_ID, correlated, new_correlation_id

log = logging.getLogger("hub.http")

REQUEST_ID = "x-request-id"
_INCOMING = (b"x-request-id", b"x-correlation-id")
# Probes and scrapes come every few seconds: measured, but not logged line by line.
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name in _INCOMING:
            text = value.decode("latin-1").strip()
            # A caller's id is honoured only when it is plainly an id (no spaces, no text).
            if SAFE_ID.match(text):
                return text
    return None


def route_template(scope: Scope) -> str:
    """The matched route's template (``/fhir/{res_type}/{res_id}``), never the raw path:
    a bounded label, and nothing a caller typed (identifiers) ends up in metrics or logs."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestObservability:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = _incoming_id(scope) or new_correlation_id()
        status = 500  # unless a response starts: an exception before it is a server error
        started = time.perf_counter()
        header = (REQUEST_ID.encode(), cid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        method = str(scope.get("method", ""))
        with correlated(cid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                took = time.perf_counter() - started
                route = route_template(scope)
                metrics.HTTP_LATENCY.labels(method, route, f"{status // 100}xx").observe(took)
                if route not in _QUIET:
                    log.info(
                        "request",
                        extra={
                            "method": method,
                            "route": route,
                            "status": status,
                            "duration_ms": round(took * 1000, 2),
                        },
                    )


router = APIRouter(include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    settings = request.app.state.settings
    result = await run_in_threadpool(
        health.check,
        request.app.state.engine,
        redis_url=settings.redis_url,
        thresholds=health.Thresholds(settings.ready_max_inbox_depth, settings.ready_max_inbox_age),
    )
    if not result.ready:
        log.warning("not ready: %s", ", ".join(result.failed))
    return JSONResponse(result.body(), status_code=200 if result.ready else 503)


@router.get("/metrics")
async def metrics_endpoint(request: Request) -> Response:
    text = await run_in_threadpool(metrics.render, request.app.state.engine)
    return Response(text, media_type=metrics.CONTENT_TYPE)


def instrument(app: FastAPI) -> None:
    """Add /readyz and /metrics, and put the request middleware outside everything else."""
    app.include_router(router)
    build = app.build_middleware_stack

    def build_with_observability() -> Any:
        return RequestObservability(build())

    # Starlette builds the stack on the first request; wrapping the builder (rather than
    # add_middleware, which nests inside ServerErrorMiddleware) makes ours the outermost.
    app.build_middleware_stack = build_with_observability  # type: ignore[method-assign]
