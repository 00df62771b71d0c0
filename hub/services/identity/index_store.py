"""The patient index's tables: read and write records, keys, distinct pairs and reviews.

Plain SQL on the unit of work's connection (never committing): what the linker decides is
stored together with the Patient write that caused it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)

from hub.services.identity.features import Features
from hub.store.bulk import execute_raw, fetch_each_pipelined, run_pipelined
from hub.store.locks import lock_keys, lock_statement
from hub.store.repository import now_micros
from hub.store.schema import mpi_distinct, mpi_keys, mpi_records, mpi_reviews


@dataclass
class IndexRow:
    patient_id: str
    master_id: str
    method: str
    score: float | None
    active: bool
    replaced_by: str | None
    features: Features
    digest: str


_SET_FIELDS = {f.name for f in dataclasses.fields(Features) if "frozenset" in str(f.type)}
_TUPLE_FIELDS = {f.name for f in dataclasses.fields(Features) if "tuple" in str(f.type)}


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Features))


def features_json(feats: Features) -> str:
    # Field by field rather than dataclasses.asdict, whose deep copies cost more than the
    # rest of linking a record; the text is the same (digests of stored records depend on it).
    data = {}
    for name in _FIELD_NAMES:
        value = getattr(feats, name)
        data[name] = sorted(value) if isinstance(value, frozenset) else value
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


@lru_cache(maxsize=200_000)
def features_from_json(text: str) -> Features:
    """Cached: the same candidates come back for every record in their blocks."""
    data = orjson.loads(text)
    for name in _SET_FIELDS & data.keys():
        data[name] = frozenset(data[name])
    for name in _TUPLE_FIELDS & data.keys():
        data[name] = tuple(data[name])
    return Features(**data)


def digest(feats_json: str, extra: Any) -> str:
    """What the master record is built from, hashed: unchanged → the master needs no write."""
    return hashlib.sha256(feats_json.encode() + orjson.dumps(extra)).hexdigest()


def _row(r: Any) -> IndexRow:
    return IndexRow(
        r.patient_id,
        r.master_id,
        r.method,
        r.score,
        bool(r.active),
        r.replaced_by,
        features_from_json(r.features),
        r.digest,
    )


_COLUMNS = (
    mpi_records.c.patient_id,
    mpi_records.c.master_id,
    mpi_records.c.method,
    mpi_records.c.score,
    mpi_records.c.active,
    mpi_records.c.replaced_by,
    mpi_records.c.features,
    mpi_records.c.digest,
)


def load(conn: Connection, patient_id: str) -> IndexRow | None:
    r = conn.execute(select(*_COLUMNS).where(mpi_records.c.patient_id == patient_id)).first()
    return _row(r) if r else None


def load_many(conn: Connection, ids: Iterable[str]) -> list[IndexRow]:
    ids = list(ids)
    if not ids:
        return []
    rows = conn.execute(select(*_COLUMNS).where(mpi_records.c.patient_id.in_(ids))).all()
    return [_row(r) for r in rows]


def records_of(conn: Connection, master_ids: Iterable[str]) -> list[IndexRow]:
    masters = list(master_ids)
    if not masters:
        return []
    rows = conn.execute(select(*_COLUMNS).where(mpi_records.c.master_id.in_(masters))).all()
    return [_row(r) for r in rows]


# The statements are built once per shape (how many keys, which blocks) with bound
# parameters: building and hashing a fresh statement for every record cost more than running it.
@lru_cache(maxsize=64)
def _by_keys_query(n_keys: int) -> Select[Any]:
    found = select(mpi_keys.c.patient_id).where(
        or_(
            *(
                and_(
                    mpi_keys.c.kind == bindparam(f"kind{i}"),
                    mpi_keys.c.value == bindparam(f"value{i}"),
                )
                for i in range(n_keys)
            )
        )
    )
    return select(*_COLUMNS).where(
        mpi_records.c.patient_id.in_(found),
        mpi_records.c.patient_id != bindparam("exclude"),
        mpi_records.c.active,
    )


def _keys_params(keys: dict[str, str]) -> dict[str, str]:
    params = {}
    for i, (kind, value) in enumerate(keys.items()):
        params[f"kind{i}"] = kind
        params[f"value{i}"] = value
    return params


def by_keys(conn: Connection, keys: dict[str, str], exclude: str) -> list[IndexRow]:
    """Active records sharing any exact key with ``keys``."""
    if not keys:
        return []
    params = {**_keys_params(keys), "exclude": exclude}
    return [_row(r) for r in conn.execute(_by_keys_query(len(keys)), params)]


def blocking_candidates(
    conn: Connection, feats: Features, exclude: str, limit: int, *, by_birth: bool = True
) -> list[IndexRow]:
    """Active records in any of the feature's blocks: same name (pinyin key) born the same
    year, same birth date and sex (``by_birth``), or a shared phone.  Capped.

    The name block is narrowed by the birth year because common names are not few: at 1M
    records 王伟 has hundreds, and a name-only block filled the cap with an arbitrary 200 of
    them, each then scored.  A record whose year was mistyped is still found by its birth
    date and sex block or its phone; one without a birth date by the name alone, and records
    without one are in every block of their name."""
    shape, params = _blocks(feats, by_birth)
    if shape is None:
        return []
    params.update(exclude=exclude, limit=limit)
    return [_row(r) for r in conn.execute(_blocking_query(*shape), params)]


Candidates = tuple[list[IndexRow], list[IndexRow]]  # (sharing a key, in a block)


def keyed_and_blocked(
    conn: Connection,
    feats: Features,
    exclude: str,
    limit: int,
    *,
    by_birth: bool = True,
    lock: Sequence[str] = (),
    lock_shared: Sequence[str] = (),
) -> Candidates:
    """``by_keys`` and ``blocking_candidates`` in one round trip, for a record new to the
    index (which needs both when no key links it, the usual case).  ``lock``, ``lock_shared``:
    names to lock first (exclusively, shared); on PostgreSQL the lock and the query share the
    round trip (the query still runs only once the locks are held, so it sees what their last
    holder committed)."""
    step = _keyed_and_blocked_step(feats, exclude, limit, by_birth)
    if step is None:
        lock_keys(conn, lock, lock_shared)
        return (
            by_keys(conn, feats.keys, exclude),
            blocking_candidates(conn, feats, exclude, limit, by_birth=by_birth),
        )
    taking = lock_statement(conn, lock, lock_shared)  # None: nothing to lock, or not PostgreSQL
    rows: Iterable[Any] = (
        run_pipelined(conn, [taking, step]) if taking is not None else conn.execute(*step)
    )
    return _split(rows)


def keyed_and_blocked_many(
    conn: Connection, asks: Sequence[tuple[Features, str, bool]], limit: int
) -> list[Candidates | None]:
    """``keyed_and_blocked`` for several records new to the index at once (feature,
    record id, by birth), in one round trip on PostgreSQL; None for a record that has no keys
    or no blocks (the caller asks for it on its own).  No locks are taken: the caller holds
    them already."""
    steps = [
        _keyed_and_blocked_step(feats, exclude, limit, by_birth)
        for feats, exclude, by_birth in asks
    ]
    asked = [step for step in steps if step is not None]
    if not asked:
        return [None] * len(steps)
    answers: Iterable[Iterable[Any]] = (
        fetch_each_pipelined(conn, asked)
        if conn.dialect.name == "postgresql"
        else [conn.execute(*step) for step in asked]
    )
    found = iter(answers)
    return [None if step is None else _split(next(found)) for step in steps]


def _keyed_and_blocked_step(
    feats: Features, exclude: str, limit: int, by_birth: bool
) -> tuple[Any, dict[str, Any]] | None:
    """The one query for a record's keys and blocks, with its parameters; None when it has
    no keys or no blocks (then each side is asked on its own)."""
    shape, params = _blocks(feats, by_birth)
    if not feats.keys or shape is None:
        return None
    params.update(_keys_params(feats.keys), exclude=exclude, limit=limit)
    return _keyed_and_blocked_query(len(feats.keys), shape), params


def _split(rows: Iterable[Any]) -> Candidates:
    out: Candidates = ([], [])
    for r in rows:
        out[0 if r.keyed else 1].append(_row(r))
    return out


@lru_cache(maxsize=256)
def _keyed_and_blocked_query(n_keys: int, shape: tuple[str, str, int]) -> Any:
    # Each side as a subquery: SQLite takes no LIMIT on a compound member itself.
    return union_all(
        select(_by_keys_query(n_keys).add_columns(literal(True).label("keyed")).subquery()),
        select(_blocking_query(*shape).add_columns(literal(False).label("keyed")).subquery()),
    )


def _blocks(feats: Features, by_birth: bool) -> tuple[tuple[str, str, int] | None, dict[str, Any]]:
    """The shape of a record's blocks (name, birth, number of phones) and their values."""
    params: dict[str, Any] = {}
    name = birth = ""
    born = feats.birth_date or feats.id_birth_date
    if feats.name_key:
        params["name_key"] = feats.name_key
        name = "name"
        if born:
            name = "name+year"
            params["year_from"], params["year_to"] = f"{born[:4]}-01-01", f"{born[:4]}-12-31"
    if feats.birth_date and by_birth:
        params["birth_date"] = feats.birth_date
        birth = "date"
        if feats.gender:
            birth = "date+gender"
            params["gender"] = feats.gender
    phones = sorted(feats.phones)
    for i, phone in enumerate(phones):
        params[f"phone{i}"] = phone
    if not (name or birth or phones):
        return None, params
    return (name, birth, len(phones)), params


