"""FHIR Bulk Data export (Bulk Data Access IG v2.0.0, the async request pattern).

- Kick-off: ``GET|POST /fhir/$export``, ``/fhir/Patient/$export``, ``/fhir/Group/{id}/$export``
  with ``Prefer: respond-async``; parameters ``_outputFormat``, ``_type``, ``_since`` (query, or
  a Parameters body on POST).  Answers 202 with ``Content-Location`` naming the status URL.
- Status: ``GET /fhir/$export-status/{job}``: 202 with ``X-Progress`` while it runs, 200 with
  the manifest when done, 500 with an OperationOutcome when it failed, 404 when unknown.
  ``DELETE`` cancels the job (or tells the hub the client is done) and deletes its files.
- Files: ``GET /fhir/$export-file/{job}/{file}``: ``application/fhir+ndjson``, streamed from the
  store in slices.

The work itself is done by ``hub.services.export`` (a runner thread in ``hub serve`` and
``hub worker``); a kick-off wakes a runner of this process when there is one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from hub.fhir.errors import BadRequest, Issue, NotFound, info_outcome, operation_outcome
from hub.fhir.operations.parameters import parameters
from hub.fhir.responses import fhir_response, http_date, prefer_value
from hub.fhir.routes import base_url, engine_of, parse_since, read_body
from hub.search.values import format_instant
from hub.security.checks import caller
from hub.services.export import jobs, scope
from hub.services.export.runner import wake_runners

router = APIRouter()

NDJSON = "application/fhir+ndjson"
_OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
_KNOWN = frozenset({"_outputFormat", "_type", "_since"})
_SHAPE_ONLY = frozenset({"_format", "_pretty"})
_RETRY_AFTER = "2"  # seconds; jobs of a county's data take seconds to minutes
_SLICE = 1024 * 1024


def _body_items(body: Any) -> list[tuple[str, str]]:
    """A POST kick-off's Parameters as (name, text) pairs, like query parameters."""
    items = []
    for part in parameters(body):
        name = part.get("name")
        if not isinstance(name, str):
            raise BadRequest("every Parameters.parameter needs a name", code="structure")
        found = [v for k, v in part.items() if k.startswith("value")]
        if len(found) != 1:
            raise BadRequest(f"parameter {name!r} needs one value[x]", code="invalid")
        # Non-text values (valueBoolean, ...) only matter to parameters this hub refuses.
        value = found[0] if isinstance(found[0], str) else orjson.dumps(found[0]).decode()
        items.append((name, value))
    return items


def _parse(
    items: list[tuple[str, str]], kind: str, *, lenient: bool
) -> tuple[list[str] | None, int | None, list[Issue]]:
    """``_type`` and ``_since`` of a kick-off, after checking every parameter given."""
    types: list[str] = []
    since_raw: list[str] = []
    warnings: list[Issue] = []
    for name, value in items:
        if name in _SHAPE_ONLY:
            continue
        if name not in _KNOWN:
            if lenient:
                warnings.append(Issue("warning", "not-supported", f"parameter {name!r} ignored"))
                continue
            raise BadRequest(
                f"parameter {name!r} is not supported by this hub's $export", code="not-supported"
            )
        if name == "_outputFormat":
            # A '+' sent unencoded in a query string arrives as a space.
            wanted = value.strip().replace(" ", "+").lower()
            if wanted not in _OUTPUT_FORMATS:
                raise BadRequest(
                    f"_outputFormat {value!r} is not supported; this hub writes {NDJSON}",
                    code="not-supported",
                )
        elif name == "_type":
            types += [t.strip() for t in value.split(",") if t.strip()]
        else:
            since_raw.append(value)
    if len(since_raw) > 1:
        raise BadRequest("_since may appear once", code="invalid")
    since = parse_since(since_raw[0]) if since_raw else None
    checked = scope.check_types(kind, types)
    return checked or None, since, warnings


async def _kick_off(request: Request, kind: str, group_id: str | None = None) -> Response:
    prefer = request.headers.get("prefer")
    if prefer_value(prefer, "respond-async") is None:
        raise BadRequest(
            "a Bulk Data export runs asynchronously: send the header Prefer: respond-async",
            code="required",
        )
    items = list(request.query_params.multi_items())
    if request.method == "POST" and (await request.body()).strip():
        items += _body_items(await read_body(request))
    types, since, warnings = _parse(
        items, kind, lenient=prefer_value(prefer, "handling") == "lenient"
    )
    base = base_url(request)
    path = {"system": "$export", "patient": "Patient/$export"}.get(
        kind, f"Group/{group_id}/$export"
    )
    # The manifest's ``request``: the kick-off URL (a POST's parameters are in its body).
    query = request.url.query if request.method == "GET" else ""
    kick_off_url = f"{base}/{path}" + (f"?{query}" if query else "")
    engine = engine_of(request)
    who = caller()

    def create() -> str:
        with engine.begin() as conn:
            if group_id is not None:
                scope.read_group(conn, group_id)  # 404 / 400 now, not in the manifest later
            return jobs.create(
                conn, kind=kind, request=kick_off_url, group_id=group_id, types=types,
                since=since, requested_by=who.client_id if who else None,
            )  # fmt: skip

    job_id = await run_in_threadpool(create)
    wake_runners()
    outcome = operation_outcome(
        [Issue("information", "informational", f"export {job_id} accepted"), *warnings]
    )
    return fhir_response(202, outcome, {"Content-Location": f"{base}/$export-status/{job_id}"})


