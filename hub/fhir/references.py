"""A Bundle's entries and what they point at, parsed and checked before any database work.

An entry names its target in ``request.url`` (``Patient/1``, ``Patient?identifier=...``,
``Patient/1/_history/2``); its resource may hold ``reference`` elements that are placeholders
(``urn:uuid:``) for other entries of the Bundle, or conditional references
(``Patient?identifier=...``) the server resolves by search.  Errors raised here already name
the entry (``Bundle.entry[3].request.url``).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import orjson

from hub.fhir import interactions
from hub.fhir.errors import BadRequest, FhirError, Issue, MethodNotAllowed
from hub.fhir.interactions import Result
from hub.store.locks import criteria_key

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
READS = ("GET", "HEAD")
PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
# ``Patient?identifier=sys|val``: a type, then criteria; no slash before the question mark.
_CONDITIONAL_RE = re.compile(r"^([A-Z][A-Za-z]{1,63})\?(.+)$")


@dataclass(frozen=True)
class Target:
    """A parsed ``request.url``: the type and at most one of id (+version), query, operation."""

    res_type: str
    res_id: str | None = None
    version: str | None = None
    # None: no '?' at all; '' or text: the criteria / search parameters after the '?'.
    query: str | None = None
    operation: str | None = None


def parse_request_url(url: str, base_url: str) -> Target:
    """Parse an entry's request.url, relative or absolute on this server."""
    text = url.strip()
    base = base_url.rstrip("/")
    if text.startswith(base + "/"):
        text = text[len(base) + 1 :]
    elif "://" in text.split("?", 1)[0]:
        raise BadRequest(f"{url!r} is not on this server ({base})", code="not-supported")
    text = text.lstrip("/")
    path, sep, query = text.partition("?")
    segments = path.split("/") if path else []
    if not segments or not _TYPE_RE.match(segments[0]):
        raise BadRequest(
            f"{url!r} does not start with a resource type; system-level requests are not "
            "supported inside a Bundle",
            code="not-supported",
        )
    res_type = segments[0]
    q = query if sep else None
    if len(segments) == 1:
        return Target(res_type, query=q)
    second = segments[1]
    if second.startswith("$") or second == "_search":
        if len(segments) == 2:
            return Target(res_type, query=q, operation=second)
    elif len(segments) == 2 and second not in ("_history",) and q is None:
        return Target(res_type, res_id=second)
    elif len(segments) == 4 and segments[2] == "_history" and q is None:
        return Target(res_type, res_id=second, version=segments[3])
    raise BadRequest(
        f"{url!r} is not a request this hub serves inside a Bundle", code="not-supported"
    )


def is_placeholder(reference: str) -> bool:
    return reference.startswith(PLACEHOLDER_PREFIXES)


def conditional_reference(reference: str) -> tuple[str, str] | None:
    """(type, criteria) of a conditional reference such as ``Patient?identifier=a|1``."""
    match = _CONDITIONAL_RE.match(reference)
    return (match.group(1), match.group(2)) if match else None


def find_references(node: Any, path: str) -> list[tuple[dict[str, Any], str, str]]:
    """Every string ``reference`` as (holder, key, FHIRPath of the Reference), depth first.

    Walks the whole tree, so references in contained resources, nested backbone elements and
    extension values (``valueReference``) are all found.  The caller rewrites ``holder[key]``.
    The path is only formatted for the references found: this runs for every written resource.
    """
    found: list[tuple[dict[str, Any], str, str]] = []
    _walk_references(node, [], found, path)
    return found


_CONTAINERS = (dict, list)  # a tuple: isinstance with ``dict | list`` is slower


def _walk_references(
    node: Any, trail: list[str | int], found: list[tuple[dict[str, Any], str, str]], root: str
) -> None:
    # The trail holds keys and indexes; it is formatted only for the references found.
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            where = "".join(f".{step}" if isinstance(step, str) else f"[{step}]" for step in trail)
            found.append((node, "reference", root + where))
        for key, value in node.items():
            if isinstance(value, _CONTAINERS):
                trail.append(key)
                _walk_references(value, trail, found, root)
                trail.pop()
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, _CONTAINERS):
                trail.append(i)
                _walk_references(item, trail, found, root)
                trail.pop()


def patch_references(operations: list[Any], path: str) -> list[tuple[dict[str, Any], str, str]]:
    """References inside JSON Patch values, also ``{"path": ".../reference", "value": "..."}``."""
    found: list[tuple[dict[str, Any], str, str]] = []
    for i, op in enumerate(operations):
        if not isinstance(op, dict):
            continue
        value = op.get("value")
        op_path = f"{path}[{i}].value"
        if isinstance(op.get("path"), str) and op["path"].endswith("/reference"):
            if isinstance(value, str):
                found.append((op, "value", op_path))
        elif isinstance(value, dict | list):
            found.extend(find_references(value, op_path))
    return found


