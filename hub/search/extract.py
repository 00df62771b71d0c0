"""Search-index rows from a resource's JSON (pure; runs on every write, so it is kept lean).

For each search parameter of the resource's type the element paths are walked (fanning out
over arrays; ``x[x]`` matches any choice key) and each value found becomes rows of the
parameter's kind.  The element's FHIR type is read from the JSON's shape or the choice suffix.
Values that do not convert (an impossible date) are skipped: validation refused them earlier.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from hub.search.definitions import COMMON, EXTENSION_URLS, SearchParam, type_params
from hub.search.units import canonical
from hub.search.values import DateFormatError, date_range, normalize_string, period_range

Rows = dict[str, list[dict[str, Any]]]
_MAX = 255


def _cut(value: str | None, size: int = _MAX) -> str | None:
    return value[:size] if isinstance(value, str) else value


# A parameter's paths, each as its steps and the root key it needs (None: a choice or an
# extension step, which any resource may match).
_Paths = tuple[tuple[tuple[str, ...], str | None], ...]


@cache
def _plan(res_type: str) -> tuple[tuple[SearchParam, _Paths], ...]:
    params = [p for p in (*COMMON.values(), *type_params(res_type).values())]
    plan = []
    for param in params:
        if param.type in ("composite", "special") or param.code == "_lastUpdated" or param.union:
            continue  # a union is searched through its parts' rows
        paths = []
        for path in param.paths:
            steps = tuple(path.split("."))
            head = steps[0].partition(":")[0]
            paths.append((steps, None if head.endswith("[x]") else head))
        plan.append((param, tuple(paths)))
    return tuple(plan)


def _walk(node: Any, steps: tuple[str, ...], choice_type: str = "") -> list[tuple[Any, str]]:
    """Values at the path, with the choice type name when a ``x[x]`` step chose one."""
    found: list[tuple[Any, str]] = []
    _collect(node, steps, 0, choice_type, found)
    return found


def _collect(
    node: Any, steps: tuple[str, ...], at: int, choice_type: str, found: list[tuple[Any, str]]
) -> None:
    # Plain recursion into a list, not generators: this runs for every parameter of every
    # resource written.
    if isinstance(node, list):
        for item in node:
            _collect(item, steps, at, choice_type, found)
        return
    if at == len(steps):
        found.append((node, choice_type))
        return
    if not isinstance(node, dict):
        return
    step = steps[at]
    if step.startswith("extension:"):
        url = EXTENSION_URLS[step[10:]]
        for ext in node.get("extension") or ():
            if isinstance(ext, dict) and ext.get("url") == url:
                _collect(ext, steps, at + 1, choice_type, found)
        return
    if step.endswith("[x]"):
        prefix = step[:-3]
        for key, value in node.items():
            if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
                _collect(value, steps, at + 1, key[len(prefix) :], found)
        return
    if step in node:
        _collect(node[step], steps, at + 1, choice_type, found)


def _text_of(concept: dict[str, Any]) -> str | None:
    text = concept.get("text")
    return normalize_string(text)[:_MAX] if isinstance(text, str) else None


def _tokens(value: Any, where: str | None) -> Iterator[tuple[str | None, str | None, str | None]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false", None
    elif isinstance(value, str):
        yield None, value, None
    elif isinstance(value, dict):
        if "coding" in value or ("text" in value and "value" not in value and "code" not in value):
            text = _text_of(value)
            codings = value.get("coding") or []
            for coding in codings:
                if isinstance(coding, dict):
                    display = coding.get("display")
                    norm = normalize_string(display)[:_MAX] if isinstance(display, str) else None
                    yield coding.get("system"), coding.get("code"), text or norm
            if not codings and text:
                yield None, None, text
        elif "code" in value or ("system" in value and "value" not in value):
            display = value.get("display")
            norm = normalize_string(display)[:_MAX] if isinstance(display, str) else None
            yield value.get("system"), value.get("code"), norm
        elif "value" in value:
            system = value.get("system")
            if system in ("phone", "fax", "email", "pager", "url", "sms", "other"):
                # ContactPoint: the token is the value; where_system picks phone or email.
                if where is None or system == where:
                    yield None, value.get("value"), None
                return
            type_text = (
                value.get("type", {}).get("text") if isinstance(value.get("type"), dict) else None
            )
            yield (
                system,
                value.get("value"),
                _cut(normalize_string(type_text)) if type_text else None,
            )


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key in (
            "text",
            "family",
            "line",
            "given",
            "prefix",
            "suffix",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
        ):
            part = value.get(key)
            if isinstance(part, str):
                yield part
            elif isinstance(part, list):
                yield from (p for p in part if isinstance(p, str))


def _dates(value: Any, choice: str) -> Iterator[tuple[int, int]]:
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


def _reference(value: Any, param: SearchParam, rows: Rows) -> None:
    if isinstance(value, str):  # canonical
        rows["reference"].append(
            {"param": param.code, "target_type": None, "target_id": None, "url": _cut(value, 512)}
        )
        return
    if not isinstance(value, dict):
        return
    ref = value.get("reference")
    if isinstance(ref, str) and ref and not ref.startswith("#"):
        target_type, target_id, url = _split_reference(ref, value.get("type"))
        if not param.targets or target_type is None or target_type in param.targets:
            if param.targets and target_type is None and len(param.targets) == 1:
                target_type = param.targets[0]
            rows["reference"].append(
                {
                    "param": param.code,
                    "target_type": target_type,
                    "target_id": target_id,
                    "url": url,
                }
            )
    ident = value.get("identifier")
    if isinstance(ident, dict) and (
        not param.targets or value.get("type") in (None, *param.targets)
    ):
        rows["token"].append(
            {
                "param": f"{param.code}:identifier",
                "system": _cut(ident.get("system")),
                "code": _cut(ident.get("value")),
                "text": None,
            }
        )


def _split_reference(ref: str, ref_type: Any) -> tuple[str | None, str | None, str | None]:
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    url = _cut(ref, 512) if "://" in ref or ref.startswith("urn:") else None
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-2].isalpha():
        return parts[-2], _cut(parts[-1], 64), url
    if len(parts) == 1 and not url:
        return (ref_type if isinstance(ref_type, str) else None), _cut(ref, 64), None
    return None, None, url


def _quantities(value: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(value, dict):
        return
    if "low" in value or "high" in value:  # Range
        for end in ("low", "high"):
            yield from _quantities(value.get(end))
        return
    number = value.get("value")
    if isinstance(number, bool) or not isinstance(number, int | float):
        return
    code = value.get("code") or value.get("currency")
    system = value.get("system") or ("urn:iso:std:iso:4217" if "currency" in value else None)
    canon = canonical(
        float(number), code if system in (None, "http://unitsofmeasure.org") else None
    )
    yield {
        "value": float(number),
        "system": _cut(system),
        "code": _cut(code, 64),
        "unit": _cut(value.get("unit"), 64),
        "canon_value": canon[0] if canon else None,
        "canon_code": canon[1] if canon else None,
    }


def extract_index_rows(resource: dict[str, Any]) -> Rows:
    rows: Rows = {
        k: [] for k in ("token", "string", "date", "reference", "quantity", "uri", "number")
    }
    res_type = resource.get("resourceType")
    if not isinstance(res_type, str):
        return rows
    keys = resource.keys()
    for param, paths in _plan(res_type):
        code, kind = param.code, param.type
        seen: set[Any] = set()
        for steps, head in paths:
            # Most parameters are absent from a given resource: skip them without walking.
            if head is not None and head not in keys:
                continue
            for value, choice in _walk(resource, steps):
                if kind == "token":
                    for system, tok, text in _tokens(value, param.where_system):
                        key = (system, tok, text)
                        if key not in seen and (tok is not None or text is not None):
                            seen.add(key)
                            rows["token"].append(
                                {
                                    "param": code,
                                    "system": _cut(system),
                                    "code": _cut(tok),
                                    "text": text,
                                }
                            )
                elif kind == "string":
                    for text in _strings(value):
                        norm = normalize_string(text)[:_MAX]
                        if norm and (norm, text) not in seen:
                            seen.add((norm, text))
                            rows["string"].append(
                                {"param": code, "norm": norm, "exact": text[:_MAX]}
                            )
                elif kind == "date":
                    for lo, hi in _dates(value, choice):
                        if (lo, hi) not in seen:
                            seen.add((lo, hi))
                            rows["date"].append({"param": code, "lo": lo, "hi": hi})
                elif kind == "reference":
                    _reference(value, param, rows)
                elif kind == "quantity":
                    for q in _quantities(value):
                        rows["quantity"].append({"param": code, **q})
                elif kind == "uri":
                    if isinstance(value, str) and value not in seen:
                        seen.add(value)
                        rows["uri"].append({"param": code, "uri": value[:512]})
                elif (
                    kind == "number"
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                ):
                    rows["number"].append({"param": code, "value": float(value)})
    return rows


def indexed_param_codes(res_type: str) -> list[str]:
    return [p.code for p, _ in _plan(res_type)]
