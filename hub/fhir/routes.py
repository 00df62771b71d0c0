"""HTTP routes of the FHIR API: turn a request into a handler call, and its Result into HTTP.

Routes are grouped by interaction with the resource type as a path parameter.  Database work
runs in the thread pool (the store is synchronous SQLAlchemy); a write is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hub.fhir import bundles, interactions
from hub.fhir.capability import capability_statement
from hub.fhir.errors import (
    BadRequest,
    FhirError,
    Issue,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    operation_outcome,
)
from hub.fhir.interactions import Result, Unit
from hub.fhir.responses import fhir_response, prefer_value, render
from hub.fhir.transaction import process_bundle
from hub.fhir.validation import parse_json
from hub.search.engine import search
from hub.search.values import DateFormatError, date_range

T = TypeVar("T")
router = APIRouter(prefix="/fhir")

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_PATCH_TYPES = ("application/json-patch+json",)
# Parameters that only shape the HTTP answer; never search criteria.
_FORMAT_PARAMS = ("_format", "_pretty")


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def base_url(request: Request) -> str:
    configured: str | None = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


def _check_format(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and not any(t in fmt for t in ("json", "fhir+json")):
        raise UnsupportedMediaType(f"_format {fmt!r} is not supported; this hub speaks JSON")


async def read_body(request: Request, allowed: tuple[str, ...] = _JSON_TYPES) -> Any:
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not accepted here; use {allowed[0]}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return parse_json(b"".join(chunks))


def run_write(engine: Engine, action: Callable[[Unit], T]) -> T:
    with engine.begin() as conn:
        unit = Unit.on(conn)
        result = action(unit)
        unit.writer.flush()
        return result


def run_read(engine: Engine, action: Callable[[Unit], T]) -> T:
    """Run a read.  PostgreSQL: autocommit, so a search costs one round trip, not three
    (BEGIN, query, ROLLBACK); a page, its includes and its total are then separate snapshots,
    which FHIR paging does not promise anyway.  SQLite: a deferred (non-locking) BEGIN."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
            return action(Unit.on(conn))
        conn.execution_options(readonly=True)
        with conn.begin():
            return action(Unit.on(conn))


def _params(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in _FORMAT_PARAMS]


# --- capability ------------------------------------------------------------------------------


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    return fhir_response(200, capability_statement(base_url(request)))


# --- system level ----------------------------------------------------------------------------


@router.post("")
@router.post("/")
async def system_bundle(request: Request) -> Response:
    _check_format(request)
    bundle = await read_body(request)
    engine, base = engine_of(request), base_url(request)
    prefer = prefer_value(request.headers.get("prefer"), "return")
    response = await run_in_threadpool(
        process_bundle, engine, bundle, base_url=base, prefer_return=prefer
    )
    return fhir_response(200, response)


@router.get("/_history")
async def system_history(request: Request) -> Response:
    return await _history(request, None, None)


# --- type level ------------------------------------------------------------------------------


@router.get("/{res_type}")
async def search_type(request: Request, res_type: str) -> Response:
    _check_format(request)
    return await _search(request, res_type, _params(request))


@router.post("/{res_type}/_search")
async def search_post(request: Request, res_type: str) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded")
    form = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
    return await _search(request, res_type, _params(request) + form)


async def _search(request: Request, res_type: str, params: list[tuple[str, str]]) -> Response:
    interactions.check_type(res_type)
    settings = request.app.state.settings
    lenient = prefer_value(request.headers.get("prefer"), "handling") == "lenient"
    base = base_url(request)

    def run(unit: Unit) -> bytes:
        result = search(
            unit.conn,
            res_type,
            params,
            lenient=lenient,
            default_count=settings.default_page_size,
            max_count=settings.max_page_size,
        )
        outcome = None
        if result.unknown:
            outcome = operation_outcome(
                [
                    Issue("warning", "not-supported", f"search parameter {name!r} ignored")
                    for name in result.unknown
                ]
            )
        return bundles.searchset(result, base=base, path=res_type, outcome=outcome)

    body = await run_in_threadpool(run_read, engine_of(request), run)
    return fhir_response(200, body)


@router.post("/{res_type}")
async def create(request: Request, res_type: str) -> Response:
    _check_format(request)
    interactions.check_type(res_type)
    resource = await read_body(request)
    if_none_exist = request.headers.get("if-none-exist")
    result: Result = await run_in_threadpool(
        run_write,
        engine_of(request),
        lambda unit: interactions.create(unit, res_type, resource, if_none_exist=if_none_exist),
    )
    return render(result, base=base_url(request), prefer=request.headers.get("prefer"))


@router.put("/{res_type}")
async def conditional_update(request: Request, res_type: str) -> Response:
    interactions.check_type(res_type)
    query = str(request.url.query)
    if not query:
        raise MethodNotAllowed("PUT needs an id or search criteria")
    resource = await read_body(request)
    if_match = request.headers.get("if-match")
    result: Result = await run_in_threadpool(
        run_write,
        engine_of(request),
        lambda unit: interactions.conditional_update(
            unit, res_type, query, resource, if_match=if_match
        ),
    )
    return render(result, base=base_url(request), prefer=request.headers.get("prefer"))


