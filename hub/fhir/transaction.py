"""Transaction and batch Bundles (R4 http.html#transaction), run through the REST handlers.

A transaction is one database transaction.  Every lock it needs is taken up front in one sorted
call, so two transactions never wait for each other in opposite orders; then the R4 processing
order applies: DELETE, then POST, then PUT/PATCH, then GET/HEAD.  Between the deletes and the
creates every written resource gets its id (placeholders such as ``urn:uuid:`` then rewrite to
``Type/id``) and conditional references are resolved.  Any failure rolls everything back and is
raised naming the failing entry.  A batch runs each entry in its own transaction and reports
failures per entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.fhir import interactions
from hub.fhir.bundles import searchset
from hub.fhir.errors import (
    BadRequest,
    Conflict,
    FhirError,
    NotFound,
    PreconditionFailed,
)
from hub.fhir.interactions import Result, Unit
from hub.fhir.references import (
    READS,
    Entry,
    check_full_urls,
    check_overlaps,
    conditional_reference,
    copy_json,
    entry_references,
    is_placeholder,
    locate_error,
    lock_keys_for,
    parse_envelope,
    prepare_entry,
)
from hub.search.criteria import split_token, split_values
from hub.search.engine import find_matches, match_identifiers, search
from hub.search.values import DateFormatError, date_range, format_instant
from hub.security.audit_context import note_bundle_kind
from hub.security.checks import check_entry
from hub.store import repository as repo
from hub.store.locks import criteria_key, lock_keys
from hub.store.repository import StoredResource

T = TypeVar("T")
# PostgreSQL deadlock / serialisation failure: the whole unit of work is safe to run again.
_RETRY_STATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3
_FORMAT_PARAMS = ("_format", "_pretty")


def process_bundle(
    engine: Engine,
    bundle: Any,
    *,
    base_url: str,
    prefer_return: str | None = None,
    within: Callable[[Connection], None] | None = None,
    validated: bool = False,
) -> dict[str, Any]:
    """Process a transaction or batch Bundle; return its response Bundle.

    A failed transaction raises the failing entry's FhirError and writes nothing.  The caller's
    Bundle is never changed.  ``prefer_return`` (the request's ``Prefer: return=``) applies to
    every entry: ``minimal`` and ``OperationOutcome`` leave the resources out of the response.
    ``within`` runs inside a transaction's database transaction, after its writes and before
    the commit (the feed worker marks its inbox row applied there, so both commit together).
    ``validated``: the entries' resources passed the R4 model check already (a feed Bundle,
    checked at intake); a transaction does not run it again.
    """
    kind, raw_entries = parse_envelope(bundle)
    note_bundle_kind(kind)  # the request's AuditEvent names a transaction or a batch
    base = base_url.rstrip("/")
    with_resources = prefer_return not in ("minimal", "OperationOutcome")
    if kind == "transaction":
        # Each attempt rewrites references in its own copy of the whole Bundle (one orjson
        # round trip, far cheaper than copying entry by entry), so a retry starts clean.
        entries = _retrying(
            lambda: _transaction(
                engine,
                copy_json(raw_entries),
                base,
                with_resources=with_resources,
                within=within,
                validated=validated,
            )
        )
        return _response_bundle("transaction-response", entries)
    answers = [
        _batch_entry(engine, i, raw, base, with_resources) for i, raw in enumerate(raw_entries)
    ]
    return _response_bundle("batch-response", answers)


def apply_transaction(
    engine: Engine,
    fresh_bundle: Callable[[], Any],
    *,
    base_url: str,
    within: Callable[[Connection], None] | None = None,
    validated: bool = False,
) -> None:
    """Run a transaction Bundle for a caller that owns it and needs no response (the feed
    worker).  ``fresh_bundle`` gives the Bundle for each attempt, which the attempt changes in
    place: no copy is made (``process_bundle`` copies the caller's Bundle) and no response
    entries are built.  Raises like ``process_bundle``."""

    def attempt() -> None:
        kind, entries = parse_envelope(fresh_bundle())
        if kind != "transaction":
            raise BadRequest(f"a {kind} Bundle is not applied as a transaction", code="value")
        note_bundle_kind(kind)
        _transaction(
            engine, entries, base_url.rstrip("/"), within=within, validated=validated, respond=False
        )

    _retrying(attempt)


# --- transaction -----------------------------------------------------------------------------


def _transaction(
    engine: Engine,
    raw_entries: list[Any],
    base: str,
    *,
    with_resources: bool = True,
    within: Callable[[Connection], None] | None = None,
    validated: bool = False,
    respond: bool = True,
) -> list[dict[str, Any]]:
    entries = [prepare_entry(i, raw, base, copy=False) for i, raw in enumerate(raw_entries)]
    for e in entries:
        _authorize(e)
    check_full_urls(entries)
    with engine.begin() as conn:
        unit = Unit.on(conn, validated=validated)
        lock_keys(conn, lock_keys_for(entries))
        results = _run(unit, entries, base, respond=respond)
        unit.writer.flush()
        if within is not None:
            within(conn)
    if not respond:
        return []
    return [_response_entry(e, results[e.index], base, with_resources) for e in entries]


def _authorize(e: Entry) -> None:
    """Each entry needs the scope the same request alone would (hub.security.checks)."""
    t = e.target
    check_entry(e.method, t.res_type, t.res_id is not None, t.query, t.operation)


def _run(unit: Unit, entries: list[Entry], base: str, *, respond: bool = True) -> dict[int, Result]:
    """The R4 processing order over entries that all share one unit of work.  ``respond``:
    the results are answered; without it a conditional create's match is not read back."""
    results: dict[int, Result] = {}
    for e in (e for e in entries if e.method == "DELETE"):
        with _located(e):
            results[e.index] = _delete(unit, e)
    posts = [e for e in entries if e.method == "POST" and not e.target.operation]
    operations = [e for e in entries if e.method == "POST" and e.target.operation]
    updates = [e for e in entries if e.method in ("PUT", "PATCH")]
    resolver = _Resolver(unit, read_matches=respond)
    resolver.prefetch(posts + updates)
    for e in posts + updates:
        with _located(e):
            resolver.assign(e)
    check_overlaps(entries)
    _lock_ahead(unit, posts + updates)
    for e in posts + updates:
        with _located(e):
            resolver.rewrite(e)
    for e in posts:
        with _located(e):
            results[e.index] = _create(unit, e, results)
    for e in updates:
        with _located(e):
            t = e.target
            assert e.res_id is not None
            if e.patch_ops is not None:
                results[e.index] = interactions.patch(
                    unit, t.res_type, e.res_id, e.patch_ops, if_match=e.if_match
                )
            elif e.known_new:
                # A conditional PUT that matched nothing: a create under the new id, no need
                # to look for (or lock) a row that cannot exist yet.
                body = {**e.resource, "id": e.res_id}
                results[e.index] = interactions.create(unit, t.res_type, body, res_id=e.res_id)
            else:
                body = e.resource if t.res_id else {**e.resource, "id": e.res_id}
                # Locked already: Type/id up front, or a conditional match's row lock.
                results[e.index] = interactions.update(
                    unit, t.res_type, e.res_id, body, if_match=e.if_match, locked=True
                )
    for e in operations:
        with _located(e):
            resolver.rewrite(e)
            results[e.index] = _operation(unit, e)
    reads = [e for e in entries if e.method in READS]
    if reads:
        unit.writer.flush()  # reads see this transaction's own writes
    for e in reads:
        with _located(e):
            results[e.index] = _read(unit, e, base, resolver.mapping)
    return results


def _lock_ahead(unit: Unit, entries: list[Entry]) -> None:
    """Take the locks the services will want while these entries are written, all at once
    and in order (see PatientIndex.lock_ahead), and let them read ahead under the locks
    (the patient index's shared candidate look-up).  By then the Bundle's own keys are held;
    every transaction takes its keys first and its services' names second, each set in one
    order, so no two ever wait for each other in a circle.  Conditional creates that matched
    write nothing and lock nothing."""
    ahead = getattr(unit.writer.observer, "lock_ahead", None)
    if ahead is None:
        return
    writes = [
        (e.resource, e.res_id, e.method == "POST" or e.known_new)
        for e in entries
        if e.patch_ops is None
        and e.res_id is not None
        and (e.method == "PUT" or (e.matched is None and e.same_as is None))
    ]
    if writes:
        ahead(unit.conn, writes)


def _operation(unit: Unit, e: Entry) -> Result:
    """An operation entry (see BUNDLE_OPERATIONS): its Parameters answer as the entry's body."""
    from hub.services.identity.bundle_operations import run_operation

    return Result(200, body=run_operation(unit, e.target.operation or "", e.resource))


def _identifier_criterion(res_type: str, query: str) -> tuple[str, str, str] | None:
    """(type, system, value) when the criteria are exactly one ``identifier=system|value``."""
    params = interactions.parse_query(query)
    if len(params) != 1 or params[0][0] != "identifier":
        return None
    values = split_values(params[0][1])
    if len(values) != 1:
        return None
    system, has_system, code = split_token(values[0])
    if not has_system or not system or not code:
        return None
    return res_type, system, code


def _matches(unit: Unit, res_type: str, query: str) -> list[tuple[int, str]]:
    params = interactions.parse_query(query)
    if not params:
        raise BadRequest("conditional criteria are empty")
    return find_matches(unit.conn, res_type, params, limit=2)


def _delete(unit: Unit, e: Entry) -> Result:
    t = e.target
    res_id = t.res_id
    if res_id is None:
        found = _matches(unit, t.res_type, t.query or "")
        if len(found) > 1:
            raise PreconditionFailed(
                f"{t.res_type}?{t.query} matches more than one resource; "
                "this hub deletes one at a time"
            )
        if not found:
            return Result(204)
        res_id = found[0][1]
    e.res_id = res_id
    if e.if_match is not None:
        expected = interactions.parse_etag(e.if_match)
        current = repo.read_current(unit.conn, t.res_type, res_id)
        if current is None or current.deleted or current.version_id != expected:
            at = f"version {current.version_id}" if current and not current.deleted else "absent"
            raise PreconditionFailed(
                f"If-Match {e.if_match}: {t.res_type}/{res_id} is {at}",
                expression=[f"{e.path}.request.ifMatch"],
            )
    return interactions.delete(unit, t.res_type, res_id)


def _create(unit: Unit, e: Entry, results: dict[int, Result]) -> Result:
    if e.matched is not None:
        return e.matched
    if e.same_as is not None:
        first = results[e.same_as]
        return Result(200, first.stored)
    return interactions.create(unit, e.target.res_type, e.resource, res_id=e.res_id)


class _Resolver:
    """Ids for every written resource, then placeholder and conditional references."""

    def __init__(self, unit: Unit, *, read_matches: bool = True) -> None:
        self.unit = unit
        # A conditional create that matches answers with the stored resource: read it only
        # when the transaction is answered (the feed worker's are not).
        self.read_matches = read_matches
        self.mapping: dict[str, str] = {}  # fullUrl -> Type/id
        self.by_criteria: dict[str, tuple[str, int]] = {}  # criteria key -> (id, entry index)
        self.resolved: dict[str, str] = {}  # conditional reference criteria key -> Type/id
        # criteria key -> matches, looked up in one query before any entry is assigned
        self.prefetched: dict[str, list[tuple[int, str]]] = {}

    def prefetch(self, entries: list[Entry]) -> None:
        """Answer every simple ``identifier=system|value`` criterion of the Bundle at once.

        The Bundle's criteria are all locked already (lock_keys_for), so the answers cannot
        change before the entries use them.  Other criteria are searched one by one as before.
        """
        wanted: dict[str, tuple[str, str, str]] = {}
        for e in entries:
            queries = []
            if e.method == "POST" and e.if_none_exist:
                queries.append((e.target.res_type, e.if_none_exist))
            elif e.method in ("PUT", "PATCH") and e.target.res_id is None:
                queries.append((e.target.res_type, e.target.query or ""))
            for holder, key, _ in entry_references(e):
                if (cond := conditional_reference(holder[key])) is not None:
                    queries.append(cond)
            for res_type, query in queries:
                if (simple := _identifier_criterion(res_type, query)) is not None:
                    wanted[criteria_key(res_type, query)] = simple
        if wanted:
            found = match_identifiers(self.unit.conn, list(set(wanted.values())))
            self.prefetched = {key: found[simple] for key, simple in wanted.items()}

    def _find(self, res_type: str, query: str) -> list[tuple[int, str]]:
        cached = self.prefetched.get(criteria_key(res_type, query))
        return cached[:2] if cached is not None else _matches(self.unit, res_type, query)

    def assign(self, e: Entry) -> None:
        t = e.target
        if e.method == "POST":
            e.res_id = self._post_id(e)
        elif t.res_id is not None:
            e.res_id = t.res_id
        else:
            e.res_id = self._conditional_id(e)
            self.by_criteria.setdefault(
                criteria_key(t.res_type, t.query or ""), (e.res_id, e.index)
            )
        if e.full_url:
            self.mapping[e.full_url] = f"{t.res_type}/{e.res_id}"

    def _post_id(self, e: Entry) -> str:
        if not e.if_none_exist:
            return repo.new_id()
        res_type = e.target.res_type
        key = criteria_key(res_type, e.if_none_exist)
        if key in self.by_criteria:
            # The same conditional create twice in one Bundle makes one resource.
            res_id, e.same_as = self.by_criteria[key]
            return res_id
        found = self._find(res_type, e.if_none_exist)
        if len(found) > 1:
            raise PreconditionFailed(
                f"{e.path}.request.ifNoneExist {e.if_none_exist!r} matches more than one "
                f"{res_type}",
                expression=[f"{e.path}.request.ifNoneExist"],
            )
        res_id = found[0][1] if found else repo.new_id()
        if found:
            stored = repo.read(self.unit.conn, res_type, res_id) if self.read_matches else None
            e.matched = Result(200, stored)
        self.by_criteria[key] = (res_id, e.index)
        return res_id

    def _conditional_id(self, e: Entry) -> str:
        t = e.target
        found = self._find(t.res_type, t.query or "")
        if len(found) > 1:
            raise PreconditionFailed(f"{t.res_type}?{t.query} matches more than one resource")
        if e.method == "PATCH":
            if not found:
                raise NotFound(f"{t.res_type}?{t.query} matches nothing to patch")
            return found[0][1]
        body_id = e.resource.get("id")
        if found:
            if body_id is not None and body_id != found[0][1]:
                raise BadRequest(
                    f"the body's id {body_id!r} differs from the matching resource {found[0][1]!r}",
                    expression=["id"],
                )
            return found[0][1]
        if body_id is None:
            e.known_new = e.if_match is None
            return repo.new_id()
        if not isinstance(body_id, str):
            raise BadRequest("id must be a string", expression=["id"])
        return body_id

    def rewrite(self, e: Entry) -> None:
        for holder, key, path in entry_references(e):
            value = holder[key]
            if value in self.mapping:
                holder[key] = self.mapping[value]
            elif is_placeholder(value):
                raise BadRequest(
                    f"{path}: {value!r} is the fullUrl of no entry of this transaction "
                    "(batch entries cannot refer to each other)",
                    code="not-found",
                    expression=[path],
                )
            elif (cond := conditional_reference(value)) is not None:
                holder[key] = self._conditional_reference(*cond, path)

    def _conditional_reference(self, res_type: str, query: str, path: str) -> str:
        key = criteria_key(res_type, query)
        if key in self.by_criteria:  # a conditional write of this Bundle with these criteria
            return f"{res_type}/{self.by_criteria[key][0]}"
        if key not in self.resolved:
            try:
                interactions.check_type(res_type)
                found = self._find(res_type, query)
            except FhirError as exc:
                raise type(exc)(
                    f"{path}: {exc}", expression=[path], status=exc.status, code=exc.code
                ) from exc
            if len(found) != 1:
                how = "no resource" if not found else "more than one resource"
                raise PreconditionFailed(
                    f"{path}: conditional reference {res_type}?{query} matches {how}",
                    expression=[path],
                )
            self.resolved[key] = f"{res_type}/{found[0][1]}"
        return self.resolved[key]


# --- reads -----------------------------------------------------------------------------------


def _read(unit: Unit, e: Entry, base: str, mapping: dict[str, str]) -> Result:
    t = e.target
    if t.res_id is None:
        query = t.query or ""
        for full_url, ref in mapping.items():  # a search may name a resource of this Bundle
            query = query.replace(full_url, ref)
        params = [(k, v) for k, v in interactions.parse_query(query) if k not in _FORMAT_PARAMS]
        result = search(unit.conn, t.res_type, params, lenient=False)
        return Result(200, body=orjson.loads(searchset(result, base=base, path=t.res_type)))
    if t.version is not None:
        return interactions.vread(unit, t.res_type, t.res_id, t.version)
    result = interactions.read(unit, t.res_type, t.res_id)
    if result.stored is not None and _not_modified(result.stored, e):
        return Result(304, headers={"ETag": result.stored.etag})
    return result


def _not_modified(stored: StoredResource, e: Entry) -> bool:
    # RFC 9110: If-None-Match, when present, decides; If-Modified-Since only without it.
    if e.if_none_match is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in e.if_none_match.split(",")}
        return "*" in tags or str(stored.version_id) in tags
    if e.if_modified_since:
        try:
            _, end = date_range(e.if_modified_since)
        except DateFormatError as exc:
            raise BadRequest(
                f"ifModifiedSince: {exc}",
                code="value",
                expression=[f"{e.path}.request.ifModifiedSince"],
            ) from exc
        return stored.last_updated < end
    return False