# --- entries ---


@dataclass
class Entry:
    index: int
    method: str
    url: str
    target: Target
    full_url: str | None
    # A deep copy: rewriting references must not change the caller's Bundle (or a retry's).
    resource: Any
    if_match: str | None = None
    if_none_exist: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    patch_ops: list[Any] | None = None
    res_id: str | None = None  # id of the resource this entry writes, once known
    matched: Result | None = None  # a conditional create that found its resource
    same_as: int | None = None  # an earlier POST of this Bundle with the same If-None-Exist
    references: list[tuple[dict[str, Any], str, str]] | None = None  # see entry_references
    known_new: bool = False  # a conditional PUT that matched nothing: its id is brand new

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def label(self) -> str:
        return f"{self.method} {self.url}"


# --- envelope and entries --------------------------------------------------------------------


def parse_envelope(bundle: Any) -> tuple[str, list[Any]]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest(
            "the base URL takes a Bundle of type transaction or batch",
            expression=["Bundle.resourceType"],
        )
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise BadRequest(
            f"Bundle.type {kind!r} is not processed here; use transaction or batch",
            code="value",
            expression=["Bundle.type"],
        )
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise BadRequest(
            "Bundle.entry must be an array", code="structure", expression=["Bundle.entry"]
        )
    return kind, entries


def _text(request: dict[str, Any], key: str, path: str) -> str | None:
    value = request.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(
            f"{path}.request.{key} must be a string",
            code="value",
            expression=[f"{path}.request.{key}"],
        )
    return value


# Operations a transaction may invoke (run after its writes, in the same database transaction):
# a feed's ADT^A24/A37 links and unlinks records in the same unit as the Patient updates.
BUNDLE_OPERATIONS = frozenset({("Patient", "$link"), ("Patient", "$unlink")})


def prepare_entry(index: int, raw: Any, base: str, *, copy: bool = True) -> Entry:
    """Check one entry's structure and parse its request; no database work.

    ``copy=False`` when the caller already holds its own copy of the entries (a transaction
    copies the whole Bundle at once, which is cheaper than entry by entry).
    """
    path = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(f"{path} is not an object", code="structure", expression=[path])
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BadRequest(
            f"{path}.request is missing", code="required", expression=[f"{path}.request"]
        )
    method = _text(request, "method", path)
    if method not in METHODS:
        raise BadRequest(
            f"{path}.request.method {method!r} is not one of {', '.join(METHODS)}",
            code="required" if method is None else "value",
            expression=[f"{path}.request.method"],
        )
    url = _text(request, "url", path)
    url_path = f"{path}.request.url"
    if not url or not url.strip():
        raise BadRequest(f"{url_path} is missing", code="required", expression=[url_path])
    try:
        target = parse_request_url(url, base)
        interactions.check_type(target.res_type)
    except FhirError as exc:
        raise type(exc)(
            f"{url_path}: {exc}", expression=[url_path], status=exc.status, code=exc.code
        ) from exc
    if target.operation and not (
        method == "POST" and (target.res_type, target.operation) in BUNDLE_OPERATIONS
    ):
        raise BadRequest(
            f"{url_path}: {target.operation} is not supported inside a Bundle",
            code="not-supported",
            expression=[url_path],
        )
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    entry = Entry(
        index,
        method,
        url,
        target,
        full_url,
        copy_json(raw.get("resource")) if copy else raw.get("resource"),
        if_match=_text(request, "ifMatch", path),
        if_none_match=_text(request, "ifNoneMatch", path),
        if_modified_since=_text(request, "ifModifiedSince", path),
    )
    if method in READS:
        return entry
    if method == "POST":
        fits = target.res_id is None and target.query is None
    else:  # PUT, PATCH and DELETE name one resource, by id or by criteria
        fits = target.version is None and (target.res_id is not None or bool(target.query))
    if not fits:
        if method == "DELETE":
            raise MethodNotAllowed(
                f"{url_path}: DELETE needs an id or criteria", expression=[url_path]
            )
        what = "a type URL like 'Patient'" if method == "POST" else "Type/id or Type?criteria"
        raise BadRequest(f"{url_path}: {method} takes {what}", expression=[url_path])
    if method == "PATCH":
        entry.patch_ops = _patch_operations(entry.resource, path)
    elif method in ("POST", "PUT") and not isinstance(entry.resource, dict):
        raise BadRequest(
            f"{path}.resource is required for {method}",
            code="required",
            expression=[f"{path}.resource"],
        )
    if method == "POST" and (criteria := _text(request, "ifNoneExist", path)) is not None:
        entry.if_none_exist = criteria.split("?", 1)[-1]
        if not entry.if_none_exist:
            raise BadRequest(
                f"{path}.request.ifNoneExist is empty", expression=[f"{path}.request.ifNoneExist"]
            )
    return entry


