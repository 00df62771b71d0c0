"""Checks that need the data, made where the data is: each entry of a transaction Bundle,
what a member may write (its own organisation only), what a health-archive system may read,
and resources labelled sensitive.

The caller is a context variable set by the HTTP layer (hub.auth.enforce).  Work the hub does
itself (the feed worker, the scheduler) runs with no caller and is not restricted here: its
senders were checked at intake.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from hub.fhir.errors import FhirError, Issue
from hub.security.rules import archive_refusal, is_sensitive, rules, write_refusal
from hub.security.tokens import Principal

_caller: ContextVar[Principal | None] = ContextVar("hub_caller", default=None)
_METHOD_LETTER = {"GET": "r", "HEAD": "r", "POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


def caller() -> Principal | None:
    return _caller.get()


def acting_as(principal: Principal | None) -> Token[Principal | None]:
    """Set the caller (tests, and work done on a caller's behalf); returns the reset token."""
    return _caller.set(principal)


def require(principal: Principal | None, res_type: str, letter: str) -> None:
    if principal is None:
        return
    if not principal.grants.allows(res_type, letter):
        what = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}[letter]
        raise Forbidden(
            f"the token's scopes ({principal.scope}) do not allow {what} on {res_type}",
            issues=[Issue("error", "forbidden", f"scope does not allow {what} on {res_type}")],
        )


def check_operation(principal: Principal | None, res_type: str, op: str) -> None:
    """An operation ($name), by the grants the rules ask of it."""
    if principal is None:
        return
    table = rules()
    key = f"{res_type}/{op}" if res_type and f"{res_type}/{op}" in table.operations else op
    if key not in table.operations:
        raise Forbidden(f"the operation {op} is not open to clients")
    if key in table.office_operations and not principal.is_office:
        raise Forbidden(f"{op} is for the community office")
    for needed_type, letter in table.operations[key]:
        require(principal, needed_type, letter)


def check_entry(method: str, res_type: str, has_id: bool, query: str | None,
                operation: str | None) -> None:  # fmt: skip
    """A transaction or batch entry, held to the same scopes as the same request alone."""
    principal = _caller.get()
    if principal is None:
        return
    if operation:
        check_operation(principal, res_type, operation)
        return
    letter = ("r" if has_id else "s") if method == "GET" else _METHOD_LETTER[method]
    require(principal, res_type, letter)


def check_read(resource: dict[str, Any]) -> None:
    """What the caller may read of a resource it asked for by id."""
    principal = _caller.get()
    if principal is None or principal.is_office:
        return
    table = rules()
    if is_sensitive(resource, table) and not principal.grants.sensitive:
        raise Forbidden(
            f"{resource.get('resourceType')}/{resource.get('id')} is labelled sensitive; "
            "reading it needs the system/sensitive.r scope"
        )
    if "archive" in principal.roles:
        why = archive_refusal(resource, centres(principal), table)
        if why:
            raise Forbidden(why)


def centres(principal: Principal) -> set[str]:
    """The organisations whose documents an archive system reads: its own and those it serves."""
    return {*principal.serves, *([principal.org] if principal.org else [])}


def hides_sensitive() -> bool:
    """Whether searches must leave sensitive resources out for this caller."""
    principal = _caller.get()
    return principal is not None and not principal.grants.sensitive and not principal.is_office


def check_write(resource: dict[str, Any]) -> None:
    """A member system writes only as itself (profiles/security/rules.json writeAsSelf)."""
    principal = _caller.get()
    if principal is None or principal.is_office:
        return
    why = write_refusal(resource, principal.org, rules())
    if why:
        raise Forbidden(why)
    if "archive" in principal.roles and resource.get("resourceType") == "Subscription":
        _archive_subscription(resource, centres(principal))


def _archive_subscription(subscription: dict[str, Any], mine: set[str]) -> None:
    """An archive system may be told only of documents addressed to the centres it serves."""
    from urllib.parse import parse_qsl

    criteria = str(subscription.get("criteria", ""))
    res_type, _, query = criteria.partition("?")
    named = [v.split("/")[-1] for k, v in parse_qsl(query) if k == "addressee"]
    if res_type not in ("Composition", "List") or not named or not set(named) <= mine:
        raise Forbidden(
            "a health-archive system subscribes to Composition or List with "
            f"addressee=Organization/<id> of a centre it serves ({', '.join(sorted(mine))})",
            expression=["Subscription.criteria"],
        )