# --- batch -----------------------------------------------------------------------------------


def _batch_entry(
    engine: Engine, index: int, raw: Any, base: str, with_resources: bool
) -> dict[str, Any]:
    def attempt() -> dict[str, Any]:
        entry = prepare_entry(index, raw, base)
        _authorize(entry)
        if entry.method in READS:
            with engine.connect() as conn:
                conn.execution_options(readonly=True)
                with conn.begin():
                    result = _run(Unit.on(conn), [entry], base)[index]
        else:
            with engine.begin() as conn:
                unit = Unit.on(conn)
                lock_keys(conn, lock_keys_for([entry]))
                result = _run(unit, [entry], base)[index]
                unit.writer.flush()
        return _response_entry(entry, result, base, with_resources)

    try:
        return _retrying(attempt)
    except FhirError as exc:
        return _error_entry(exc)
    except IntegrityError:
        # A unique-key race the locks did not cover; this entry alone may be retried.
        return _error_entry(Conflict(f"Bundle.entry[{index}] conflicted with a concurrent write"))


def _error_entry(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": _status(exc.status), "outcome": exc.outcome}}


# --- shared ----------------------------------------------------------------------------------


def _retrying(action: Callable[[], T]) -> T:
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return action()
        except OperationalError as exc:
            state = getattr(exc.orig, "sqlstate", None)
            if attempt == _ATTEMPTS or state not in _RETRY_STATES:
                raise
    raise AssertionError("unreachable")


@contextmanager
def _located(entry: Entry) -> Iterator[None]:
    try:
        yield
    except FhirError as exc:
        raise locate_error(exc, entry) from exc


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _response_entry(
    e: Entry, result: Result, base: str, with_resources: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    response: dict[str, Any] = {"status": _status(result.status)}
    stored = result.stored
    if stored is not None:
        out["fullUrl"] = f"{base}/{stored.res_type}/{stored.res_id}"
        # Reads always answer with the resource; writes only when representation is asked.
        wanted = with_resources or e.method in READS
        if wanted and e.method != "HEAD" and stored.content is not None:
            out["resource"] = orjson.loads(stored.content)
        if e.method in ("POST", "PUT", "PATCH"):
            response["location"] = f"{stored.res_type}/{stored.res_id}/_history/{stored.version_id}"
        response["etag"] = stored.etag
        response["lastModified"] = stored.last_modified
    elif result.body is not None and e.method != "HEAD":
        out["resource"] = result.body
    if "ETag" in result.headers:
        response.setdefault("etag", result.headers["ETag"])
    if result.outcome is not None:
        response["outcome"] = result.outcome
    out["response"] = response
    return out


def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(repo.now_micros())},
        "type": kind,
        "entry": entries,
    }
