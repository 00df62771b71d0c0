"""What every dashboard page shares: the router, the templates, the language, the headers.

Templates are Jinja2 with autoescaping on for everything (a sender's text and a patient's name
reach the page as they were sent), rendered here with the navigation, the language, the
signed-in client and the CSRF token the page's forms need.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlencode

import jwt
from fastapi import APIRouter, Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse

from hub.auth.enforce import SESSION_COOKIE
from hub.fhir.routes import run_read
from hub.ui import queries
from hub.ui.i18n import EN, LANG_COOKIE, ZH, pick, translator
from hub.ui.session import csrf_token

T = TypeVar("T")
router = APIRouter(prefix="/ui", include_in_schema=False)

NAV = (
    ("/ui", "nav.feeds"),
    ("/ui/messages", "nav.messages"),
    ("/ui/recognition", "nav.recognition"),
    ("/ui/referrals", "nav.referrals"),
    ("/ui/feedback", "nav.feedback"),
    ("/ui/reviews", "nav.reviews"),
)
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")

# Pages hold clinical content: never cached, never framed, and nothing loaded from elsewhere
# (every asset is the package's own; charts are inline SVG, styled by the stylesheet).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

templates = Environment(
    loader=PackageLoader("hub.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def community(request: Request) -> Any:
    return request.app.state.community


def tz(request: Request) -> timezone:
    zone: timezone = request.app.state.community.tz
    return zone


def lang_of(request: Request) -> str:
    return pick(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE))


def month_param(request: Request, default: str) -> str:
    raw = request.query_params.get("month", "")
    return raw if MONTH.match(raw) else default


def this_month(request: Request) -> str:
    return datetime.now(tz(request)).strftime("%Y-%m")


async def read(request: Request, action: Callable[[Connection], T]) -> T:
    """A read on the store, in the thread pool, as the FHIR API's reads run."""
    engine = request.app.state.engine
    return await run_in_threadpool(run_read, engine, lambda unit: action(unit.conn))


def _switch_url(request: Request, lang: str, keep: dict[str, str] | None) -> str:
    params = {**request.query_params, **(keep or {})}
    params["lang"] = EN if lang == ZH else ZH
    return f"{request.url.path}?{urlencode(params)}"


def _session_end(request: Request) -> str:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return ""
    try:
        # Verified by hub.auth.enforce before any page runs; here only its end is read.
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    return queries.local(int(claims.get("exp", 0)) * 1_000_000, tz(request), "%H:%M")


def member_name(request: Request, code: str | None) -> str:
    if not code:
        return ""
    member = community(request).member(code)
    return str(member.name) if member else code


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    keep: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """The page, in the caller's language.  ``keep``: parameters the language switch must
    carry besides the request's own (the login page answering a POST keeps where to go)."""
    lang = lang_of(request)
    principal = getattr(request.state, "principal", None)
    html = templates.get_template(template).render(
        request_path=request.url.path,
        lang=lang,
        t=translator(lang),
        nav=NAV,
        switch_url=_switch_url(request, lang, keep),
        csrf=csrf_token(request),
        client_id=principal.client_id if principal is not None else "",
        session_end=_session_end(request),
        member_name=lambda code: member_name(request, code),
        local=lambda micros, fmt="%Y-%m-%d %H:%M": queries.local(micros, tz(request), fmt),
        **context,
    )
    response = HTMLResponse(html, status_code=status, headers=HEADERS)
    if "lang" in request.query_params:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, path="/ui", samesite="strict", httponly=True
        )
    return response


def message_page(request: Request, title_key: str, text_key: str, status: int) -> HTMLResponse:
    return page(request, "notice.html", status=status, title_key=title_key, text_key=text_key)
