"""The HTTP side of the audit trail: reads, searches, exports and failures, and login failures.

``AuditMiddleware`` (ASGI, around the FHIR API) holds each ``/fhir`` answer until its
AuditEvent is in the store; if the event cannot be written the client gets a 500
OperationOutcome instead of the data, so nothing leaves the hub unrecorded.  Writes are audited
inside their own unit of work (``hub.services.audit_trail``); this side adds the event for what
the unit did not record: reads and searches, operations that only read, a Bulk Data kick-off
and each file download (recorded before the file's first byte), and refused or failed
requests (the unit's own event rolled back with it).  The middleware sees the caller that
``hub.auth.enforce`` proved (``request.state.principal``); without one (the hub's own work,
security switched off) nothing is audited.

``on_login_failure`` is the hook the token endpoint and the bearer-token check call for every
refused credential: it records the failure (who it claimed to be, from where, why) and feeds
the login-flood limits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
import orjson
from fastapi import FastAPI, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.logsafe import describe
from hub.auth.limits import address_of, note_login_failure
from hub.fhir.errors import Issue, operation_outcome
from hub.fhir.responses import FHIR_JSON
from hub.ops.logs import correlation_id
from hub.security import audit, audit_context
from hub.security.patient_data import is_fhir_id
from hub.security.tokens import Principal
from hub.services import audit_trail
from hub.store.repository import now_micros

log = logging.getLogger("hub.audit")
_TRANSACTIONS = ("transaction", "batch")
_INLINE_BYTES = 64 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _who(principal: Principal, record: audit_context.RequestAudit) -> audit.Who:
    return audit.Who(principal.client_id, principal.org, principal.token_id or None,
                     record.address)  # fmt: skip


def _form(receive: Receive, chunks: list[bytes]) -> Receive:
    """Keep a POST _search's form: its criteria are the query the event records."""

    async def teeing() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
        return message

    return teeing


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/fhir" or path.startswith("/fhir/")):
            await self.app(scope, receive, send)
            return
        interaction = audit_context.classify(scope["method"], path)
        if interaction is None:
            await self.app(scope, receive, send)
            return
        record = audit_context.RequestAudit(
            interaction, path=path, address=address_of(scope),
            query=scope.get("query_string", b"").decode("latin-1"), request_id=correlation_id(),
        )  # fmt: skip
        form: list[bytes] = []
        if scope["method"] == "POST" and path.endswith("/_search"):
            receive = _form(receive, form)
        start: Message | None = None
        body: list[bytes] = []
        mode = "hold"  # hold the answer | pass it on (already audited) | drop it (refused)

        async def capture(message: Message) -> None:
            nonlocal start, mode
            if mode == "pass":
                await send(message)
                return
            if mode == "drop":
                return
            if message["type"] == "http.response.start":
                start = message
                if interaction.operation == "$export-file" and message["status"] == 200:
                    # A file is streamed: its event is written before its first byte.
                    if await self._audit(scope, record, 200, b""):
                        mode = "pass"
                        await send(message)
                    else:
                        mode = "drop"
                        await _refuse(send)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            payload = b"".join(body)
            if form:
                record.query = _joined(record.query, b"".join(form))
            if not await self._audit(scope, record, int(start["status"]), payload, start):
                mode = "drop"
                await _refuse(send)
                return
            await send(start)
            await send({"type": "http.response.body", "body": payload})

        token = audit_context.begin_request(record)
        try:
            await self.app(scope, receive, capture)
        except Exception:
            if start is None:
                # An unexpected error (the server's 500 comes from outside): recorded as a
                # serious failure if it can be, and raised on either way.
                await self._audit(scope, record, 500, b"")
            raise
        finally:
            audit_context.end_request(token)

    async def _audit(self, scope: Scope, record: audit_context.RequestAudit, status: int,
                     payload: bytes, start: Message | None = None) -> bool:  # fmt: skip
        """Write the answer's event if it needs one; False when it could not be written."""
        principal = (scope.get("state") or {}).get("principal")
        if not isinstance(principal, Principal) or status == 429:
            return True  # no caller (the hub's own work, security off), or a throttled flood
        done = record.audited and status < 400
        if done and record.interaction.code not in _TRANSACTIONS:
            return True  # the write's unit of work recorded it
        location = _header({"headers": start["headers"]}, b"content-location") if start else None
        app = scope["app"]
        args = (app.state.engine, principal, record, status, payload, location)
        try:
            # A small answer is read here; a large one (a searchset page) or an export file
            # (a lookup) in the thread pool, so the event loop never waits on either.
            if len(payload) < _INLINE_BYTES and record.interaction.operation != "$export-file":
                event = _answer_event(*args)
            else:
                event = await run_in_threadpool(_answer_event, *args)
            if event is not None:
                await asyncio.wrap_future(app.state.audit_writer.submit(event))
                record.audited = True
        except Exception as exc:
            log.error("audit event not written, answer withheld: %s", describe(exc))
            return False
        return True


