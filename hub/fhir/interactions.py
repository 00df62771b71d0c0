"""FHIR RESTful interactions, independent of any web framework.

Each handler takes a ``Unit`` (the open connection and buffered writer of one unit of work) and
plain arguments, and returns a ``Result``.  The HTTP routes and the transaction processor call
the same handlers, so a create inside a Bundle behaves exactly like a POST.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jsonpatch
import orjson
from sqlalchemy import Connection

from hub.fhir.errors import (
    BadRequest,
    FhirError,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from hub.fhir.validation import SUPPORTED, check_id, validate_resource
from hub.search.engine import find_matches
from hub.security.checks import caller, check_read, check_write
from hub.store import repository as repo
from hub.store.locks import criteria_key, lock_keys
from hub.store.repository import StoredResource, Writer


@dataclass
class Unit:
    """One unit of work: a connection inside a transaction and its buffered writer."""

    conn: Connection
    writer: Writer
    # The resources written were validated against the R4 models before they reached this
    # unit (a feed's Bundle, at intake): only the cheap checks run again.
    validated: bool = False

    @classmethod
    def on(cls, conn: Connection, *, validated: bool = False) -> Unit:
        from hub.services.observers import observers

        return cls(conn, Writer(conn, observer=observers(conn)), validated)

    def warned(self, result: Result) -> Result:
        """Attach what the services warned about while writing (an invalid resident ID)."""
        observer = self.writer.observer
        take = getattr(observer, "take_warnings", None)
        warnings = take() if take else []
        if warnings:
            from hub.fhir.errors import Issue, operation_outcome

            result.outcome = operation_outcome(
                [Issue("warning", "business-rule", text) for text in warnings]
                + [Issue("information", "informational", "stored")]
            )
        return result


@dataclass
class Result:
    status: int
    stored: StoredResource | None = None
    # A body other than the stored resource (a Bundle, an OperationOutcome), already built.
    body: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def check_type(res_type: str) -> None:
    if res_type not in SUPPORTED:
        raise NotFound(
            f"resource type {res_type!r} is not served by this hub", code="not-supported"
        )


def parse_query(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True)


def parse_etag(value: str | None) -> int | None:
    """The version in an If-Match header: W/"3", "3" or 3."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise BadRequest(f'If-Match {value!r} is not a version ETag like W/"3"')
    return int(text)


# --- reads -----------------------------------------------------------------------------------


def _readable(stored: StoredResource) -> StoredResource:
    if caller() is not None and stored.content:
        check_read(orjson.loads(stored.content))
    return stored


def read(unit: Unit, res_type: str, res_id: str) -> Result:
    check_type(res_type)
    return Result(200, _readable(repo.read(unit.conn, res_type, res_id)))


def vread(unit: Unit, res_type: str, res_id: str, version: str) -> Result:
    check_type(res_type)
    if not version.isdigit():
        raise NotFound(f"{res_type}/{res_id} has no version {version!r}")
    return Result(200, _readable(repo.vread(unit.conn, res_type, res_id, int(version))))


# --- writes ----------------------------------------------------------------------------------


def _matches(unit: Unit, res_type: str, query: str) -> list[tuple[int, str]]:
    params = parse_query(query.lstrip("?"))
    if not params:
        raise BadRequest("conditional criteria are empty")
    return find_matches(unit.conn, res_type, params, limit=2)


def create(
    unit: Unit,
    res_type: str,
    resource: Any,
    *,
    if_none_exist: str | None = None,
    res_id: str | None = None,
) -> Result:
    """POST: a new resource with a server id; with If-None-Exist, only if nothing matches."""
    check_type(res_type)
    resource = validate_resource(resource, res_type, model=not unit.validated)
    check_write(resource)
    if if_none_exist:
        query = if_none_exist.split("?", 1)[-1]
        lock_keys(unit.conn, [criteria_key(res_type, query)])
        found = _matches(unit, res_type, query)
        if len(found) > 1:
            raise PreconditionFailed(f"If-None-Exist {query!r} matches more than one {res_type}")
        if found:
            return Result(200, repo.read(unit.conn, res_type, found[0][1]))
    stored = unit.writer.create(_without_id(resource), res_id)
    return unit.warned(Result(201, stored))


def _without_id(resource: dict[str, Any]) -> dict[str, Any]:
    # A create ignores the client's id (FHIR: the server assigns it).
    return {k: v for k, v in resource.items() if k != "id"}


