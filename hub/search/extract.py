"""Search-index rows from a resource's JSON (pure; runs on every write, so it is kept lean).

For each search parameter of the resource's type the element paths are walked (fanning out
over arrays; ``x[x]`` matches any choice key) and each value found becomes rows of the
parameter's kind.  The element's FHIR type is read from the JSON's shape or the choice suffix.
Values that do not convert (an impossible date) are skipped: validation refused them earlier.

A row is a tuple in its table's column order after ``(rid, res_type)`` (``COLUMNS``), which
the store prefixes and copies as is: a feed message makes ~100 rows, and building each as a
dict only to turn it into a tuple cost a tenth of the extraction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache, lru_cache
from typing import Any

from hub.search.definitions import COMMON, EXTENSION_URLS, SearchParam, type_params
from hub.search.units import canonical
from hub.search.values import DateFormatError, date_range, normalize_string, period_range

Row = tuple[Any, ...]
Rows = dict[str, list[Row]]
_MAX = 255

# Each kind's row, column by column: its table's columns after (rid, res_type).
COLUMNS: dict[str, tuple[str, ...]] = {
    "token": ("param", "system", "code", "text"),
    "string": ("param", "norm", "exact"),
    "date": ("param", "lo", "hi"),
    "reference": ("param", "target_type", "target_id", "url"),
    "quantity": ("param", "value", "system", "code", "unit", "canon_value", "canon_code"),
    "uri": ("param", "uri"),
    "number": ("param", "value"),
}


def _cut(value: str | None, size: int = _MAX) -> str | None:
    return value[:size] if isinstance(value, str) else value


def _norm(text: str) -> str:
    return normalize_string(text)[:_MAX]


# One path of a parameter: (parameter, its kind's handler, the path's steps, whether it is a
# single top-level element, whether the parameter has other paths: they share its dedupe).
_Path = tuple[SearchParam, "_Handler", tuple[str, ...], bool, bool]


def _collect(node: Any, steps: tuple[str, ...], at: int, found: list[Any]) -> None:
    """The values at ``steps[at:]`` below ``node``, fanning out over arrays; ``x[x]`` matches
    any choice key.  Plain recursion, not generators: this runs for every parameter of every
    resource written."""
    if isinstance(node, list):
        for item in node:
            _collect(item, steps, at, found)
        return
    if at == len(steps):
        found.append(node)
        return
    if not isinstance(node, dict):
        return
    step = steps[at]
    if step.startswith("extension:"):
        url = EXTENSION_URLS[step[10:]]
        for ext in node.get("extension") or ():
            if isinstance(ext, dict) and ext.get("url") == url:
                _collect(ext, steps, at + 1, found)
        return
    if step.endswith("[x]"):
        prefix = step[:-3]
        for key, value in node.items():
            if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
                _collect(value, steps, at + 1, found)
        return
    if step in node:
        _collect(node[step], steps, at + 1, found)


# --- each kind: a value found at a parameter's path → rows --------------------------------

_Handler = Callable[[Any, SearchParam, "Rows", set[Any]], None]
_CONTACT_SYSTEMS = frozenset(("phone", "fax", "email", "pager", "url", "sms", "other"))


def _token_rows(value: Any, param: SearchParam, rows: Rows, seen: set[Any]) -> None:
    code, out = param.code, rows["token"]
    if isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
            text = value.get("text")
            text = _norm(text) if isinstance(text, str) else None
            codings = value.get("coding") or []
            for coding in codings:
                if isinstance(coding, dict):
                    display = coding.get("display")
                    shown = text or (_norm(display) if isinstance(display, str) else None)
                    _token(out, seen, code, coding.get("system"), coding.get("code"), shown)
            if not codings and text:
                _token(out, seen, code, None, None, text)
        elif "code" in value or ("system" in value and "value" not in value):
            display = value.get("display")
            shown = _norm(display) if isinstance(display, str) else None
            _token(out, seen, code, value.get("system"), value.get("code"), shown)
        elif "value" in value:
            system = value.get("system")
            if system in _CONTACT_SYSTEMS:
                # ContactPoint: the token is the value; where_system picks phone or email.
                where = param.where_system
                if where is None or system == where:
                    _token(out, seen, code, None, value.get("value"), None)
                return
            kind = value.get("type")
            type_text = kind.get("text") if isinstance(kind, dict) else None
            shown = _norm(type_text) if type_text else None
            _token(out, seen, code, system, value.get("value"), shown)
    elif isinstance(value, bool):
        _token(out, seen, code, None, "true" if value else "false", None)
    elif isinstance(value, str):
        _token(out, seen, code, None, value, None)


def _token(
    out: list[Row], seen: set[Any], code: str, system: Any, tok: Any, text: str | None
) -> None:
    key = (system, tok, text)
    if key not in seen and (tok is not None or text is not None):
        seen.add(key)
        out.append((code, _cut(system), _cut(tok), text))


def _string_rows(value: Any, param: SearchParam, rows: Rows, seen: set[Any]) -> None:
    for text in _strings(value):
        norm = _norm(text)
        if norm and (norm, text) not in seen:
            seen.add((norm, text))
            rows["string"].append((param.code, norm, text[:_MAX]))


_STRING_PARTS = (
    "text", "family", "line", "given", "prefix", "suffix",
    "city", "district", "state", "postalCode", "country",
)  # fmt: skip


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in _STRING_PARTS:
            part = value.get(key)
            if isinstance(part, str):
                yield part
            elif isinstance(part, list):
                yield from (p for p in part if isinstance(p, str))


def _date_rows(value: Any, param: SearchParam, rows: Rows, seen: set[Any]) -> None:
    for lo, hi in _dates(value):
        if (lo, hi) not in seen:
            seen.add((lo, hi))
            rows["date"].append((param.code, lo, hi))


def _dates(value: Any) -> Iterator[tuple[int, int]]:
    try:
        if isinstance(value, str):
            yield date_range(value)
        elif isinstance(value, dict):
            if "start" in value or "end" in value:
                yield period_range(value)
            elif "event" in value or "repeat" in value:
                for event in value.get("event", []):
                    yield date_range(event)
                bounds = value.get("repeat", {}).get("boundsPeriod")
                if bounds:
                    yield period_range(bounds)
    except (DateFormatError, TypeError, AttributeError):
        return


def _reference_rows(value: Any, param: SearchParam, rows: Rows, seen: set[Any]) -> None:
    if not isinstance(value, dict):
        if isinstance(value, str):  # canonical
            rows["reference"].append((param.code, None, None, _cut(value, 512)))
        return
    ref = value.get("reference")
    targets = param.targets
    if isinstance(ref, str) and ref and not ref.startswith("#"):
        ref_type = value.get("type")
        target_type, target_id, url = (
            _split_untyped(ref) if ref_type is None else _split_reference(ref, ref_type)
        )
        if not targets or target_type is None or target_type in targets:
            if targets and target_type is None and len(targets) == 1:
                target_type = targets[0]
            rows["reference"].append((param.code, target_type, target_id, url))
    ident = value.get("identifier")
    if isinstance(ident, dict) and (not targets or value.get("type") in (None, *targets)):
        # A logical reference is searched as a token (``subject:identifier``).
        system, tok = _cut(ident.get("system")), _cut(ident.get("value"))
        rows["token"].append((f"{param.code}:identifier", system, tok, None))


@lru_cache(maxsize=4_096)
def _split_untyped(ref: str) -> tuple[str | None, str | None, str | None]:
    """The usual case, remembered: a message's references repeat (its patient, its order)."""
    return _split_reference(ref, None)