def _patch_operations(resource: Any, path: str) -> list[Any]:
    """R4 carries a transaction's JSON Patch as a Binary whose data is the patch document."""
    where = f"{path}.resource"
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise BadRequest(
            f"{where}: a PATCH entry carries a Binary holding a JSON Patch",
            code="not-supported",
            expression=[where],
        )
    content_type = resource.get("contentType") or "application/json-patch+json"
    if "json-patch" not in str(content_type):
        raise BadRequest(
            f"{where}.contentType {content_type!r}: only JSON Patch is supported",
            code="not-supported",
            expression=[f"{where}.contentType"],
        )
    try:
        operations = orjson.loads(base64.b64decode(resource.get("data") or "", validate=True))
    except (ValueError, TypeError) as exc:
        raise BadRequest(
            f"{where}.data is not base64 of a JSON Patch: {exc}",
            code="structure",
            expression=[f"{where}.data"],
        ) from exc
    if not isinstance(operations, list):
        raise BadRequest(
            f"{where}.data: a JSON Patch is an array of operations",
            code="structure",
            expression=[f"{where}.data"],
        )
    return operations


def entry_references(entry: Entry) -> list[tuple[dict[str, Any], str, str]]:
    """The entry's references, found once: locking and rewriting both need them."""
    if entry.references is None:
        if entry.patch_ops is not None:
            entry.references = patch_references(entry.patch_ops, f"{entry.path}.resource.data")
        elif entry.method in ("POST", "PUT"):
            entry.references = find_references(entry.resource, f"{entry.path}.resource")
        else:
            entry.references = []
    return entry.references


def lock_keys_for(entries: list[Entry]) -> list[str]:
    """Everything the Bundle's conditional and by-id writes (and conditional refs) depend on."""
    keys: set[str] = set()
    for e in entries:
        t = e.target
        if e.method == "POST" and e.if_none_exist:
            keys.add(criteria_key(t.res_type, e.if_none_exist))
        elif e.method in ("PUT", "PATCH", "DELETE"):
            keys.add(
                f"{t.res_type}/{t.res_id}" if t.res_id else criteria_key(t.res_type, t.query or "")
            )
        for holder, key, _ in entry_references(e):
            if (cond := conditional_reference(holder[key])) is not None:
                keys.add(criteria_key(*cond))
    return sorted(keys)


def check_full_urls(entries: list[Entry]) -> None:
    """bdl-7: fullUrl is unique among the written entries, or placeholders are ambiguous."""
    seen: dict[str, int] = {}
    for e in entries:
        if e.full_url and e.method not in READS:
            if e.full_url in seen:
                raise BadRequest(
                    f"{e.path}.fullUrl {e.full_url!r} is also Bundle.entry[{seen[e.full_url]}]'s",
                    expression=[f"{e.path}.fullUrl"],
                )
            seen[e.full_url] = e.index


def check_overlaps(entries: list[Entry]) -> None:
    """R4: a transaction fails when two of its writes resolve to the same resource."""
    writers: dict[tuple[str, str], int] = {}
    for e in entries:
        if e.method in READS or e.res_id is None or e.matched is not None or e.same_as is not None:
            continue
        key = (e.target.res_type, e.res_id)
        if key in writers:
            raise BadRequest(
                f"{e.path} ({e.label}) writes {key[0]}/{key[1]}, which "
                f"Bundle.entry[{writers[key]}] also writes",
                expression=[e.path],
            )
        writers[key] = e.index


def locate_error(exc: FhirError, entry: Entry) -> FhirError:
    """The handler's error, its FHIRPaths re-rooted at the entry (Bundle.entry[i].resource...)."""
    prefix, res_type = entry.path, entry.target.res_type
    issues: list[Issue] = []
    for issue in exc.issues:
        diagnostics, expressions = issue.diagnostics, []
        for expr in issue.expression:
            if expr.startswith("Bundle."):
                expressions.append(expr)
            elif expr.startswith((res_type + ".", res_type + "[")):
                new = f"{prefix}.resource{expr[len(res_type) :]}"
                diagnostics = diagnostics.replace(expr, new)
                expressions.append(new)
            elif expr == res_type:
                expressions.append(f"{prefix}.resource")
            else:  # relative to the resource, e.g. "id"
                expressions.append(f"{prefix}.resource.{expr}")
        if prefix not in diagnostics:
            diagnostics = f"{prefix} ({entry.label}): {diagnostics}"
        issues.append(Issue(issue.severity, issue.code, diagnostics, expressions or [prefix]))
    return type(exc)(issues[0].diagnostics, issues=issues, status=exc.status, code=exc.code)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data; an orjson round trip is ~10x faster than copy.deepcopy."""
    if value is None:
        return None
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # not JSON (cannot come from a parsed body, but be safe)
        import copy

        return copy.deepcopy(value)