@router.get("/$export")
@router.post("/$export")
async def export_system(request: Request) -> Response:
    return await _kick_off(request, "system")


@router.get("/Patient/$export")
@router.post("/Patient/$export")
async def export_patients(request: Request) -> Response:
    return await _kick_off(request, "patient")


@router.get("/Group/{group_id}/$export")
@router.post("/Group/{group_id}/$export")
async def export_group(request: Request, group_id: str) -> Response:
    return await _kick_off(request, "group", group_id)


def _manifest(job: jobs.Job, files: list[jobs.FileInfo], base: str) -> dict[str, Any]:
    def entry(f: jobs.FileInfo) -> dict[str, Any]:
        return {"type": f.res_type, "url": f"{base}/$export-file/{job.id}/{f.id}", "count": f.count}

    return {
        "transactionTime": format_instant(job.transaction_time or job.created_at),
        "request": job.request,
        # Security (SMART backend services) arrives with issue 8; until then files are open.
        "requiresAccessToken": True,
        "output": [entry(f) for f in files if not f.is_error],
        "error": [entry(f) for f in files if f.is_error],
    }


def _own(job: jobs.Job) -> bool:
    """An export's status and files are its requester's (and the office's): to anyone else
    the job does not exist."""
    who = caller()
    return who is None or who.is_office or job.requested_by == who.client_id


@router.get("/$export-status/{job_id}")
async def export_status(request: Request, job_id: str) -> Response:
    engine = engine_of(request)

    def load() -> tuple[jobs.Job | None, list[jobs.FileInfo]]:
        with jobs.reading(engine) as conn:
            job = jobs.get(conn, job_id)
            found = jobs.files(conn, job_id) if job and job.status == "completed" else []
            return job, found

    job, files = await run_in_threadpool(load)
    if job is None or not _own(job):
        raise NotFound(f"export {job_id} is not known (never started, cancelled or expired)")
    if job.status in jobs.ACTIVE:
        progress = job.progress or job.status
        return Response(
            status_code=202,
            headers={"X-Progress": progress.encode("ascii", "replace").decode(),
                     "Retry-After": _RETRY_AFTER},
        )  # fmt: skip
    if job.status == "failed":
        return fhir_response(500, job.error or info_outcome("the export failed"))
    headers = {"Expires": http_date((job.finished_at or job.created_at) + jobs.KEEP_FOR)}
    body = orjson.dumps(_manifest(job, files, base_url(request)))
    return Response(body, status_code=200, media_type="application/json", headers=headers)


@router.delete("/$export-status/{job_id}")
async def export_cancel(request: Request, job_id: str) -> Response:
    engine = engine_of(request)

    def cancel() -> bool:
        with engine.begin() as conn:
            job = jobs.get(conn, job_id)
            return job is not None and _own(job) and jobs.remove(conn, job_id)

    if not await run_in_threadpool(cancel):
        raise NotFound(f"export {job_id} is not known (never started, cancelled or expired)")
    return fhir_response(202, info_outcome(f"export {job_id} cancelled; its files are deleted"))


@router.get("/$export-file/{job_id}/{file_id}")
async def export_file(request: Request, job_id: str, file_id: str) -> Response:
    engine = engine_of(request)
    # isdigit() alone admits '¹' and '٣', which int() refuses (a 500 found by schemathesis).
    if not (file_id.isascii() and file_id.isdigit()):
        raise NotFound(f"file {file_id} of export {job_id} is not known")
    number = int(file_id)

    def exists() -> bool:
        with jobs.reading(engine) as conn:
            job = jobs.get(conn, job_id)
            ok = job is not None and job.status == "completed" and _own(job)
            return ok and any(f.id == number for f in jobs.files(conn, job_id))

    if not await run_in_threadpool(exists):
        raise NotFound(f"file {file_id} of export {job_id} is not known")

    def slices() -> Iterator[bytes]:
        # One short read per slice (Starlette iterates this in its thread pool), so a slow
        # client holds neither a pooled connection nor the whole file.
        start = 0
        while True:
            with jobs.reading(engine) as conn:
                chunk = jobs.file_slice(conn, job_id, number, start, _SLICE)
            if not chunk:
                return
            yield chunk
            start += len(chunk)

    return StreamingResponse(slices(), media_type=NDJSON)
