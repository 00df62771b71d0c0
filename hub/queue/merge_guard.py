"""Keep a patient merge (ADT^A40) from being undone by its own echo.

Some senders repeat a merge with the two identifiers swapped (PID = the retired record, MRG =
the survivor).  Applied naively, that would retire the survivor in favour of the record it had
replaced, and the two would point at each other.  The mapping is pure and cannot know what the
store holds, so the worker asks here before it applies a merge Bundle: a merge whose survivor
is, in the store, already ``replaced-by`` the record it would now retire is a swapped repeat and
is skipped (and recorded as such), never applied.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection

from hub.fhir.interactions import parse_query
from hub.search.engine import find_matches
from hub.store import repository as repo


def _match(conn: Connection, url: str) -> str | None:
    """The id of the one Patient a conditional URL (``Patient?identifier=...``) names."""
    _, _, query = url.partition("?")
    found = find_matches(conn, "Patient", parse_query(query), limit=2)
    return found[0][1] if len(found) == 1 else None


def _merges(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    """(survivor's conditional URL, retired record's conditional URL) of each merge."""
    by_full_url = {e.get("fullUrl"): e for e in bundle.get("entry", [])}
    pairs = []
    for entry in bundle.get("entry", []):
        resource, request = entry.get("resource", {}), entry.get("request", {})
        if resource.get("resourceType") != "Patient" or request.get("method") != "PUT":
            continue
        for link in resource.get("link", []):
            if link.get("type") != "replaced-by":
                continue
            survivor = by_full_url.get(link.get("other", {}).get("reference"))
            if survivor is not None:
                pairs.append((survivor["request"]["url"], request["url"]))
    return pairs


def swapped_repeat(conn: Connection, bundle: dict[str, Any]) -> str | None:
    """Why this merge Bundle must not be applied, or None when it may."""
    for survivor_url, retired_url in _merges(bundle):
        survivor_id, retired_id = _match(conn, survivor_url), _match(conn, retired_url)
        if survivor_id is None or retired_id is None:
            continue
        current = repo.read_current(conn, "Patient", survivor_id)
        if current is None or not current.content:
            continue
        stored = orjson.loads(current.content)
        for link in stored.get("link", []):
            if (
                link.get("type") == "replaced-by"
                and link.get("other", {}).get("reference") == f"Patient/{retired_id}"
            ):
                return (
                    f"Patient/{survivor_id} was already merged into Patient/{retired_id}: "
                    "this merge repeats it with the identifiers swapped and is not applied"
                )
    return None
