"""OAuth 2.0 client credentials (SMART Backend Services) and SMART discovery.

``POST /auth/token`` (form: grant_type=client_credentials, scope, and either
client_assertion_type + client_assertion (private_key_jwt) or a client secret by HTTP Basic
or form) → a bearer access token.  ``GET /.well-known/smart-configuration`` (also under
/fhir) says so; ``GET /auth/jwks`` publishes the hub's token-verification keys.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.security import clients as registry
from hub.security.clients import ASSERTION_ALGORITHMS, AuthError
from hub.security.keys import KeyRing
from hub.security.tokens import issue, token_issuer

router = APIRouter()
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def issuer_of(request: Request) -> str:
    """Tokens' issuer (their audience is this + /fhir): from the settings, so every process
    and the CLI agree whatever host name a client used."""
    return token_issuer(request.app.state.settings)


def public_base(request: Request) -> str:
    configured: str | None = request.app.state.settings.base_url
    if configured:
        return configured.rstrip("/").removesuffix("/fhir")
    return str(request.base_url).rstrip("/")


def key_ring(request: Request) -> KeyRing:
    ring: KeyRing | None = getattr(request.app.state, "key_ring", None)
    if ring is None:
        ring = request.app.state.key_ring = KeyRing(request.app.state.engine)
    return ring


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthError("invalid_client", "malformed Basic credentials", 401) from exc
    client_id, _, secret = raw.partition(":")
    return client_id, secret


def _error(exc: AuthError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="hub"'
    body = {"error": exc.error, "error_description": exc.description}
    return JSONResponse(body, status_code=exc.status, headers=headers)


@router.post("/auth/token")
async def token(request: Request) -> JSONResponse:
    try:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise AuthError("invalid_request", "send the token request as a form")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            raise AuthError("unsupported_grant_type", "grant_type must be client_credentials")
        base = issuer_of(request)
        urls = sorted({f"{public_base(request)}/auth/token", str(request.url).split("?")[0]})
        client = await run_in_threadpool(
            registry.authenticate, request.app.state.engine, form,
            _basic(request.headers.get("authorization")), urls,
        )  # fmt: skip
        ring = key_ring(request)
        answer = await run_in_threadpool(
            issue, ring, client, form.get("scope"), issuer=base, audience=f"{base}/fhir"
        )
    except AuthError as exc:
        hook = getattr(request.app.state, "on_login_failure", None)
        if hook is not None:
            await run_in_threadpool(hook, request, exc)
        return _error(exc)
    return JSONResponse(answer, headers=_NO_STORE)


def smart_configuration(base: str) -> dict[str, Any]:
    return {
        "jwks_uri": f"{base}/auth/jwks",
        "token_endpoint": f"{base}/auth/token",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt", "client_secret_basic", "client_secret_post",
        ],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
        "scopes_supported": ["system/*.cruds", "system/*.rs", "system/*.read", "system/*.write",
                             "system/sensitive.r"],
        "capabilities": ["client-confidential-asymmetric", "client-confidential-symmetric",
                         "permission-v1", "permission-v2"],
    }  # fmt: skip


@router.get("/.well-known/smart-configuration")
@router.get("/fhir/.well-known/smart-configuration")
async def discovery(request: Request) -> JSONResponse:
    return JSONResponse(smart_configuration(public_base(request)))


@router.get("/auth/jwks")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(key_ring(request).jwks))
