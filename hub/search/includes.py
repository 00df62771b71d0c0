"""_include and _revinclude (with :iterate): the resources a page refers to, or that refer to it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, or_, select

from hub.fhir.errors import InvalidSearch
from hub.search.definitions import get_param
from hub.store.schema import idx_reference, resources

# :iterate is followed this many rounds at most, so a cycle cannot run away.
MAX_ITERATIONS = 3
MAX_INCLUDED = 5000


def _parse(spec: str) -> tuple[str, str, str | None]:
    parts = spec.split(":")
    if spec == "*":
        return "*", "*", None
    if len(parts) < 2:
        raise InvalidSearch(f"_include/_revinclude {spec!r} must be Type:parameter[:target]")
    source_type, code = parts[0], parts[1]
    target = parts[2] if len(parts) > 2 else None
    if code != "*":
        param = get_param(source_type, code)
        if param is None or param.type != "reference":
            raise InvalidSearch(f"{source_type} has no reference parameter {code!r}")
    return source_type, code, target


def _fetch(conn: Connection, keys: set[tuple[str, str]]) -> list[Any]:
    rows: list[Any] = []
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    for res_type, ids in by_type.items():
        for start in range(0, len(ids), 500):
            query = select(
                resources.c.rid, resources.c.res_type, resources.c.res_id, resources.c.content
            ).where(
                resources.c.res_type == res_type,
                resources.c.res_id.in_(ids[start : start + 500]),
                resources.c.deleted.is_(False),
            )
            rows.extend(conn.execute(query))
    return rows


def _forward(
    conn: Connection, spec: str, current: list[tuple[str, str, int]]
) -> set[tuple[str, str]]:
    source_type, code, target = _parse(spec)
    ref = idx_reference.c
    rids = [rid for t, _, rid in current if source_type in ("*", t)]
    if not rids:
        return set()
    query = select(ref.target_type, ref.target_id).where(
        ref.rid.in_(rids), ref.target_type.is_not(None), ref.target_id.is_not(None)
    )
    if code != "*":
        query = query.where(ref.param == code)
    if target:
        query = query.where(ref.target_type == target)
    return {(r.target_type, r.target_id) for r in conn.execute(query)}


def _reverse(conn: Connection, spec: str, current: list[tuple[str, str, int]]) -> list[Any]:
    source_type, code, target = _parse(spec)
    ref = idx_reference.c
    tests = [
        and_(ref.target_type == t, ref.target_id == i) for t, i, _ in current if target in (None, t)
    ]
    if not tests:
        return []
    rids = select(ref.rid).where(or_(*tests))
    if source_type != "*":
        rids = rids.where(ref.res_type == source_type)
    if code != "*":
        rids = rids.where(ref.param == code)
    query = select(
        resources.c.rid, resources.c.res_type, resources.c.res_id, resources.c.content
    ).where(resources.c.rid.in_(rids), resources.c.deleted.is_(False))
    return list(conn.execute(query.limit(MAX_INCLUDED)))


def collect_includes(
    conn: Connection,
    matches: list[tuple[str, str, int]],
    includes: list[str],
    revincludes: list[str],
) -> list[tuple[str, str, str]]:
    seen = {(t, i) for t, i, _ in matches}
    out: list[tuple[str, str, str]] = []
    current = list(matches)
    for round_no in range(MAX_ITERATIONS + 1):
        found: list[Any] = []
        for spec in includes:
            iterate = spec.endswith(":iterate")
            if round_no > 0 and not iterate:
                continue
            keys = _forward(conn, spec.removesuffix(":iterate"), current) - seen
            found.extend(_fetch(conn, keys))
        for spec in revincludes:
            iterate = spec.endswith(":iterate")
            if round_no > 0 and not iterate:
                continue
            found.extend(_reverse(conn, spec.removesuffix(":iterate"), current))
        new = []
        for row in found:
            key = (row.res_type, row.res_id)
            if key not in seen:
                seen.add(key)
                out.append((row.res_type, row.res_id, row.content))
                new.append((row.res_type, row.res_id, row.rid))
        if not new or len(out) >= MAX_INCLUDED:
            break
        current = new
    return out