def _split_reference(ref: str, ref_type: Any) -> tuple[str | None, str | None, str | None]:
    """(target type, target id, url) of a reference's text."""
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    url = _cut(ref, 512) if "://" in ref or ref.startswith("urn:") else None
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return parts[-2], _cut(parts[-1], 64), url
    if len(parts) == 1 and not url:
        return (ref_type if isinstance(ref_type, str) else None), _cut(ref, 64), None
    return None, None, url


def _quantity_rows(value: Any, param: SearchParam, rows: Rows, seen: set[Any]) -> None:
    if not isinstance(value, dict):
        return
    if "low" in value or "high" in value:  # Range
        for end in ("low", "high"):
            _quantity_rows(value.get(end), param, rows, seen)
        return
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, int | float):
        return
    code = value.get("code") or value.get("currency")
    system = value.get("system") or ("urn:iso:std:iso:4217" if "currency" in value else None)
    canon = canonical(
        float(number), code if system in (None, "http://unitsofmeasure.org") else None
    )
    rows["quantity"].append(
        (
            param.code,
            float(number),
            _cut(system),
            _cut(code, 64),
            _cut(value.get("unit"), 64),
            canon[0] if canon else None,
            canon[1] if canon else None,
        )
    )


def _uri_rows(value: Any, param: SearchParam, rows: Rows, seen: set[Any]) -> None:
    if isinstance(value, str) and value not in seen:
        seen.add(value)
        rows["uri"].append((param.code, value[:512]))


