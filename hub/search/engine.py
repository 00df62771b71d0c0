"""Search: parameters → one page of matches (+ includes, + total when asked).

Paging is keyset (seek): the cursor carries the sort-key values and rid of the page's edge row,
so rows inserted before or after it never shift a page or repeat an entry.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.sql.expression import ColumnElement

from hub.fhir.errors import InvalidSearch
from hub.search.criteria import Criteria
from hub.search.definitions import get_param
from hub.search.includes import collect_includes
from hub.store.schema import INDEX_TABLES, MAX_TIME, MIN_TIME, resources

_RESULT_PARAMS = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_cursor",
    "_format",
    # Sent by some clients (fhirpy count()) to ask for a total; treated as _total=accurate.
    "_totalMethod",
    "_pretty",
}
_SUMMARY = {"true", "false", "text", "data", "count"}
_STRING_MAX = "\U0010ffff"
_SORT_COLUMN = {
    "date": "lo",
    "string": "norm",
    "token": "code",
    "number": "value",
    "quantity": "value",
    "uri": "uri",
}


@dataclass
class SearchResult:
    matches: list[tuple[str, str, str]]
    includes: list[tuple[str, str, str]] = field(default_factory=list)
    total: int | None = None
    self_params: list[tuple[str, str]] = field(default_factory=list)
    next_params: list[tuple[str, str]] | None = None
    prev_params: list[tuple[str, str]] | None = None
    summary: str | None = None
    elements: list[str] | None = None
    unknown: list[str] = field(default_factory=list)


@dataclass
class _Sort:
    expression: Any
    descending: bool


def _criteria_conditions(
    res_type: str | None, params: list[tuple[str, str]], rows: Any, *, lenient: bool
) -> tuple[list[ColumnElement[bool]], list[tuple[str, str]], list[str]]:
    crit = Criteria(res_type)
    conditions, used, unknown = [], [], []
    for name, value in params:
        if name in _RESULT_PARAMS:
            continue
        try:
            conditions.append(crit.condition(rows, name, value))
        except InvalidSearch as exc:
            code = name.split(":")[0].split(".")[0]
            if lenient and not name.startswith("_has") and get_param(res_type, code) is None:
                unknown.append(name)
                continue
            raise exc
        used.append((name, value))
    return conditions, used, unknown


def _base_query(res_type: str | None, rows: Any) -> Any:
    query = select(rows.c.rid, rows.c.res_type, rows.c.res_id, rows.c.content).where(
        rows.c.deleted.is_(False)
    )
    if res_type is not None:
        query = query.where(rows.c.res_type == res_type)
    return query


def find_matches(
    conn: Connection, res_type: str, params: list[tuple[str, str]], *, limit: int = 2
) -> list[tuple[int, str]]:
    """Resources matching conditional criteria (strict: unknown parameters are errors)."""
    rows = resources.alias("r")
    conditions, _, _ = _criteria_conditions(res_type, params, rows, lenient=False)
    if not conditions:
        raise InvalidSearch("conditional criteria need at least one search parameter")
    query = (
        select(rows.c.rid, rows.c.res_id)
        .where(rows.c.res_type == res_type, rows.c.deleted.is_(False), *conditions)
        .limit(limit)
    )
    return [(r.rid, r.res_id) for r in conn.execute(query)]


def _sorts(res_type: str | None, spec: str, rows: Any) -> list[_Sort]:
    sorts = []
    for raw in [s for s in spec.split(",") if s]:
        descending = raw.startswith("-")
        code = raw.lstrip("-")
        if code == "_id":
            sorts.append(_Sort(rows.c.res_id, descending))
            continue
        if code == "_lastUpdated":
            sorts.append(_Sort(rows.c.last_updated, descending))
            continue
        param = get_param(res_type, code)
        if param is None or param.type not in _SORT_COLUMN:
            raise InvalidSearch(f"cannot sort by {code!r}")
        table = INDEX_TABLES[param.type]
        column = table.c[_SORT_COLUMN[param.type]]
        agg = func.max(column) if descending else func.min(column)
        key = select(agg).where(table.c.rid == rows.c.rid, table.c.param == code).scalar_subquery()
        is_text = param.type in ("string", "token", "uri")
        # Resources without a value sort last in either direction.
        missing = (
            ("" if descending else _STRING_MAX)
            if is_text
            else (MIN_TIME if descending else MAX_TIME)
        )
        sorts.append(_Sort(func.coalesce(key, missing), descending))
    return sorts


def _encode_cursor(direction: str, keys: list[Any], rid: int) -> str:
    raw = orjson.dumps({"d": direction, "k": keys, "r": rid})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(token: str, n_keys: int) -> tuple[str, list[Any], int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        direction, keys, rid = data["d"], data["k"], data["r"]
        if direction not in ("n", "p") or not isinstance(rid, int) or len(keys) != n_keys:
            raise ValueError
        if not all(isinstance(k, int | float | str) for k in keys):
            raise ValueError
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
        raise InvalidSearch("the paging cursor is not valid for this search") from exc
    return direction, keys, rid


def _seek(sorts: list[_Sort], rows: Any, keys: list[Any], rid: int, forward: bool) -> Any:
    """Rows strictly after (forward) or before the position (keys, rid) in the sort order."""
    exprs = [s.expression for s in sorts] + [rows.c.rid]
    descs = [s.descending for s in sorts] + [False]
    values = [*keys, rid]
    clauses = []
    for i, (expr, desc) in enumerate(zip(exprs, descs, strict=True)):
        after = (expr < values[i]) if (desc == forward) else (expr > values[i])
        equal_prefix = [exprs[j] == values[j] for j in range(i)]
        clauses.append(and_(*equal_prefix, after))
    return or_(*clauses)


def _order(sorts: list[_Sort], rows: Any, forward: bool) -> list[Any]:
    order = [s.expression.desc() if s.descending == forward else s.expression.asc() for s in sorts]
    order.append(rows.c.rid.asc() if forward else rows.c.rid.desc())
    return order


def _control(params: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in params if k == name]


def search(
    conn: Connection,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    lenient: bool = False,
    default_count: int = 20,
    max_count: int = 1000,
) -> SearchResult:
    rows = resources.alias("r")
    conditions, used, unknown = _criteria_conditions(res_type, params, rows, lenient=lenient)
    count = default_count
    counts = _control(params, "_count")
    if counts:
        if not counts[-1].isdigit():
            raise InvalidSearch("_count must be a non-negative integer", code="value")
        count = min(int(counts[-1]), max_count)
    summary = (_control(params, "_summary") or [None])[-1]
    if summary is not None and summary not in _SUMMARY:
        raise InvalidSearch(f"_summary={summary!r} is not one of {sorted(_SUMMARY)}", code="value")
    total_mode = (_control(params, "_total") or ["none"])[-1]
    if total_mode not in ("none", "estimate", "accurate"):
        raise InvalidSearch(f"_total={total_mode!r} is not none, estimate or accurate")
    elements_raw = _control(params, "_elements")
    elements = [e for v in elements_raw for e in v.split(",") if e] or None
    sort_spec = ",".join(_control(params, "_sort"))
    sorts = _sorts(res_type, sort_spec, rows)

    control = [
        (k, v)
        for k, v in params
        if k in _RESULT_PARAMS and k not in ("_cursor", "_format", "_pretty")
    ]
    self_params = used + control
    base = _base_query(res_type, rows).where(*conditions)
    result = SearchResult(
        [], self_params=self_params, summary=summary, elements=elements, unknown=unknown
    )

    want_total = (
        summary == "count"
        or total_mode in ("accurate", "estimate")
        or count == 0
        or bool(_control(params, "_totalMethod"))
    )
    if want_total:
        count_query = select(func.count()).select_from(
            base.with_only_columns(rows.c.rid).subquery()
        )
        result.total = conn.execute(count_query).scalar_one()
    if summary == "count" or count == 0:
        return result

    cursor = (_control(params, "_cursor") or [None])[-1]
    forward, position = True, None
    if cursor:
        direction, keys, rid = _decode_cursor(cursor, len(sorts))
        forward = direction == "n"
        position = (keys, rid)
    query = base.add_columns(*(s.expression.label(f"k{i}") for i, s in enumerate(sorts)))
    if position is not None:
        query = query.where(_seek(sorts, rows, position[0], position[1], forward))
    query = query.order_by(*_order(sorts, rows, forward)).limit(count + 1)
    fetched = conn.execute(query).all()
    more = len(fetched) > count
    page = fetched[:count]
    if not forward:
        page.reverse()
    result.matches = [(r.res_type, r.res_id, r.content) for r in page]

    def key_of(row: Any) -> list[Any]:
        return [row._mapping[f"k{i}"] for i in range(len(sorts))]

    if page:
        has_next = more if forward else True
        has_prev = (position is not None) if forward else more
        if has_next:
            last = page[-1]
            result.next_params = [
                *self_params,
                ("_cursor", _encode_cursor("n", key_of(last), last.rid)),
            ]
        if has_prev:
            first = page[0]
            result.prev_params = [
                *self_params,
                ("_cursor", _encode_cursor("p", key_of(first), first.rid)),
            ]
    if result.total is None and position is None and not more:
        result.total = len(page)

    includes = _control(params, "_include")
    revincludes = _control(params, "_revinclude")
    if (includes or revincludes) and page:
        result.includes = collect_includes(
            conn,
            [(r.res_type, r.res_id, r.rid) for r in page],
            includes,
            revincludes,
        )
    return result
