"""Limits on what one caller can ask of the hub: request rates and request sizes.

- **Rates** (``throttle``, an app-wide dependency after ``authenticate``): a token bucket per
  client id for every authenticated request, per address for the open paths, per address and
  per client id asked for at the token endpoint.  Over the limit: 429 with ``Retry-After`` and
  an OperationOutcome (``throttled``).  The buckets are ``hub.security.ratelimit``'s: in
  memory, or in Redis when ``HUB_REDIS_URL`` is set.
- **Login floods**: each refused credential takes a token from a failure bucket of its address
  and of the client id it named; once one is empty the address (or the client id, at the token
  endpoint) is refused for a while before anything is verified or audited (``Guard``).
- **Sizes** (``Guard``, ASGI, before any endpoint): a body declared larger than
  ``max_body_bytes`` (64 KiB for the token endpoint) is refused 413 before a byte of it is
  read; a body without a declared length is read only up to the limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import jwt
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.fhir.errors import FhirError, Issue, PayloadTooLarge, operation_outcome
from hub.fhir.responses import FHIR_JSON, error_response
from hub.security.ratelimit import Blocks, Decision, Limiter, Rate, RateLimits

TOKEN_PATH = "/auth/token"
TOKEN_BODY_LIMIT = 64 * 1024  # a form with a client assertion is a few KiB
_PROBES = frozenset({"/healthz", "/readyz"})  # the orchestrator's probes are never refused
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Throttled(FhirError):
    status = 429
    code = "throttled"

    def __init__(self, diagnostics: str, decision: Decision) -> None:
        super().__init__(diagnostics)
        self.retry_after = decision.retry_after_header


def address_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _state(app: Any) -> tuple[Limiter, RateLimits, Blocks]:
    state = app.state
    return state.limiter, state.rate_limits, state.login_blocks


async def _charge(limiter: Limiter, key: str, rate: Rate, who: str) -> None:
    decision = await limiter.ahit(key, rate)
    if not decision.allowed:
        raise Throttled(
            f"too many requests from {who}: at most {rate.per_second:g} a second "
            f"(bursts of {rate.burst}); retry after {decision.retry_after_header} s",
            decision,
        )


def claimed_client(form: dict[str, str], authorization: str | None) -> str | None:
    """The client id a token request names (not yet proven): HTTP Basic, the form's
    client_id, or the iss of a client assertion."""
    if authorization and authorization.lower().startswith("basic "):
        import base64
        import binascii

        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return raw.partition(":")[0][:128] or None
    if form.get("client_id"):
        return form["client_id"][:128]
    assertion = form.get("client_assertion")
    if assertion:
        try:
            iss = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        return str(iss)[:128] if iss else None
    return None


async def throttle(request: Request) -> None:
    """The app-wide rate-limit dependency (runs after ``authenticate``)."""
    path = request.url.path
    if path in _PROBES:
        return
    limiter, limits, blocks = _state(request.app)
    address = address_of(request.scope)
    if path == TOKEN_PATH:
        form: dict[str, str] = {}
        if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        claimed = claimed_client(form, request.headers.get("authorization"))
        request.state.claimed_client = claimed
        await _charge(limiter, f"token:addr:{address}", limits.token_address, "this address")
        if claimed:
            left = blocks.blocked(f"client:{claimed}")
            if left:
                raise Throttled(
                    f"too many failed logins as {claimed}; retry later", Decision(False, left)
                )
            await _charge(limiter, f"token:client:{claimed}", limits.token_client, claimed)
        return
    principal = getattr(request.state, "principal", None)
    if principal is None:
        if not request.app.state.settings.auth_required:
            return  # a closed test bench: no callers to tell apart
        await _charge(limiter, f"anon:{address}", limits.anonymous, "this address")
        return
    rate = limits.for_client(principal.client_id, principal.roles)
    await _charge(limiter, f"client:{principal.client_id}", rate, principal.client_id)


def note_login_failure(app: Any, address: str, client_id: str | None) -> None:
    """A refused credential: take from the failure buckets; block what emptied one."""
    limiter, limits, blocks = _state(app)
    keys = [f"addr:{address}"] + ([f"client:{client_id}"] if client_id else [])
    for key in keys:
        decision = limiter.hit(f"fail:{key}", limits.login_failures)
        if not decision.allowed:
            blocks.block(key, decision.retry_after)


# --- before any endpoint -----------------------------------------------------------------------


async def _answer(send: Send, status: int, issue: Issue, headers: dict[str, str]) -> None:
    body = orjson.dumps(operation_outcome([issue]))
    raw = [(b"content-type", FHIR_JSON.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class Guard:
    """Refuses blocked addresses and oversized bodies before the application sees them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBES:
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        left = app.state.login_blocks.blocked(f"addr:{address_of(scope)}")
        if left:
            decision = Decision(False, left)
            issue = Issue("error", "throttled", "too many failed logins from this address")
            await _answer(send, 429, issue, {"Retry-After": decision.retry_after_header})
            return
        limit: int = app.state.settings.max_body_bytes
        if scope["path"] == TOKEN_PATH:
            limit = min(limit, TOKEN_BODY_LIMIT)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        if declared is None and scope.get("method") in _BODY_METHODS:
            # No declared length (chunked): read up to the limit here, refuse beyond it.
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await _too_large(send, limit)
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            receive = _replay(b"".join(chunks), receive)
        else:
            receive = _counting(receive, limit)
        await self.app(scope, receive, send)


async def _too_large(send: Send, limit: int) -> None:
    issue = Issue("error", "too-costly", f"the request body exceeds the limit of {limit} bytes")
    await _answer(send, 413, issue, {"Connection": "close"})


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _counting(receive: Receive, limit: int) -> Receive:
    """A body longer than it declared (defensive: the server frames by Content-Length)."""
    size = 0

    async def counting() -> Message:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
        return message

    return counting


def install_limits(app: FastAPI) -> None:
    """Limiter, rates and blocks on the app; the Guard middleware; the 429 answer."""
    from hub.security.ratelimit import community_limits, make_limiter

    app.state.limiter = make_limiter(app.state.settings.redis_url)
    app.state.rate_limits = community_limits()
    app.state.login_blocks = Blocks()
    app.add_middleware(Guard)

    async def on_throttled(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Throttled)
        response = error_response(exc)
        response.headers["Retry-After"] = exc.retry_after
        return response

    handler: Callable[[Request, Exception], Awaitable[Response]] = on_throttled
    app.add_exception_handler(Throttled, handler)
