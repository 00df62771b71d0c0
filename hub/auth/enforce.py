"""Every request proves who it is and is held to its scopes and the community's rules.

An app-wide dependency checks the bearer token (401 without a good one) and the path: open
paths (metadata, discovery, health) need nothing; the office's paths need ``hub/admin``; FHIR
interactions need the SMART grant for their type and interaction (403 otherwise).  The caller
is then kept (hub.security.checks) for the deeper checks that need the data.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from hub.fhir.errors import FhirError
from hub.security.checks import Forbidden, acting_as, centres, check_operation, require
from hub.security.rules import Rules, path_matches, rules
from hub.security.tokens import Principal, TokenError, token_issuer, verify

_METHOD_LETTER = {"GET": "r", "HEAD": "r", "POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


class Unauthenticated(FhirError):
    status = 401
    code = "login"


# The office dashboard (hub.ui) runs in a browser, which cannot send a bearer header: its
# session token rides in an HttpOnly cookie, accepted on the dashboard's paths only and minted
# for an audience of its own, so it is no API token elsewhere.
SESSION_COOKIE = "hub_ui_session"
SESSION_PATHS = ("/ui",)


class LoginRequired(Unauthenticated):
    """A dashboard page without a live session: the dashboard answers with its login page."""


def session_audience(issuer: str) -> str:
    return f"{issuer}/ui"


def _office(principal: Principal) -> None:
    if not (principal.grants.admin and principal.is_office):
        raise Forbidden("this endpoint is for the community office (hub/admin scope)")


def _fhir(principal: Principal, method: str, parts: list[str], query: dict[str, str],
          table: Rules) -> None:  # fmt: skip
    """Coarse check of a /fhir request by its path; entries of Bundles are checked later."""
    if not parts:
        if method == "POST":
            return  # a transaction/batch: each entry is checked as it is processed
        require(principal, "*", "s")
        return
    op = next((p for p in parts if p.startswith("$")), None)
    if op is not None:
        check_operation(principal, "" if parts[0].startswith("$") else parts[0], op)
        if "archive" in principal.roles and not principal.is_office:
            _archive_operation(principal, parts, op)
        return
    res_type = parts[0]
    if parts[0] == "_history":
        require(principal, "*", "r")
        return
    if len(parts) == 1 or parts[1] in ("_search", "_history"):
        letter = "s" if method == "GET" or parts[-1] == "_search" else _METHOD_LETTER[method]
        if len(parts) == 1 and method in ("PUT", "DELETE"):
            letter = _METHOD_LETTER[method]  # conditional update / delete
    else:
        letter = "r" if method in ("GET", "HEAD") else _METHOD_LETTER.get(method, "r")
    require(principal, res_type, letter)
    if "archive" in principal.roles and not principal.is_office:
        _archive_request(principal, res_type, letter, query, table)


_ARCHIVE_OPERATIONS = frozenset(
    {"$inpatient-feedback", "$document", "$export", "$export-status", "$export-file"}
)


def _archive_operation(principal: Principal, parts: list[str], op: str) -> None:
    """An archive system pulls its centres' month, their documents, and exports of their
    residents (Group/residents-<centre>), nothing else."""
    mine = centres(principal)
    if op not in _ARCHIVE_OPERATIONS:
        raise Forbidden(f"a health-archive system may not use {op}")
    if op == "$inpatient-feedback" and parts[1] not in mine:
        raise Forbidden(f"Organization/{parts[1]} is not a centre this system serves")
    if op == "$export" and not (
        len(parts) == 3 and parts[0] == "Group" and parts[1].removeprefix("residents-") in mine
    ):
        raise Forbidden("a health-archive system exports only Group/residents-<its centre>")


def _archive_request(principal: Principal, res_type: str, letter: str, query: dict[str, str],
                     table: Rules) -> None:  # fmt: skip
    if res_type == "Subscription":
        return  # its own subscriptions; what they may watch is checked on write (checks.py)
    param = table.archive_reads.get(res_type)
    if param is None or letter not in "rs":
        raise Forbidden(f"a health-archive system may not use {res_type} this way")
    if letter == "s" and query.get(param, "").split("/")[-1] not in centres(principal):
        raise Forbidden(
            f"a health-archive system searches {res_type} with {param}=Organization/<id> of "
            f"a centre it serves ({', '.join(sorted(centres(principal)))})"
        )


async def authenticate(request: Request) -> None:
    """The app-wide dependency (see the module)."""
    settings = request.app.state.settings
    if not getattr(settings, "auth_required", True):
        return
    table = rules()
    path = request.url.path
    if path_matches(path, table.open_paths):
        return
    header = request.headers.get("authorization", "")
    issuer = token_issuer(settings)
    refusal: type[Unauthenticated] = Unauthenticated
    if header.lower().startswith("bearer "):
        token, audience = header[7:].strip(), f"{issuer}/fhir"
    elif path_matches(path, SESSION_PATHS):
        token, audience = request.cookies.get(SESSION_COOKIE, ""), session_audience(issuer)
        refusal = LoginRequired
        if not token:
            raise LoginRequired("log in to the dashboard")
    else:
        raise Unauthenticated("a bearer access token is required (POST /auth/token)")
    from hub.auth.routes import key_ring

    try:
        principal = await run_in_threadpool(
            verify, key_ring(request), token, audience=audience, issuer=issuer
        )
    except TokenError as exc:
        hook = getattr(request.app.state, "on_login_failure", None)
        if hook is not None:
            await run_in_threadpool(hook, request, exc)
        raise refusal(str(exc)) from exc
    request.state.principal = principal
    acting_as(principal)
    if path_matches(path, table.office_paths):
        _office(principal)
    elif path.startswith("/fhir"):
        parts = [p for p in path[len("/fhir") :].split("/") if p]
        _fhir(principal, request.method, parts, dict(request.query_params), table)
    elif path.startswith("/hl7v2"):
        if not (principal.is_office or "member" in principal.roles):
            raise Forbidden("only a member system may send HL7 v2 messages")
    elif path.startswith("/cds-services"):
        require(principal, "DiagnosticReport", "s")
    else:
        _office(principal)
