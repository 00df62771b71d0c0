"""Subscription criteria: parsed once when the Subscription is written, matched in memory.

A criteria string is an R4 search URL without base, ``Type?name=value&...``.  It is matched
against the search-index rows the extractor (hub.search.extract) makes for the written
resource, with the same semantics as the search engine's SQL (hub.search.criteria): repeated
parameters AND, comma-separated values OR, strings by prefix on the folded form, dates by
range.  Everything is checked when parsing, so a stored Subscription never fails at match time;
what the in-memory matcher cannot answer the way the engine would (chains, ``_has``,
community-wide Patient references, quantities) is refused there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from hub.fhir.validation import SUPPORTED
from hub.search.criteria import split_token, split_values
from hub.search.definitions import SearchParam, get_param
from hub.search.extract import COLUMNS, Rows
from hub.search.values import DateFormatError, date_range, normalize_string
from hub.services.identity.model import MASTER_PREFIX

# Index rows of one resource by parameter code (``subject``, ``subject:identifier``, ...).
RowsByParam = Mapping[str, Sequence[dict[str, Any]]]

# The engine's date prefixes, as tests on a row's [lo, hi) against the value's [slo, shi).
# ``ap`` is left out: the engine widens it around "now", which differs at match time.
_DATE_TESTS: dict[str, Callable[[int, int, int, int], bool]] = {
    "eq": lambda lo, hi, slo, shi: lo >= slo and hi <= shi,
    "ne": lambda lo, hi, slo, shi: lo < slo or hi > shi,
    "gt": lambda lo, hi, slo, shi: hi > shi,
    "lt": lambda lo, hi, slo, shi: lo < slo,
    "ge": lambda lo, hi, slo, shi: hi > slo,
    "le": lambda lo, hi, slo, shi: lo < shi,
    "sa": lambda lo, hi, slo, shi: lo >= shi,
    "eb": lambda lo, hi, slo, shi: hi <= slo,
}
_ALL_PREFIXES = (*_DATE_TESTS, "ap")
_MODIFIERS = {
    "token": ("", "not", "text", "missing"),
    "string": ("", "exact", "contains", "missing"),
    "date": ("", "missing"),
    "reference": ("", "missing"),  # plus :Type
    "uri": ("", "below", "above", "missing"),
}


class CriteriaError(ValueError):
    """Criteria that this hub cannot evaluate; the message names the problem."""


@dataclass(frozen=True)
class Test:
    """One ``name[:modifier]=v1,v2`` of the criteria; true when any value holds."""

    code: str  # the parameter's code, or its index key (``subject`` for a reference)
    kind: str  # token | string | date | reference | uri | _id
    modifier: str
    values: tuple[Any, ...]  # parsed per kind, see _parse_value
    stored: tuple[str, ...] = ()  # a union parameter's parts (SearchParam.stored)

    def holds(self, res_id: str, rows: RowsByParam) -> bool:
        if self.kind == "_id":
            found = res_id in self.values
            return not found if self.modifier == "not" else found
        mine = [row for code in self.stored or (self.code,) for row in rows.get(code, ())]
        if self.modifier == "missing":
            return (not mine) == self.values[0]
        if self.kind == "token" and self.modifier == "not":
            # As in the engine: no row may match (a resource without the element matches).
            return not any(_hit(self.kind, "", row, v) for row in mine for v in self.values)
        return any(_hit(self.kind, self.modifier, row, v) for row in mine for v in self.values)


@dataclass(frozen=True)
class Criteria:
    res_type: str
    tests: tuple[Test, ...]
    text: str

    def matches(self, res_id: str, rows: RowsByParam) -> bool:
        return all(test.holds(res_id, rows) for test in self.tests)


def rows_by_param(rows: Rows) -> dict[str, list[dict[str, Any]]]:
    """The extractor's rows (by kind) regrouped by parameter and keyed by column name, for
    ``Criteria.matches``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, kind_rows in rows.items():
        names = COLUMNS[kind]
        for row in kind_rows:
            out.setdefault(row[0], []).append(dict(zip(names, row, strict=True)))
    return out


def parse_criteria(text: str) -> Criteria:
    """``Type?params`` → Criteria; CriteriaError naming the first problem found."""
    if not isinstance(text, str) or not text.strip():
        raise CriteriaError("criteria are empty; expected Type?parameter=value")
    res_type, sep, query = text.strip().partition("?")
    if not sep:
        raise CriteriaError(f"criteria {text!r} have no '?': expected Type?parameter=value")
    if "/" in res_type or not res_type:
        raise CriteriaError(f"criteria must start with a resource type, not {res_type!r}")
    if res_type not in SUPPORTED:
        raise CriteriaError(f"resource type {res_type!r} is not served by this hub")
    tests = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        tests.append(_parse_test(res_type, name, value))
    return Criteria(res_type, tuple(tests), text.strip())


