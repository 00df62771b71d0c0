"""Search: parameters → one page of matches (+ includes, + total when asked).

Paging is keyset (seek): the cursor carries the sort-key values and rid of the page's edge row,
so rows inserted before or after it never shift a page or repeat an entry.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from hub.fhir.errors import InvalidSearch
from hub.search.criteria import Criteria, index_table
from hub.search.definitions import get_param
from hub.search.includes import collect_includes
from hub.search.sql import TRUE, Aliases, Sql, and_, execute, in_values, join, or_, sql
from hub.security.checks import hides_sensitive
from hub.security.rules import rules
from hub.services.identity.model import MASTER_PREFIX, PATIENT_INDEX
from hub.store.schema import MAX_TIME, MIN_TIME

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
# The alias of ``resources`` in every search statement.
_ROWS = "r"


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
    expression: Sql
    descending: bool


def _criteria_conditions(
    res_type: str | None, params: list[tuple[str, str]], *, lenient: bool
) -> tuple[list[Sql], list[tuple[str, str]], list[str]]:
    crit = Criteria(res_type, Aliases())
    conditions, used, unknown = [], [], []
    for name, value in params:
        if "\x00" in name or "\x00" in value:
            # No FHIR value holds a NUL, and PostgreSQL text cannot: a clean 400, not a 500.
            raise InvalidSearch(f"{name.replace(chr(0), '')}: a NUL character is not allowed",
                                code="value")  # fmt: skip
        if name in _RESULT_PARAMS:
            continue
        try:
            conditions.append(crit.condition(_ROWS, name, value))
        except InvalidSearch as exc:
            code = name.split(":")[0].split(".")[0]
            if lenient and not name.startswith("_has") and get_param(res_type, code) is None:
                unknown.append(name)
                continue
            raise exc
        used.append((name, value))
    return conditions, used, unknown


def _where(
    res_type: str | None,
    conditions: list[Sql],
    params: list[tuple[str, str]] | None = None,
    *,
    hide_sensitive: bool = False,
) -> Sql:
    base = [sql(f"NOT {_ROWS}.deleted")]
    if hide_sensitive:
        # Resources labelled sensitive (profiles/security/rules.json) are not found by a caller
        # without the scope to read them: left out of the count and the pages alike.
        labels = sorted(rules().sensitive)
        marks = " OR ".join("(s.system = ? AND s.code = ?)" for _ in labels)
        base.append(
            sql(
                f"NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rid = {_ROWS}.rid "
                f"AND s.param = '_security' AND ({marks}))",
                *[v for pair in labels for v in pair],
            )
        )
    if res_type is not None:
        base.insert(0, sql(f"{_ROWS}.res_type = ?", res_type))
    if res_type == "Patient" and not _asks_for_masters(params or []):
        # The patient index's master records answer only a search that names them: a
        # member's conditional write or name search must find its own records, not persons.
        base.append(sql(f"{_ROWS}.res_id NOT LIKE ?", MASTER_PREFIX + "%"))
    return and_(*base, *conditions)


def _asks_for_masters(params: list[tuple[str, str]]) -> bool:
    for name, value in params:
        if name.startswith("_tag") and f"{PATIENT_INDEX}|master" in value:
            return True
        if name.startswith("_id") and MASTER_PREFIX in value:
            return True
    return False


def find_matches(
    conn: Connection, res_type: str, params: list[tuple[str, str]], *, limit: int = 2
) -> list[tuple[int, str]]:
    """Resources matching conditional criteria (strict: unknown parameters are errors)."""
    conditions, _, _ = _criteria_conditions(res_type, params, lenient=False)
    if not conditions:
        raise InvalidSearch("conditional criteria need at least one search parameter")
    where = _where(res_type, conditions, params)
    query = Sql(
        f"SELECT {_ROWS}.rid, {_ROWS}.res_id FROM resources {_ROWS} WHERE {where.text} LIMIT ?",
        (*where.params, limit),
    )
    return [(r[0], r[1]) for r in execute(conn, query)]


def match_identifiers(
    conn: Connection, wanted: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], list[tuple[int, str]]]:
    """Live resources by (type, identifier system, value): many ``identifier=sys|value``
    conditions answered in one query (a feed message's conditional writes, say)."""
    found: dict[tuple[str, str, str], list[tuple[int, str]]] = {key: [] for key in wanted}
    unique = list(found)
    if not unique:
        return found
    for query in identifier_queries(conn.dialect.name, unique):
        for res_type, system, code, rid, res_id in execute(conn, query):
            matches = found.get((res_type, system, code))
            if matches is not None and (rid, res_id) not in matches:
                matches.append((rid, res_id))
    return found


def identifier_queries(dialect: str, wanted: list[tuple[str, str, str]]) -> list[Sql]:
    """The statements ``match_identifiers`` runs for these (type, system, value) triples."""
    if dialect == "postgresql":
        # The wanted identifiers as arrays, each probing the index on its own.  As an OR of
        # 200 conditions the planner spent ~30 ms on each Bundle group.  As a plain join it
        # trusted the statistics: on a young or freshly loaded store (idx_token grown since
        # the last ANALYZE, estimated at one row) it scanned the whole table once per wanted
        # identifier, 3-5 ms a Bundle group and growing; OFFSET 0 keeps the probe a subquery
        # the planner cannot turn inside out.
        # The triples go as one JSON text: psycopg adapts a text[] element by element in
        # Python, ~2% of a feed worker's CPU for a group's three arrays of ~300.
        wanted_rows = Sql(
            "json_to_recordset(CAST(? AS json)) AS w(t text, s text, c text) "
            "CROSS JOIN LATERAL (SELECT t.rid, t.res_type, t.param, "
            "t.system, t.code FROM idx_token t WHERE t.res_type = w.t "
            "AND t.param = 'identifier' AND t.code = w.c AND t.system = w.s "
            "OFFSET 0) t",
            (orjson.dumps([{"t": t, "s": s, "c": c} for t, s, c in wanted]).decode(),),
        )
        return [_identifier_query(wanted_rows, TRUE)]
    return [
        _identifier_query(
            Sql("idx_token t"),
            or_(
                *(
                    sql("t.res_type = ? AND t.code = ? AND t.system = ?", rt, v, sy)
                    for rt, sy, v in wanted[start : start + 200]
                )
            ),
        )
        for start in range(0, len(wanted), 200)
    ]


def _identifier_query(tokens: Sql, tests: Sql) -> Sql:
    """Live resources (not master records) whose identifier tokens in ``tokens`` (aliased t)
    pass ``tests``."""
    return Sql(
        f"SELECT t.res_type, t.system, t.code, r.rid, r.res_id FROM {tokens.text} "
        "JOIN resources r ON r.rid = t.rid "
        f"WHERE t.param = 'identifier' AND NOT r.deleted AND r.res_id NOT LIKE ? AND {tests.text}",
        (*tokens.params, MASTER_PREFIX + "%", *tests.params),
    )


def _sorts(res_type: str | None, spec: str) -> list[_Sort]:
    sorts = []
    for i, raw in enumerate(s for s in spec.split(",") if s):
        descending = raw.startswith("-")
        code = raw.lstrip("-")
        if code == "_id":
            sorts.append(_Sort(sql(f"{_ROWS}.res_id"), descending))
            continue
        if code == "_lastUpdated":
            sorts.append(_Sort(sql(f"{_ROWS}.last_updated"), descending))
            continue
        param = get_param(res_type, code)
        if param is None or param.type not in _SORT_COLUMN:
            raise InvalidSearch(f"cannot sort by {code!r}")
        alias = f"s{i}"
        agg = "max" if descending else "min"
        is_text = param.type in ("string", "token", "uri")
        # Resources without a value sort last in either direction.
        missing = (
            ("" if descending else _STRING_MAX)
            if is_text
            else (MIN_TIME if descending else MAX_TIME)
        )
        stored = in_values(f"{alias}.param", list(param.stored))
        key = sql(
            f"coalesce((SELECT {agg}({alias}.{_SORT_COLUMN[param.type]}) "
            f"FROM {index_table(param.type)} {alias} "
            f"WHERE {alias}.rid = {_ROWS}.rid AND {stored.text}), ?)",
            *stored.params,
            missing,
        )
        sorts.append(_Sort(key, descending))
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


def _seek(sorts: list[_Sort], keys: list[Any], rid: int, forward: bool) -> Sql:
    """Rows strictly after (forward) or before the position (keys, rid) in the sort order."""
    exprs = [s.expression for s in sorts] + [sql(f"{_ROWS}.rid")]
    descs = [s.descending for s in sorts] + [False]
    values = [*keys, rid]
    clauses = []
    for i, (expr, desc) in enumerate(zip(exprs, descs, strict=True)):
        op = "<" if desc == forward else ">"
        after = Sql(f"{expr.text} {op} ?", (*expr.params, values[i]))
        equal_prefix = [
            Sql(f"{exprs[j].text} = ?", (*exprs[j].params, values[j])) for j in range(i)
        ]
        clauses.append(and_(*equal_prefix, after))
    return or_(*clauses)


def _order(sorts: list[_Sort], forward: bool) -> str:
    """ORDER BY over the select list's sort-key labels (k0, k1, ...) and rid."""
    order = [f"k{i} {'DESC' if s.descending == forward else 'ASC'}" for i, s in enumerate(sorts)]
    order.append(f"{_ROWS}.rid {'ASC' if forward else 'DESC'}")
    return ", ".join(order)


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
    conditions, used, unknown = _criteria_conditions(res_type, params, lenient=lenient)
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
    sorts = _sorts(res_type, sort_spec)

    control = [
        (k, v)
        for k, v in params
        if k in _RESULT_PARAMS and k not in ("_cursor", "_format", "_pretty")
    ]
    self_params = used + control
    where = _where(res_type, conditions, params, hide_sensitive=hides_sensitive())
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
        count_query = Sql(
            f"SELECT count(*) FROM resources {_ROWS} WHERE {where.text}", where.params
        )
        result.total = int(execute(conn, count_query)[0][0])
    if summary == "count" or count == 0:
        return result

    cursor = (_control(params, "_cursor") or [None])[-1]
    forward, position = True, None
    if cursor:
        direction, keys, rid = _decode_cursor(cursor, len(sorts))
        forward = direction == "n"
        position = (keys, rid)
    if position is not None:
        where = and_(where, _seek(sorts, position[0], position[1], forward))
    columns = join(
        ", ",
        [
            sql(f"{_ROWS}.rid, {_ROWS}.res_type, {_ROWS}.res_id, {_ROWS}.content"),
            *(
                Sql(f"{s.expression.text} AS k{i}", s.expression.params)
                for i, s in enumerate(sorts)
            ),
        ],
    )
    query = Sql(
        f"SELECT {columns.text} FROM resources {_ROWS} WHERE {where.text} "
        f"ORDER BY {_order(sorts, forward)} LIMIT ?",
        (*columns.params, *where.params, count + 1),
    )
    fetched = execute(conn, query)
    more = len(fetched) > count
    page = fetched[:count]
    if not forward:
        page.reverse()
    result.matches = [(r[1], r[2], r[3]) for r in page]

    def key_of(row: Any) -> list[Any]:
        return list(row[4 : 4 + len(sorts)])

    if page:
        has_next = more if forward else True
        has_prev = (position is not None) if forward else more
        if has_next:
            last = page[-1]
            result.next_params = [
                *self_params,
                ("_cursor", _encode_cursor("n", key_of(last), last[0])),
            ]
        if has_prev:
            first = page[0]
            result.prev_params = [
                *self_params,
                ("_cursor", _encode_cursor("p", key_of(first), first[0])),
            ]
    if result.total is None and position is None and not more:
        result.total = len(page)

    includes = _control(params, "_include")
    revincludes = _control(params, "_revinclude")
    if (includes or revincludes) and page:
        result.includes = collect_includes(
            conn,
            [(r[1], r[2], r[0]) for r in page],
            includes,
            revincludes,
        )
    return result
