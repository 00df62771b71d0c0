"""The FastAPI application: routers, lifespan, and the one OperationOutcome error handler."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from adapters.feeds.config import demo_community, load_community
from adapters.logsafe import describe
from hub import __version__
from hub.admin.feedback import router as feedback_admin_router
from hub.admin.outbox import router as outbox_admin_router
from hub.admin.routing import router as routing_admin_router
from hub.auth.audit import install_audit
from hub.auth.enforce import Unauthenticated, authenticate
from hub.auth.limits import install_limits, throttle
from hub.auth.routes import router as auth_router
from hub.cds.routes import router as cds_router
from hub.config import Settings, load_settings
from hub.db import make_engine
from hub.feeds.routes import router as feeds_router
from hub.fhir.errors import Conflict, FhirError, Issue, operation_outcome
from hub.fhir.operations import router as operations_router
from hub.fhir.responses import error_response, fhir_response
from hub.fhir.routes import router as fhir_router
from hub.ops.http import instrument
from hub.runtime import tune_gc
from hub.services.context import set_community
from hub.ui.routes import install as install_ui

log = logging.getLogger("hub")

_STATUS_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 415: "not-supported"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.engine.dispose()

    app = FastAPI(
        # Every endpoint proves its caller first; only the open paths of
        # profiles/security/rules.json (metadata, discovery, health) answer anyone.
        # Then each caller is held to its rate (429 past it): hub.auth.limits.
        dependencies=[Depends(authenticate), Depends(throttle)],
        title="County records hub",
        version=__version__,
        lifespan=lifespan,
        # Served below as ordinary routes, so they sit behind the same authentication.
        docs_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.engine = make_engine(
        settings.db_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    app.state.community = (
        load_community(settings.community) if settings.community else demo_community()
    )
    set_community(app.state.community)  # for services inside any unit of work
    app.include_router(auth_router)  # before Type/id catches /fhir/.well-known/...
    app.include_router(operations_router)  # before Type/id catches Type/$op
    app.include_router(fhir_router)
    app.include_router(feeds_router)
    app.include_router(cds_router)
    app.include_router(feedback_admin_router)
    app.include_router(routing_admin_router)
    app.include_router(outbox_admin_router)
    install_ui(app)  # the office's dashboard at /ui, and its login page

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="County records hub")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        # Liveness only: no I/O, so a slow store never gets a live process restarted.
        return {"status": "ok"}

    instrument(app)  # /readyz, /metrics, correlation ids and request latency
    # Every access to patient data and every refused credential leaves an AuditEvent; the
    # guard (added last, so outermost) refuses oversized bodies and login floods first.
    install_audit(app)
    install_limits(app)

    @app.exception_handler(FhirError)
    async def on_fhir_error(_request: Request, exc: FhirError) -> Response:
        response = error_response(exc)
        if isinstance(exc, Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="hub", error="invalid_token"'
        return response

    @app.exception_handler(IntegrityError)
    async def on_integrity(_request: Request, exc: IntegrityError) -> Response:
        # A unique-key race the locks did not cover: the client may retry.
        log.warning("integrity conflict: %s", type(exc.orig).__name__)
        return error_response(Conflict("a concurrent write conflicted with this one; retry"))

    @app.exception_handler(OperationalError)
    async def on_operational(_request: Request, exc: OperationalError) -> Response:
        log.error("database unavailable: %s", type(exc.orig).__name__)
        outcome = operation_outcome([Issue("fatal", "transient", "the store is unavailable")])
        return fhir_response(503, outcome)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "processing")
        outcome = operation_outcome([Issue("error", code, str(exc.detail))])
        return fhir_response(exc.status_code, outcome)

    @app.exception_handler(RequestValidationError)
    async def on_request_validation(_request: Request, exc: RequestValidationError) -> Response:
        outcome = operation_outcome([Issue("error", "invalid", str(exc.errors()[:3]))])
        return fhir_response(400, outcome)

    tune_gc()

    @app.exception_handler(Exception)
    async def on_unexpected(_request: Request, exc: Exception) -> Response:
        # Never echo the exception text: it may carry clinical content.
        log.error("unhandled error: %s", describe(exc))
        outcome = operation_outcome([Issue("fatal", "exception", "internal error")])
        return fhir_response(500, outcome)

    return app