def _parse_test(res_type: str, name: str, value: str) -> Test:
    if name.startswith("_has") or "." in name:
        raise CriteriaError(f"{name!r}: chained and reverse-chained parameters are not supported")
    code, _, modifier = name.partition(":")
    param = get_param(res_type, code)
    if param is None:
        raise CriteriaError(f"{code!r} is not a search parameter of {res_type}")
    if value == "":
        raise CriteriaError(f"{name!r} has an empty value")
    if code == "_id":
        if modifier not in ("", "not"):
            raise CriteriaError(f"modifier :{modifier} is not supported on '_id'")
        ids = tuple(v for v in split_values(value) if v)
        return Test(code, "_id", modifier, ids)
    kind = param.type
    if kind not in _MODIFIERS or code == "_lastUpdated":
        raise CriteriaError(
            f"{code!r} ({kind}) cannot be used in Subscription criteria; supported: token, "
            "string, date, reference and uri parameters, _id and _tag"
        )
    type_filter = kind == "reference" and modifier[:1].isupper()
    if modifier not in _MODIFIERS[kind] and not type_filter:
        raise CriteriaError(f"modifier :{modifier} is not supported on {kind} {code!r}")
    if modifier == "missing":
        if value not in ("true", "false"):
            raise CriteriaError(f"{name!r} takes true or false, not {value!r}")
        return Test(code, kind, modifier, (value == "true",), param.stored)
    values = tuple(_parse_value(param, modifier, v) for v in split_values(value))
    return Test(code, kind, modifier, values, param.stored)


def _parse_value(param: SearchParam, modifier: str, raw: str) -> Any:
    kind, code = param.type, param.code
    if kind == "token":
        if modifier == "text":
            return normalize_string(raw)
        system, has_system, tok = split_token(raw)
        if tok is None and not has_system:
            raise CriteriaError(f"empty token value for {code!r}")
        return system, has_system, tok
    if kind == "string":
        return raw if modifier == "exact" else normalize_string(raw)
    if kind == "date":
        prefix, text = (raw[:2], raw[2:]) if raw[:2] in _ALL_PREFIXES else ("eq", raw)
        if prefix == "ap":
            raise CriteriaError(f"prefix 'ap' is not supported on {code!r} in criteria")
        try:
            lo, hi = date_range(text)
        except DateFormatError as exc:
            raise CriteriaError(f"{raw!r} is not a valid date for {code!r}") from exc
        return prefix, lo, hi
    if kind == "reference":
        return _parse_reference(param, modifier, raw)
    return raw  # uri


def _parse_reference(param: SearchParam, modifier: str, raw: str) -> tuple[Any, ...]:
    """(type or None, id or None, absolute url or None), as the engine reads the value."""
    if "://" in raw or raw.startswith("urn:"):
        parts = raw.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2], parts[-1], raw
        return None, None, raw
    pieces = raw.split("/")
    if (
        pieces[-1].startswith(MASTER_PREFIX)
        and "Patient" in param.targets
        and (len(pieces) < 2 or pieces[-2] == "Patient")
    ):
        # The engine widens a master to every linked record through the patient index, which
        # a pure match cannot see: name a member's record instead.
        raise CriteriaError(
            f"{param.code!r}: community-wide references to a master Patient are not supported "
            "in criteria; name a member's Patient record"
        )
    if len(pieces) >= 2:
        if modifier and pieces[-2] != modifier:
            return None, None, None  # Type/id of another type than :Type: never matches
        return pieces[-2], pieces[-1], None
    return (modifier or None), raw, None


def _hit(kind: str, modifier: str, row: dict[str, Any], value: Any) -> bool:
    if kind == "token":
        if modifier == "text":
            text = row.get("text")
            return isinstance(text, str) and text.startswith(value)
        system, has_system, tok = value
        if tok is not None and row.get("code") != tok:
            return False
        if has_system:
            return row.get("system") is None if system == "" else row.get("system") == system
        return True
    if kind == "string":
        if modifier == "exact":
            return bool(row.get("exact") == value)
        norm = row.get("norm") or ""
        return value in norm if modifier == "contains" else norm.startswith(value)
    if kind == "date":
        prefix, slo, shi = value
        return _DATE_TESTS[prefix](row["lo"], row["hi"], slo, shi)
    if kind == "reference":
        target_type, target_id, url = value
        if url is not None and row.get("url") == url:
            return True
        if target_id is None:
            return False
        if row.get("target_id") != target_id:
            return False
        return target_type is None or row.get("target_type") == target_type
    # uri
    stored = row.get("uri") or ""
    if modifier == "below":
        return bool(stored.startswith(value))
    if modifier == "above":
        return bool(value.startswith(stored))
    return bool(stored == value)
