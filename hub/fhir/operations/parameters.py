"""Reading a Parameters resource and writing one."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from hub.fhir.errors import BadRequest
from hub.services.months import MONTH

_VALUE_KEYS = (
    "valueReference",
    "valueIdentifier",
    "valueBoolean",
    "valueInteger",
    "valueString",
    "valueCode",
    "valueDecimal",
    "valueCoding",
    "valueDateTime",
)


def parameters(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("the body must be a Parameters resource", code="structure")
    found = body.get("parameter") or []
    if not isinstance(found, list):
        raise BadRequest("Parameters.parameter must be a list", code="structure")
    return [p for p in found if isinstance(p, dict)]


def values(params: list[dict[str, Any]], name: str) -> list[Any]:
    out = []
    for p in params:
        if p.get("name") != name:
            continue
        if "resource" in p:
            out.append(p["resource"])
            continue
        for key in _VALUE_KEYS:
            if key in p:
                out.append(p[key])
                break
    return out


def value(params: list[dict[str, Any]], name: str) -> Any:
    found = values(params, name)
    if len(found) > 1:
        raise BadRequest(f"parameter {name!r} may appear once", code="invalid")
    return found[0] if found else None


def result(*parts: tuple[str, str, Any]) -> dict[str, Any]:
    """(name, value[x] key or 'resource', value) triples → Parameters."""
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name, key: val} for name, key, val in parts if val is not None],
    }


def month_and_member(request: Request) -> tuple[str, str | None]:
    """``month`` (required, YYYY-MM) and ``member`` (optional, a member code) of a figures
    operation ($recognition-report, $referral-report, $routing-report)."""
    month = request.query_params.get("month", "")
    if not MONTH.match(month):
        raise BadRequest("month=YYYY-MM is required (e.g. 2026-10)", code="required")
    member = request.query_params.get("member")
    if member is not None and request.app.state.community.member(member) is None:
        raise BadRequest(f"member {member!r} is not a member of the community", code="value")
    return month, member