@lru_cache(maxsize=64)
def _blocking_query(name: str, birth: str, n_phones: int) -> Select[Any]:
    r = mpi_records.c
    blocks = []
    if name == "name+year":
        blocks.append(
            and_(
                r.name_key == bindparam("name_key"),
                or_(
                    r.birth_date.between(bindparam("year_from"), bindparam("year_to")),
                    r.birth_date.is_(None),  # records without a full date
                ),
            )
        )
    elif name == "name":
        blocks.append(r.name_key == bindparam("name_key"))
    if birth == "date+gender":
        blocks.append(
            and_(r.birth_date == bindparam("birth_date"), r.gender == bindparam("gender"))
        )
    elif birth == "date":
        blocks.append(r.birth_date == bindparam("birth_date"))
    if n_phones:
        blocks.append(r.phone.in_([bindparam(f"phone{i}") for i in range(n_phones)]))
    return (
        select(*_COLUMNS)
        .where(or_(*blocks), r.patient_id != bindparam("exclude"), r.active)
        .limit(bindparam("limit"))
    )


_INSERT_RECORD = insert(mpi_records)
_RECORD_COLUMNS = tuple(c.name for c in mpi_records.columns)  # patient_id first
_INSERT_NEW = (
    f"WITH record AS (INSERT INTO mpi_records ({', '.join(_RECORD_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_RECORD_COLUMNS))}) RETURNING patient_id) "
    "INSERT INTO mpi_keys (kind, value, patient_id) "
    "SELECT k.kind, k.value, record.patient_id FROM record "
    "CROSS JOIN unnest(%s::text[], %s::text[]) AS k(kind, value)"
)
_UPDATE_RECORD = update(mpi_records).where(mpi_records.c.patient_id == bindparam("record"))
_INSERT_KEYS = insert(mpi_keys)


