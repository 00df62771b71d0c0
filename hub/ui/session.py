"""The dashboard's session: log in with an office client's own credentials, keep a short-lived
token in an HttpOnly cookie, and protect the forms that change something with a CSRF token.

- The hub checks the client id and secret as its token endpoint does
  (``hub.security.clients.authenticate``) and refuses clients that are not the office's or an
  administrator's.  The cookie holds an access token the hub signed, for the audience
  ``<issuer>/ui`` (``hub.auth.enforce`` accepts it on /ui paths only), living
  ``SESSION_SECONDS``; after that the office logs in again.  ``SameSite=Strict`` keeps other
  sites' pages from sending it, ``HttpOnly`` keeps scripts from reading it.
- CSRF: every form that changes something carries ``HMAC(session token, "hub-ui-csrf")``.  It
  needs no server-side state (any API replica can check it) and no other site can compute it,
  since it cannot read the cookie.  The login form, before any session exists, is a
  double-submit: a random value in a cookie and in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hub.auth.enforce import SESSION_COOKIE, session_audience
from hub.auth.routes import key_ring
from hub.security import clients as registry
from hub.security.clients import AuthError
from hub.security.scopes import ADMIN
from hub.security.tokens import issue, token_issuer

log = logging.getLogger("hub.ui")

SESSION_SECONDS = 30 * 60
LOGIN_COOKIE = "hub_ui_login"
OFFICE_ROLES = frozenset({"office", "admin"})
MAX_FORM_BYTES = 64 * 1024


class CsrfError(Exception):
    pass


@dataclass(frozen=True)
class Login:
    token: str
    client_id: str


class LoginRefused(Exception):
    """``reason`` is an i18n key the login page shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form body (the dashboard's forms are all small and urlencoded)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def secure_cookies(request: Request) -> bool:
    """Mark cookies Secure when the office reaches the hub over HTTPS (directly or as its
    public base URL says, behind a proxy that ends TLS)."""
    base = request.app.state.settings.base_url or ""
    return request.url.scheme == "https" or str(base).startswith("https://")


async def log_in(request: Request, client_id: str, secret: str) -> Login:
    engine = request.app.state.engine
    try:
        client = await run_in_threadpool(
            registry.authenticate,
            engine,
            {"client_id": client_id, "client_secret": secret},
            None,
            [],
        )
    except AuthError as exc:
        await _refused(request, client_id, exc)
        raise LoginRefused("login.failed") from exc
    if not (client.roles & OFFICE_ROLES) or ADMIN not in client.scopes.split():
        await _refused(request, client_id, AuthError("access_denied", "not an office client"))
        raise LoginRefused("login.not.office")
    issuer = token_issuer(request.app.state.settings)
    granted = issue(
        key_ring(request),
        client,
        None,
        issuer=issuer,
        audience=session_audience(issuer),
        seconds=SESSION_SECONDS,
    )
    log.info("dashboard login for client %r", client.client_id)
    return Login(str(granted["access_token"]), client.client_id)


async def _refused(request: Request, client_id: str, exc: AuthError) -> None:
    """A refused login is a refused credential like any other: the app's hook (when it has
    one) records it and counts it against the address's and the client's failure budgets, so
    the login form is no way around the token endpoint's flood limits."""
    # Never the secret; the client id is the office's own name for itself.
    log.warning("dashboard login refused for client %r: %s", client_id[:64], exc.error)
    hook = getattr(request.app.state, "on_login_failure", None)
    if hook is not None:
        request.state.claimed_client = client_id[:128] or None
        await run_in_threadpool(hook, request, exc)


def set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/ui", httponly=True, samesite="strict")


def login_nonce(request: Request) -> str:
    """The login form's double-submit value: the one in the cookie, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def set_login_nonce(response: Response, request: Request, nonce: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def check_login_nonce(request: Request, sent: str) -> None:
    held = request.cookies.get(LOGIN_COOKIE, "")
    if not held or not hmac.compare_digest(held, sent):
        raise CsrfError("login form")


def _session_secret(request: Request) -> bytes:
    """What the CSRF token is derived from: the session cookie; else the bearer token of a
    script calling /ui; else, with security switched off (a closed test bench), a key of
    this process."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie.encode()
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip().encode()
    key: bytes | None = getattr(request.app.state, "ui_csrf_key", None)
    if key is None:
        key = request.app.state.ui_csrf_key = secrets.token_bytes(32)
    return key


def csrf_token(request: Request) -> str:
    return hmac.new(_session_secret(request), b"hub-ui-csrf", hashlib.sha256).hexdigest()


def check_csrf(request: Request, sent: str) -> None:
    if not sent or not hmac.compare_digest(csrf_token(request), sent):
        raise CsrfError("csrf")


def safe_next(raw: str | None) -> str:
    """Where to go after logging in: a dashboard path only, never another site."""
    if not raw or not raw.startswith("/ui") or raw.startswith("//") or "\\" in raw:
        return "/ui"
    if any(c in raw for c in "\r\n"):
        return "/ui"
    return raw