def update(
    unit: Unit,
    res_type: str,
    res_id: str,
    resource: Any,
    *,
    if_match: str | None = None,
    locked: bool = False,
) -> Result:
    """PUT Type/id: a new version, or update-as-create with the client's id.

    ``locked``: the caller holds the Type/id lock already (a transaction takes its locks up
    front), or knows the row exists (its row lock then serialises writers).
    """
    check_type(res_type)
    check_id(res_id)
    resource = validate_resource(resource, res_type, model=not unit.validated)
    check_write(resource)
    _check_overwrite(unit, res_type, res_id)
    body_id = resource.get("id")
    if body_id is None:
        raise BadRequest("an update needs the resource's id in the body", expression=["id"])
    if body_id != res_id:
        raise BadRequest(
            f"the body's id {body_id!r} does not match the URL's {res_id!r}", expression=["id"]
        )
    if not locked:
        lock_keys(unit.conn, [f"{res_type}/{res_id}"])
    stored, created = unit.writer.update(resource, res_id, if_match=parse_etag(if_match))
    return unit.warned(Result(201 if created else 200, stored))


def conditional_update(
    unit: Unit, res_type: str, query: str, resource: Any, *, if_match: str | None = None
) -> Result:
    """PUT Type?criteria: update the one match, create if none, 412 if several."""
    check_type(res_type)
    resource = validate_resource(resource, res_type, model=not unit.validated)
    check_write(resource)
    lock_keys(unit.conn, [criteria_key(res_type, query)])
    found = _matches(unit, res_type, query)
    if len(found) > 1:
        raise PreconditionFailed(f"{res_type}?{query} matches more than one resource")
    body_id = resource.get("id")
    if found:
        target = found[0][1]
        if body_id is not None and body_id != target:
            raise BadRequest(
                f"the body's id {body_id!r} differs from the matching resource {target!r}",
                expression=["id"],
            )
        return update(unit, res_type, target, {**resource, "id": target}, if_match=if_match)
    if body_id is not None:
        check_id(body_id)
        return update(unit, res_type, body_id, resource, if_match=if_match)
    return unit.warned(Result(201, unit.writer.create(resource)))


def patch(
    unit: Unit, res_type: str, res_id: str, operations: Any, *, if_match: str | None = None
) -> Result:
    """PATCH with a JSON Patch document; the patched resource is validated like an update."""
    check_type(res_type)
    if not isinstance(operations, list):
        raise BadRequest("a JSON Patch body is an array of operations")
    current = repo.read(unit.conn, res_type, res_id)
    document = orjson.loads(current.content or "{}")
    try:
        patched = jsonpatch.apply_patch(document, operations)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise Unprocessable(f"the patch cannot be applied: {exc}") from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise BadRequest(f"the patch is malformed: {exc}") from exc
    if patched.get("resourceType") != res_type or patched.get("id") != res_id:
        raise Unprocessable("a patch may not change resourceType or id")
    patched.get("meta", {}).pop("versionId", None)
    patched.get("meta", {}).pop("lastUpdated", None)
    patched = validate_resource(patched, res_type)
    if caller() is not None:
        check_write(document)  # what it was: a member patches only its own
        check_write(patched)
    expected = parse_etag(if_match) if if_match else current.version_id
    stored, _ = unit.writer.update(patched, res_id, if_match=expected, allow_create=False)
    return Result(200, stored)


def delete(unit: Unit, res_type: str, res_id: str) -> Result:
    """DELETE: idempotent; a later read answers 410 Gone."""
    check_type(res_type)
    lock_keys(unit.conn, [f"{res_type}/{res_id}"])
    _check_overwrite(unit, res_type, res_id)
    stored = unit.writer.delete(res_type, res_id)
    if stored is None:
        return Result(204)
    return Result(200, headers={"ETag": stored.etag}, outcome=_deleted_outcome(res_type, res_id))


def conditional_delete(unit: Unit, res_type: str, query: str) -> Result:
    """DELETE Type?criteria: deletes the single match; several matches are refused (412)."""
    check_type(res_type)
    lock_keys(unit.conn, [criteria_key(res_type, query)])
    found = _matches(unit, res_type, query)
    if len(found) > 1:
        raise PreconditionFailed(
            f"{res_type}?{query} matches more than one resource; this hub deletes one at a time"
        )
    if not found:
        return Result(204)
    return delete(unit, res_type, found[0][1])


def _check_overwrite(unit: Unit, res_type: str, res_id: str) -> None:
    """A member replaces or deletes only what it could have written itself."""
    if caller() is None:
        return
    current = repo.read_current(unit.conn, res_type, res_id)
    if current is not None and current.content:
        check_write(orjson.loads(current.content))


def _deleted_outcome(res_type: str, res_id: str) -> dict[str, Any]:
    from hub.fhir.errors import info_outcome

    return info_outcome(f"{res_type}/{res_id} deleted")


def not_allowed(method: str, what: str) -> FhirError:
    return MethodNotAllowed(f"{method} is not allowed on {what}")