def save(
    conn: Connection,
    patient_id: str,
    *,
    master_id: str,
    method: str,
    score: float | None,
    active: bool,
    replaced_by: str | None,
    feats: Features,
    feats_json: str,
    digest_value: str,
    existed: bool,
    old_keys: dict[str, str] | None,
    new_keys: dict[str, str],
) -> None:
    """The record's row and its exact keys (``old_keys``: those stored so far, None for a
    record new to the index)."""
    values = {
        "master_id": master_id,
        "method": method,
        "score": score,
        "active": active,
        "replaced_by": replaced_by,
        "name_key": (feats.name_key or "")[:128] or None,
        "birth_date": feats.birth_date,
        "gender": feats.gender,
        "phone": min(feats.phones) if feats.phones else None,
        "features": feats_json,
        "digest": digest_value,
        "updated_at": now_micros(),
    }
    if existed:
        conn.execute(_UPDATE_RECORD, {**values, "record": patient_id})
    elif new_keys and conn.dialect.name == "postgresql":
        # A record new to the index and its keys: one statement, sent to the driver as it is
        # (through SQLAlchemy, or as two pipelined statements, it cost twice the CPU).
        row = [patient_id, *(values[name] for name in _RECORD_COLUMNS[1:])]
        execute_raw(conn, _INSERT_NEW, [*row, list(new_keys), list(new_keys.values())])
        return
    else:
        conn.execute(_INSERT_RECORD, {**values, "patient_id": patient_id})
    set_keys(conn, patient_id, old_keys, new_keys)


