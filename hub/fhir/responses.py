"""The one place where a handler's Result becomes an HTTP response.

Status from the result, ``application/fhir+json``, ETag / Last-Modified / Location from the
stored version, and the body chosen by ``Prefer: return=``.
"""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

import orjson
from starlette.responses import Response

from hub.fhir.errors import FhirError, info_outcome
from hub.fhir.interactions import Result
from hub.search.values import from_micros

FHIR_JSON = "application/fhir+json; charset=utf-8"


def http_date(micros: int) -> str:
    return format_datetime(from_micros(micros), usegmt=True)


def fhir_response(
    status: int, body: bytes | str | dict[str, Any] | None, headers: dict[str, str] | None = None
) -> Response:
    if isinstance(body, dict):
        payload: bytes = orjson.dumps(body)
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    else:
        payload = body or b""
    media = FHIR_JSON if payload else None
    return Response(content=payload, status_code=status, headers=headers, media_type=media)


def error_response(exc: FhirError) -> Response:
    return fhir_response(exc.status, exc.outcome)


def prefer_value(prefer: str | None, key: str) -> str | None:
    """One token of a Prefer header, e.g. return=minimal or handling=lenient."""
    if not prefer:
        return None
    for part in prefer.split(","):
        for item in part.split(";"):
            name, _, value = item.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"').lower()
    return None


def render(result: Result, *, base: str, prefer: str | None = None) -> Response:
    headers = dict(result.headers)
    stored = result.stored
    if stored is not None:
        headers["ETag"] = stored.etag
        headers["Last-Modified"] = http_date(stored.last_updated)
        if result.status == 201:
            headers["Location"] = (
                f"{base}/{stored.res_type}/{stored.res_id}/_history/{stored.version_id}"
            )
        returning = prefer_value(prefer, "return")
        if returning == "minimal":
            return fhir_response(result.status, None, headers)
        if returning == "operationoutcome":
            outcome = result.outcome or info_outcome(
                f"{stored.res_type}/{stored.res_id} version {stored.version_id} stored"
            )
            return fhir_response(result.status, outcome, headers)
        return fhir_response(result.status, stored.content, headers)
    if result.body is not None:
        return fhir_response(result.status, result.body, headers)
    if result.outcome is not None and result.status != 204:
        return fhir_response(result.status, result.outcome, headers)
    return fhir_response(result.status, None, headers)