def _joined(query: str, form: bytes) -> str:
    items = parse_qsl(query, keep_blank_values=True)
    items += parse_qsl(form.decode("utf-8", "replace"), keep_blank_values=True)
    return urlencode(items)


async def _refuse(send: Send) -> None:
    body = orjson.dumps(operation_outcome([Issue(
        "fatal", "exception", "the access could not be recorded in the audit trail; nothing "
        "was returned")]))  # fmt: skip
    headers = [(b"content-type", FHIR_JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _answer_event(engine: Engine, principal: Principal, record: audit_context.RequestAudit,
                  status: int, payload: bytes,
                  location: str | None) -> dict[str, Any] | None:  # fmt: skip
    """The event of an answer about to leave, or None when it involves no patient data."""
    interaction = record.interaction
    parsed: Any = None
    if payload[:1] == b"{":
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
    job = job_name = None
    if interaction.operation == "$export-file":
        job, job_name = _export_file(engine, record, status)
    elif interaction.operation == "$export" and location and status == 202:
        job = location.rstrip("/").rsplit("/", 1)[-1]
    return audit.response_event(
        interaction, _who(principal, record), office=principal.is_office, status=status,
        body=parsed, recorded=now_micros(), query=record.query, job=job, job_name=job_name,
        request_id=record.request_id,
    )  # fmt: skip


def _export_file(engine: Engine, record: audit_context.RequestAudit,
                 status: int) -> tuple[str | None, str | None]:  # fmt: skip
    """The job and a name for the file of ``/fhir/$export-file/{job}/{file}``."""
    from hub.services.export import jobs

    parts = record.path.split("/$export-file/", 1)[-1].split("/")
    if len(parts) != 2 or not all(is_fhir_id(p) for p in parts):
        return None, None  # a path trick: the event says the download was refused, no more
    job_id, file_id = parts
    if status != 200:
        return job_id, f"file {file_id}"
    with jobs.reading(engine) as conn:
        found = [f for f in jobs.files(conn, job_id) if str(f.id) == file_id]
    if not found:
        return job_id, f"file {file_id}"
    return job_id, f"file {file_id}: {found[0].count} {found[0].res_type}"


# --- login failures ----------------------------------------------------------------------------


def _claimed_by_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    try:
        sub = jwt.decode(header[7:].strip(), options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return str(sub)[:128] if sub else None


def on_login_failure(request: Request, exc: Exception) -> None:
    """Record a refused credential and count it against the caller's failure budget.

    Raises if the event cannot be written: the request then fails (500) rather than the
    failure going unrecorded."""
    # The token endpoint's throttle noted the client id the request named; elsewhere the
    # refused token's own (unverified) subject is the best name there is.
    claimed = getattr(request.state, "claimed_client", None) or _claimed_by_token(request)
    address = address_of(request.scope)
    error = getattr(exc, "error", None)
    reason = f"{error}: {getattr(exc, 'description', exc)}" if error else str(exc)
    event = audit.login_failure_event(
        audit.Who(claimed, address=address, claimed=True), recorded=now_micros(),
        description=f"{request.method} {request.url.path}: {reason}",
        request_id=correlation_id(),
    )  # fmt: skip
    try:
        request.app.state.audit_writer.write(event)
    finally:
        note_login_failure(request.app, address, claimed)


def install_audit(app: FastAPI) -> None:
    app.state.audit_writer = audit_trail.GroupWriter(app.state.engine)
    app.add_middleware(AuditMiddleware)
    app.state.on_login_failure = on_login_failure


async def record_disclosure(
    request: Request, operation: str, *, patients: list[str], resources: list[str]
) -> bool:
    """The event of an answer outside ``/fhir`` that tells of patient data (a CDS Hooks card
    says a patient has a recent result): written before it leaves, as the FHIR API's are.
    False when it could not be written: the caller then withholds the answer."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        return True  # security off, or the hub's own work
    interaction = audit_context.Interaction("operation", operation=operation)
    who = audit.Who(principal.client_id, principal.org, principal.token_id or None,
                    address_of(request.scope))  # fmt: skip
    event = audit.rest_event(
        interaction, who, recorded=now_micros(), patients=patients, resources=resources,
        request_id=correlation_id(),
    )  # fmt: skip
    try:
        await asyncio.wrap_future(request.app.state.audit_writer.submit(event))
    except Exception as exc:
        log.error("audit event not written, answer withheld: %s", describe(exc))
        return False
    return True
