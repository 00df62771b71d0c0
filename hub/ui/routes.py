"""The dashboard's entry: logging in and out, its stylesheet, and ``install`` for the app.

``install(app)`` adds the pages (``hub.ui.pages``, ``hub.ui.records``) and the one handler
that turns a missing or expired session on a dashboard page into the login page, where the
API would answer 401 with an OperationOutcome.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hub.auth.enforce import SESSION_COOKIE, LoginRequired
from hub.ui import pages, records  # noqa: F401  (their routes join the router)
from hub.ui.frame import HEADERS, page, router
from hub.ui.session import (
    CsrfError,
    LoginRefused,
    check_csrf,
    check_login_nonce,
    clear_session,
    form,
    log_in,
    login_nonce,
    safe_next,
    set_login_nonce,
    set_session,
)

# The package's own assets, by name: nothing else is served from /ui/static.
STATIC = {"ui.css": "text/css; charset=utf-8"}


def _login_page(request: Request, *, error: str = "", status: int = 200,
                next_path: str = "/ui", client_id: str = "") -> HTMLResponse:  # fmt: skip
    nonce = login_nonce(request)
    expired = request.query_params.get("expired") == "1" and not error
    response = page(
        request, "login.html", status=status, error=error, expired=expired, nonce=nonce,
        next_path=next_path, client_value=client_id, keep={"next": next_path},
    )  # fmt: skip
    set_login_nonce(response, request, nonce)
    return response


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return _login_page(request, next_path=safe_next(request.query_params.get("next")))


@router.post("/login")
async def login(request: Request) -> Response:
    sent = await form(request)
    next_path = safe_next(sent.get("next"))
    client_id = sent.get("client_id", "").strip()
    try:
        check_login_nonce(request, sent.get("nonce", ""))
    except CsrfError:
        return _login_page(request, error="login.stale", status=400, next_path=next_path,
                           client_id=client_id)  # fmt: skip
    try:
        done = await log_in(request, client_id, sent.get("client_secret", ""))
    except LoginRefused as exc:
        return _login_page(request, error=exc.reason, status=401, next_path=next_path,
                           client_id=client_id)  # fmt: skip
    response = RedirectResponse(next_path, status_code=303)
    set_session(response, request, done.token)
    response.delete_cookie("hub_ui_login", path="/ui/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    sent = await form(request)
    try:
        check_csrf(request, sent.get("csrf", ""))
    except CsrfError:
        return page(request, "notice.html", status=403, title_key="forbidden.title",
                    text_key="csrf.failed")  # fmt: skip
    response = RedirectResponse("/ui/login", status_code=303)
    clear_session(response)
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media = STATIC.get(name)
    if media is None:
        return Response(status_code=404)
    body = resources.files("hub.ui").joinpath("static", name).read_bytes()
    headers = {**HEADERS, "Cache-Control": "public, max-age=3600"}
    return Response(body, media_type=media, headers=headers)


async def _to_login(request: Request, _exc: Exception) -> Response:
    """A dashboard request without a live session: to the login page, then back here (for a
    page; a form posted with an expired session goes back to the dashboard's start)."""
    query = {"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    if request.method != "GET":
        query["next"] = "/ui"
    expired = SESSION_COOKIE in request.cookies
    if expired:
        query["expired"] = "1"
    response = RedirectResponse(f"/ui/login?{urlencode(query)}", status_code=303)
    if expired:
        clear_session(response)
    return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.add_exception_handler(LoginRequired, _to_login)