def _number_rows(value: Any, param: SearchParam, rows: Rows, seen: set[Any]) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        rows["number"].append((param.code, float(value)))


_HANDLERS: dict[str, _Handler] = {
    "token": _token_rows,
    "string": _string_rows,
    "date": _date_rows,
    "reference": _reference_rows,
    "quantity": _quantity_rows,
    "uri": _uri_rows,
    "number": _number_rows,
}


@cache
def _plan(res_type: str) -> tuple[dict[str, tuple[_Path, ...]], tuple[_Path, ...]]:
    """The type's parameter paths by the top-level element they start at (a resource holds
    a dozen of the forty-odd its type may have: only theirs are walked), and those that start
    at a choice (``effective[x]``), which are walked for every resource."""
    by_head: dict[str, list[_Path]] = {}
    anywhere: list[_Path] = []
    for param in (*COMMON.values(), *type_params(res_type).values()):
        if param.type in ("composite", "special") or param.code == "_lastUpdated" or param.union:
            continue  # a union is searched through its parts' rows
        shared = len(param.paths) > 1
        for path in param.paths:
            steps = tuple(path.split("."))
            head = steps[0].partition(":")[0]  # extension:alias starts at "extension"
            entry = (param, _HANDLERS[param.type], steps, steps == (head,), shared)
            if head.endswith("[x]"):
                anywhere.append(entry)
            else:
                by_head.setdefault(head, []).append(entry)
    return {head: tuple(entries) for head, entries in by_head.items()}, tuple(anywhere)


def extract_index_rows(resource: dict[str, Any]) -> Rows:
    rows: Rows = {kind: [] for kind in COLUMNS}
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str):
        return rows
    by_head, anywhere = _plan(res_type)
    shared_seen: dict[str, set[Any]] = {}  # for parameters with several paths
    for key, value in resource.items():
        for param, handle, steps, top, shared in by_head.get(key, ()):
            seen = shared_seen.setdefault(param.code, set()) if shared else set()
            if top:  # the element itself: its value or each of its values
                for item in value if isinstance(value, list) else (value,):
                    handle(item, param, rows, seen)
            else:
                found: list[Any] = []
                _collect(resource, steps, 0, found)
                for item in found:
                    handle(item, param, rows, seen)
    for param, handle, steps, _, shared in anywhere:
        seen = shared_seen.setdefault(param.code, set()) if shared else set()
        found = []
        _collect(resource, steps, 0, found)
        for item in found:
            handle(item, param, rows, seen)
    return rows