def set_keys(
    conn: Connection, patient_id: str, old: dict[str, str] | None, new: dict[str, str]
) -> None:
    """``old``: the keys stored so far (None: a record new to the index)."""
    if old == new:
        return
    if old:
        conn.execute(delete(mpi_keys).where(mpi_keys.c.patient_id == patient_id))
    if new:
        conn.execute(
            _INSERT_KEYS,
            [{"kind": k, "value": v, "patient_id": patient_id} for k, v in new.items()],
        )


def move_records(conn: Connection, from_master: str, to_master: str) -> list[str]:
    ids = list(
        conn.execute(
            select(mpi_records.c.patient_id).where(mpi_records.c.master_id == from_master)
        ).scalars()
    )
    if ids:
        conn.execute(
            update(mpi_records)
            .where(mpi_records.c.master_id == from_master)
            .values(master_id=to_master, updated_at=now_micros())
        )
    return ids


def set_master(conn: Connection, patient_id: str, master_id: str, method: str, **more: Any) -> None:
    conn.execute(
        update(mpi_records)
        .where(mpi_records.c.patient_id == patient_id)
        .values(master_id=master_id, method=method, updated_at=now_micros(), **more)
    )


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def distinct_from(conn: Connection, patient_id: str) -> set[str]:
    rows = conn.execute(
        select(mpi_distinct.c.a, mpi_distinct.c.b).where(
            or_(mpi_distinct.c.a == patient_id, mpi_distinct.c.b == patient_id)
        )
    ).all()
    return {r.b if r.a == patient_id else r.a for r in rows}


def add_distinct(conn: Connection, pairs: Iterable[tuple[str, str]], reason: str) -> None:
    wanted = {pair(a, b) for a, b in pairs if a != b}
    if not wanted:
        return
    existing = {
        (r.a, r.b)
        for r in conn.execute(
            select(mpi_distinct.c.a, mpi_distinct.c.b).where(
                or_(*(and_(mpi_distinct.c.a == a, mpi_distinct.c.b == b) for a, b in wanted))
            )
        )
    }
    rows = [
        {"a": a, "b": b, "reason": reason, "created_at": now_micros()}
        for a, b in sorted(wanted - existing)
    ]
    if rows:
        conn.execute(insert(mpi_distinct), rows)


def remove_distinct(conn: Connection, pairs: Iterable[tuple[str, str]]) -> None:
    for a, b in {pair(a, b) for a, b in pairs}:
        conn.execute(delete(mpi_distinct).where(mpi_distinct.c.a == a, mpi_distinct.c.b == b))


def open_review(conn: Connection, patient_id: str, candidate_id: str) -> str | None:
    return conn.execute(
        select(mpi_reviews.c.task_id).where(
            mpi_reviews.c.patient_id == patient_id, mpi_reviews.c.candidate_id == candidate_id
        )
    ).scalar()


def add_review(
    conn: Connection, patient_id: str, candidate_id: str, task_id: str, score: float
) -> None:
    conn.execute(
        insert(mpi_reviews).values(
            patient_id=patient_id,
            candidate_id=candidate_id,
            task_id=task_id,
            score=score,
            status="open",
            created_at=now_micros(),
        )
    )


def review_by_task(conn: Connection, task_id: str) -> Any:
    return conn.execute(select(mpi_reviews).where(mpi_reviews.c.task_id == task_id)).first()


def close_review(conn: Connection, task_id: str, status: str) -> None:
    conn.execute(update(mpi_reviews).where(mpi_reviews.c.task_id == task_id).values(status=status))