@router.delete("/{res_type}")
async def conditional_delete(request: Request, res_type: str) -> Response:
    interactions.check_type(res_type)
    query = str(request.url.query)
    if not query:
        raise MethodNotAllowed("DELETE of a whole type is not allowed; give an id or criteria")
    result: Result = await run_in_threadpool(
        run_write,
        engine_of(request),
        lambda unit: interactions.conditional_delete(unit, res_type, query),
    )
    return render(result, base=base_url(request))


@router.get("/{res_type}/_history")
async def type_history(request: Request, res_type: str) -> Response:
    interactions.check_type(res_type)
    return await _history(request, res_type, None)


# --- instance level --------------------------------------------------------------------------


@router.get("/{res_type}/{res_id}")
async def read(request: Request, res_type: str, res_id: str) -> Response:
    _check_format(request)
    result: Result = await run_in_threadpool(
        run_read, engine_of(request), lambda unit: interactions.read(unit, res_type, res_id)
    )
    stored = result.stored
    if stored is not None and request.headers.get("if-none-match") == stored.etag:
        return fhir_response(304, None, {"ETag": stored.etag})
    return render(result, base=base_url(request))


@router.put("/{res_type}/{res_id}")
async def update(request: Request, res_type: str, res_id: str) -> Response:
    _check_format(request)
    interactions.check_type(res_type)
    resource = await read_body(request)
    if_match = request.headers.get("if-match")
    result: Result = await run_in_threadpool(
        run_write,
        engine_of(request),
        lambda unit: interactions.update(unit, res_type, res_id, resource, if_match=if_match),
    )
    return render(result, base=base_url(request), prefer=request.headers.get("prefer"))


@router.patch("/{res_type}/{res_id}")
async def patch(request: Request, res_type: str, res_id: str) -> Response:
    interactions.check_type(res_type)
    operations = await read_body(request, _PATCH_TYPES + _JSON_TYPES)
    if_match = request.headers.get("if-match")
    result: Result = await run_in_threadpool(
        run_write,
        engine_of(request),
        lambda unit: interactions.patch(unit, res_type, res_id, operations, if_match=if_match),
    )
    return render(result, base=base_url(request), prefer=request.headers.get("prefer"))


@router.delete("/{res_type}/{res_id}")
async def delete(request: Request, res_type: str, res_id: str) -> Response:
    result: Result = await run_in_threadpool(
        run_write, engine_of(request), lambda unit: interactions.delete(unit, res_type, res_id)
    )
    return render(result, base=base_url(request))


@router.get("/{res_type}/{res_id}/_history")
async def instance_history(request: Request, res_type: str, res_id: str) -> Response:
    interactions.check_type(res_type)
    return await _history(request, res_type, res_id)


@router.get("/{res_type}/{res_id}/_history/{version}")
async def vread(request: Request, res_type: str, res_id: str, version: str) -> Response:
    result: Result = await run_in_threadpool(
        run_read,
        engine_of(request),
        lambda unit: interactions.vread(unit, res_type, res_id, version),
    )
    return render(result, base=base_url(request))


# --- history ---------------------------------------------------------------------------------


def parse_since(raw: str | None) -> int | None:
    """``_since`` (history, $everything) as µs since the epoch; None when not given."""
    if not raw:
        return None
    try:
        return date_range(raw)[0]
    except DateFormatError as exc:
        raise BadRequest(f"_since: {exc}", code="value") from exc


def _history_args(request: Request) -> tuple[int | None, int, tuple[int, int, int] | None]:
    params = request.query_params
    known = {"_since", "_count", "_before_key", "_format", "_pretty", "_at"}
    unknown = [k for k in params if k not in known]
    if unknown and prefer_value(request.headers.get("prefer"), "handling") != "lenient":
        raise BadRequest(f"unknown history parameter {unknown[0]!r}", code="not-supported")
    since = parse_since(params.get("_since"))
    settings = request.app.state.settings
    count = settings.default_page_size
    if params.get("_count"):
        if not params["_count"].isdigit():
            raise BadRequest("_count must be a non-negative integer", code="value")
        count = min(int(params["_count"]), settings.max_page_size)
    before = None
    if params.get("_before_key"):
        try:
            lu, rid, vid = (int(x) for x in params["_before_key"].split("."))
        except ValueError as exc:
            raise BadRequest("_before_key is not a paging key of this server") from exc
        before = (lu, rid, vid)
    return since, count, before


async def _history(request: Request, res_type: str | None, res_id: str | None) -> Response:
    since, count, before = _history_args(request)
    base = base_url(request)
    path = "/".join(p for p in (res_type, res_id, "_history") if p)

    def run(unit: Unit) -> bytes:
        from hub.store import repository as repo

        rows = repo.history(
            unit.conn,
            res_type=res_type,
            res_id=res_id,
            since=since,
            before=before,
            count=count + 1,
        )
        page, more = rows[:count], len(rows) > count
        own = [(k, v) for k, v in request.query_params.multi_items() if k != "_before_key"]
        next_url = None
        if more and page:
            key = ".".join(str(x) for x in page[-1][1])
            next_url = bundles.page_url(base, path, [*own, ("_before_key", key)])
        self_url = bundles.page_url(base, path, list(request.query_params.multi_items()))
        return bundles.history_bundle(
            [v for v, _ in page], base=base, self_url=self_url, next_url=next_url
        )

    body = await run_in_threadpool(run_read, engine_of(request), run)
    return fhir_response(200, body)


def fhir_error_to_response(exc: FhirError) -> Response:
    return fhir_response(exc.status, exc.outcome)
