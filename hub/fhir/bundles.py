"""Searchset and history Bundles, built from stored JSON text without re-parsing it.

A search page of 100 Observations is 100 stored texts spliced into one envelope; only
``_elements`` and ``_summary`` need the resources parsed (to drop elements).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from hub.search.engine import SearchResult
from hub.search.values import format_instant
from hub.store.repository import StoredResource, now_micros

# Elements kept by _summary=true, beyond the mandatory id/meta/resourceType (a practical subset
# of the summary flags of the R4 definitions for the types clinical users page through).
_SUMMARY_KEYS = frozenset(
    {
        "identifier",
        "active",
        "name",
        "telecom",
        "gender",
        "birthDate",
        "address",
        "managingOrganization",
        "generalPractitioner",
        "link",
        "status",
        "class",
        "type",
        "subject",
        "period",
        "serviceProvider",
        "category",
        "code",
        "effectiveDateTime",
        "effectivePeriod",
        "issued",
        "performer",
        "valueQuantity",
        "valueCodeableConcept",
        "valueString",
        "interpretation",
        "basedOn",
        "encounter",
        "result",
        "intent",
        "priority",
        "authoredOn",
        "requester",
        "date",
        "title",
        "author",
        "url",
        "version",
        "partOf",
        "for",
        "owner",
        "recorded",
        "target",
        "agent",
        "entity",
        "source",
        "deceasedBoolean",
        "deceasedDateTime",
    }
)
_MANDATORY = ("resourceType", "id", "meta")


def _subsetted_tag(meta: dict[str, Any]) -> dict[str, Any]:
    tags = list(meta.get("tag", []))
    tags.append(
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
            "code": "SUBSETTED",
            "display": "subsetted",
        }
    )
    return {**meta, "tag": tags}


def shape(content: str, summary: str | None, elements: list[str] | None) -> str:
    """Apply _summary / _elements to one resource's JSON text."""
    if not elements and summary in (None, "false"):
        return content
    resource = orjson.loads(content)
    if summary == "text":
        keep = {"text", "id", "meta", "resourceType"}
    elif summary == "data":
        keep = set(resource) - {"text"}
    elif elements:
        keep = {*elements, *_MANDATORY}
    else:
        keep = {k for k in resource if k in _SUMMARY_KEYS} | set(_MANDATORY)
    subset = {k: v for k, v in resource.items() if k in keep}
    subset["meta"] = _subsetted_tag(subset.get("meta", {}))
    return orjson.dumps(subset).decode("utf-8")


def _link(relation: str, url: str) -> dict[str, str]:
    return {"relation": relation, "url": url}


def page_url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params, safe="|:,$*")
    return f"{base}/{path}" + (f"?{query}" if query else "")


def _envelope(bundle_type: str, total: int | None, links: list[dict[str, str]]) -> bytes:
    head: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(now_micros())},
        "type": bundle_type,
    }
    if total is not None:
        head["total"] = total
    head["link"] = links
    return orjson.dumps(head)


def _join(head: bytes, entries: list[bytes], extra: bytes | None = None) -> bytes:
    # head ends with '}' : re-open it to append "entry".
    parts = [head[:-1]]
    if entries:
        parts.append(b',"entry":[' + b",".join(entries) + b"]")
    if extra:
        parts.append(b"," + extra)
    parts.append(b"}")
    return b"".join(parts)


def searchset(
    result: SearchResult, *, base: str, path: str, outcome: dict[str, Any] | None = None
) -> bytes:
    links = [_link("self", page_url(base, path, result.self_params))]
    if result.next_params is not None:
        links.append(_link("next", page_url(base, path, result.next_params)))
    if result.prev_params is not None:
        links.append(_link("previous", page_url(base, path, result.prev_params)))
    head = _envelope("searchset", result.total, links)
    entries: list[bytes] = []
    if result.summary != "count":
        for mode, rows in (("match", result.matches), ("include", result.includes)):
            search = orjson.dumps({"mode": mode})
            for res_type, res_id, content in rows:
                body = shape(content, result.summary, result.elements)
                entries.append(
                    b'{"fullUrl":'
                    + orjson.dumps(f"{base}/{res_type}/{res_id}")
                    + b',"resource":'
                    + body.encode("utf-8")
                    + b',"search":'
                    + search
                    + b"}"
                )
    if outcome is not None:
        entries.append(b'{"resource":' + orjson.dumps(outcome) + b',"search":{"mode":"outcome"}}')
    return _join(head, entries)


def history_bundle(
    versions: list[StoredResource],
    *,
    base: str,
    self_url: str,
    next_url: str | None,
    total: int | None = None,
) -> bytes:
    links = [_link("self", self_url)]
    if next_url:
        links.append(_link("next", next_url))
    head = _envelope("history", total, links)
    entries: list[bytes] = []
    for v in versions:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{v.res_type}/{v.res_id}"}
        url = v.res_type if v.method == "POST" else f"{v.res_type}/{v.res_id}"
        entry["request"] = {"method": v.method, "url": url}
        entry["response"] = {
            "status": {"POST": "201 Created", "DELETE": "204 No Content"}.get(v.method, "200 OK"),
            "etag": v.etag,
            "lastModified": v.last_modified,
        }
        encoded = orjson.dumps(entry)
        if v.content is not None:
            encoded = encoded[:-1] + b',"resource":' + v.content.encode("utf-8") + b"}"
        entries.append(encoded)
    return _join(head, entries)
