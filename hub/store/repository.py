"""The resource store: current version, history and search-index rows, written together.

Functions take an open SQLAlchemy ``Connection`` inside a transaction and never commit: the
caller (one HTTP interaction, or one whole transaction Bundle) owns commit and rollback, so every
write of a resource, its history row and its index rows is atomic with everything else the unit
of work does.  Writes are buffered in a ``Writer`` and flushed as multi-row inserts, which is
what makes 100-entry transaction Bundles fast.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Table, and_, delete, insert, select, update

from hub.fhir.errors import Gone, NotFound, PreconditionFailed
from hub.search.extract import Rows, extract_index_rows
from hub.search.values import format_instant
from hub.store.bulk import (
    COPY_THRESHOLD,
    Row,
    allocate_rids,
    as_mapping,
    copy_rows,
    delete_pipelined,
    insert_pipelined,
)
from hub.store.schema import INDEX_TABLES, resource_history, resources


@dataclass(frozen=True)
class StoredResource:
    res_type: str
    res_id: str
    version_id: int
    last_updated: int  # µs since epoch, UTC
    content: str | None  # JSON text with meta.versionId/lastUpdated; None for a deletion
    deleted: bool = False
    method: str = "PUT"

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'

    @property
    def last_modified(self) -> str:
        return format_instant(self.last_updated)


def now_micros() -> int:
    return time.time_ns() // 1000


def new_id() -> str:
    return str(uuid.uuid4())


def stamp(resource: dict[str, Any], res_id: str, version_id: int, last_updated: int) -> str:
    """The stored JSON text: id and meta set by the server, the client's content kept as sent."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(last_updated)
    body = {"resourceType": resource["resourceType"], "id": res_id, "meta": meta}
    for key, value in resource.items():
        if key not in body:
            body[key] = value
    return orjson.dumps(body).decode("utf-8")


# Each index table's columns after (rid, res_type), in table order.


def _row_to_stored(row: Any) -> StoredResource:
    return StoredResource(
        res_type=row.res_type,
        res_id=row.res_id,
        version_id=row.version_id,
        last_updated=row.last_updated,
        content=row.content,
        deleted=bool(row.deleted),
        method=getattr(row, "method", "PUT"),
    )


# --- reads ---------------------------------------------------------------------------------


def read(conn: Connection, res_type: str, res_id: str) -> StoredResource:
    """The current version; NotFound if it never existed, Gone if deleted."""
    row = conn.execute(
        select(
            resources.c.res_type,
            resources.c.res_id,
            resources.c.version_id,
            resources.c.last_updated,
            resources.c.content,
            resources.c.deleted,
        ).where(resources.c.res_type == res_type, resources.c.res_id == res_id)
    ).first()
    if row is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    if row.deleted:
        raise Gone(f"{res_type}/{res_id} was deleted (version {row.version_id})")
    return _row_to_stored(row)


def read_current(conn: Connection, res_type: str, res_id: str) -> StoredResource | None:
    """The current row including deletions, or None; for writers."""
    try:
        return read(conn, res_type, res_id)
    except Gone:
        row = conn.execute(
            select(resources).where(resources.c.res_type == res_type, resources.c.res_id == res_id)
        ).first()
        return _row_to_stored(row) if row else None
    except NotFound:
        return None


def read_many(conn: Connection, res_type: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Current content of many resources of one type, parsed; absent and deleted left out."""
    wanted = sorted(set(ids))
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        rows = conn.execute(
            select(resources.c.res_id, resources.c.content).where(
                resources.c.res_type == res_type,
                resources.c.res_id.in_(wanted[start : start + 500]),
                resources.c.deleted.is_(False),
            )
        ).all()
        out.update((r.res_id, orjson.loads(r.content)) for r in rows if r.content)
    return out


def vread(conn: Connection, res_type: str, res_id: str, version_id: int) -> StoredResource:
    row = conn.execute(
        select(resource_history).where(
            resource_history.c.res_type == res_type,
            resource_history.c.res_id == res_id,
            resource_history.c.version_id == version_id,
        )
    ).first()
    if row is None:
        if conn.execute(
            select(resources.c.rid).where(
                resources.c.res_type == res_type, resources.c.res_id == res_id
            )
        ).first():
            raise NotFound(f"{res_type}/{res_id} has no version {version_id}")
        raise NotFound(f"{res_type}/{res_id} is not known")
    if row.deleted:
        raise Gone(f"{res_type}/{res_id} version {version_id} is a deletion")
    return _row_to_stored(row)


def history(
    conn: Connection,
    *,
    res_type: str | None = None,
    res_id: str | None = None,
    since: int | None = None,
    before: tuple[int, int, int] | None = None,
    count: int = 100,
) -> list[tuple[StoredResource, tuple[int, int, int]]]:
    """Versions newest first, each with its seek key (last_updated, rid, version_id).

    ``before`` is the seek key of the last entry of the previous page, so paging stays correct
    while new versions are written (they are newer and never shift older pages).
    """
    h = resource_history.c
    query = select(resource_history)
    if res_type is not None:
        query = query.where(h.res_type == res_type)
    if res_id is not None:
        query = query.where(h.res_id == res_id)
        if (
            res_type is not None
            and not conn.execute(
                select(resources.c.rid).where(
                    resources.c.res_type == res_type, resources.c.res_id == res_id
                )
            ).first()
        ):
            raise NotFound(f"{res_type}/{res_id} is not known")
    if since is not None:
        query = query.where(h.last_updated >= since)
    if before is not None:
        lu, rid, vid = before
        query = query.where(
            (h.last_updated < lu)
            | and_(h.last_updated == lu, h.rid < rid)
            | and_(h.last_updated == lu, h.rid == rid, h.version_id < vid)
        )
    query = query.order_by(h.last_updated.desc(), h.rid.desc(), h.version_id.desc()).limit(count)
    return [(_row_to_stored(r), (r.last_updated, r.rid, r.version_id)) for r in conn.execute(query)]


# --- writes --------------------------------------------------------------------------------


@dataclass
class _PendingCreate:
    res_type: str
    res_id: str
    last_updated: int
    content: str
    rows: Rows


class WriteObserver(Protocol):
    """A service that keeps its own state in step with writes of some resource types (the
    patient index with Patients).  It runs inside the unit of work, so it commits or rolls
    back with the writes it watches."""

    types: frozenset[str]

    def before_write(
        self, writer: Writer, resource: dict[str, Any], res_id: str
    ) -> dict[str, Any]: ...

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None: ...

    def before_flush(self, writer: Writer) -> None: ...


@dataclass
class Writer:
    """Buffers the writes of one unit of work and flushes them as multi-row statements.

    Creates are deferred until ``flush`` (their rid comes from the insert); updates and deletes
    of existing rows run their row lock and index clean-up at once, their inserts are batched.
    """

    conn: Connection
    last_updated: int = field(default_factory=now_micros)
    # By (type, id), in the order written: services read back what the unit created (a
    # group of feed messages creates ~1,000 resources; a list scan per read was quadratic).
    _creates: dict[tuple[str, str], _PendingCreate] = field(default_factory=dict)
    _history: list[dict[str, Any]] = field(default_factory=list)
    # Index rows as tuples in their table's column order (COPY writes them as they are).
    _index: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    _claimed: set[tuple[str, str]] = field(default_factory=set)
    observer: WriteObserver | None = None
    # rid of each resource updated in this unit (a rewrite needs it).
    _rids: dict[tuple[str, str], int] = field(default_factory=dict)
    # Resources this unit created: no row of them existed before it (see ``fresh``).
    _fresh: set[tuple[str, str]] = field(default_factory=set)

    def _observe(self, resource: dict[str, Any], res_id: str, observe: bool) -> dict[str, Any]:
        if (
            observe
            and self.observer is not None
            and resource["resourceType"] in self.observer.types
        ):
            return self.observer.before_write(self, resource, res_id)
        return resource

    def _claim(self, res_type: str, res_id: str) -> None:
        key = (res_type, res_id)
        if key in self._claimed:
            from hub.fhir.errors import BadRequest

            raise BadRequest(f"{res_type}/{res_id} is written twice in one transaction")
        self._claimed.add(key)

    def create(
        self, resource: dict[str, Any], res_id: str | None = None, *, observe: bool = True
    ) -> StoredResource:
        res_type = resource["resourceType"]
        res_id = res_id or new_id()
        self._claim(res_type, res_id)
        self._fresh.add((res_type, res_id))
        resource = self._observe(resource, res_id, observe)
        content = stamp(resource, res_id, 1, self.last_updated)
        rows = extract_index_rows(resource)
        self._creates[(res_type, res_id)] = _PendingCreate(
            res_type, res_id, self.last_updated, content, rows
        )
        return StoredResource(res_type, res_id, 1, self.last_updated, content, method="POST")

    def update(
        self,
        resource: dict[str, Any],
        res_id: str,
        *,
        if_match: int | None = None,
        allow_create: bool = True,
        observe: bool = True,
    ) -> tuple[StoredResource, bool]:
        """Write a new version (or the first, for update-as-create); returns (stored, created)."""
        res_type = resource["resourceType"]
        current = self._lock_current(res_type, res_id)
        if current is None:
            if if_match is not None:
                raise PreconditionFailed(
                    f"If-Match {if_match} given but {res_type}/{res_id} does not exist"
                )
            if not allow_create:
                raise NotFound(f"{res_type}/{res_id} is not known")
            return self.create(resource, res_id, observe=observe), True
        rid, version_id, deleted = current
        if if_match is not None and if_match != version_id:
            raise PreconditionFailed(
                f"{res_type}/{res_id} is at version {version_id}, not {if_match}",
                code="conflict",
            )
        self._claim(res_type, res_id)
        self._rids[(res_type, res_id)] = rid
        resource = self._observe(resource, res_id, observe)
        new_version = version_id + 1
        content = stamp(resource, res_id, new_version, self.last_updated)
        self._replace_current(rid, new_version, content)
        self._add_index(rid, res_type, extract_index_rows(resource))
        method = "POST" if deleted else "PUT"
        self._history.append(self._history_row(rid, res_type, res_id, new_version, content, method))
        stored = StoredResource(res_type, res_id, new_version, self.last_updated, content)
        return stored, deleted

    def delete(self, res_type: str, res_id: str) -> StoredResource | None:
        """Mark deleted (a new version with no content); None if absent or already deleted."""
        current = self._lock_current(res_type, res_id)
        if current is None or current[2]:
            return None
        rid, version_id, _ = current
        self._claim(res_type, res_id)
        new_version = version_id + 1
        self._replace_current(rid, new_version, None)
        self._history.append(self._history_row(rid, res_type, res_id, new_version, None, "DELETE"))
        if self.observer is not None and res_type in self.observer.types:
            self.observer.after_delete(self, res_type, res_id)
        return StoredResource(
            res_type, res_id, new_version, self.last_updated, None, deleted=True, method="DELETE"
        )

    def fresh(self, res_type: str, res_id: str) -> bool:
        """Whether this unit created Type/id, so that no version of it existed before: a
        create's id is new, and an update creates only where no row (not even a deleted one)
        was found.  Services skip looking up state they keep for resources that existed."""
        return (res_type, res_id) in self._fresh

    def written(self, res_type: str, res_id: str) -> bool:
        """Whether this unit of work has written Type/id already."""
        return (res_type, res_id) in self._claimed

    def content_of(self, res_type: str, res_id: str) -> str | None:
        """Type/id's JSON as this unit of work sees it: a create still buffered (not in the
        table until ``flush``), else the current stored version; None if absent or deleted.
        For services that read, before the flush, what the same unit just wrote."""
        create = self._creates.get((res_type, res_id))
        if create is not None:
            return create.content
        current = read_current(self.conn, res_type, res_id)
        return None if current is None or current.deleted else current.content

    def rewrite(self, resource: dict[str, Any], res_id: str) -> None:
        """Replace the version this unit wrote of a resource, keeping its version number.

        For services that learn something about a resource after it was written in the same
        unit (the patient index moving a record to another person): one unit, one version.
        """
        res_type = resource["resourceType"]
        create = self._creates.get((res_type, res_id))
        if create is not None:
            create.content = stamp(resource, res_id, 1, self.last_updated)
            create.rows = extract_index_rows(resource)
            return
        rid = self._rids.get((res_type, res_id))
        if rid is None:  # created and flushed in this unit
            rid = self.conn.execute(
                select(resources.c.rid).where(
                    resources.c.res_type == res_type, resources.c.res_id == res_id
                )
            ).scalar_one()
        version_id = self.conn.execute(
            select(resources.c.version_id).where(resources.c.rid == rid)
        ).scalar_one()
        content = stamp(resource, res_id, version_id, self.last_updated)
        self._replace_current(rid, version_id, content)
        for kind, rows in self._index.items():
            self._index[kind] = [r for r in rows if r[0] != rid]
        self._add_index(rid, res_type, extract_index_rows(resource))
        for row in self._history:
            if row["rid"] == rid and row["version_id"] == version_id:
                row["content"] = content
                return
        self.conn.execute(
            update(resource_history)
            .where(resource_history.c.rid == rid, resource_history.c.version_id == version_id)
            .values(content=content)
        )

    def flush(self) -> None:
        if self.observer is not None:
            self.observer.before_flush(self)
        bulk = self.conn.dialect.name == "postgresql"
        pending: list[tuple[Table, Sequence[Row]]] = []
        if self._creates:
            rows = [
                {
                    "res_type": c.res_type,
                    "res_id": c.res_id,
                    "version_id": 1,
                    "last_updated": c.last_updated,
                    "deleted": False,
                    "content": c.content,
                }
                for c in self._creates.values()
            ]
            if bulk:
                rids = allocate_rids(self.conn, len(rows))
                for row, rid in zip(rows, rids, strict=True):
                    row["rid"] = rid
                pending.append((resources, rows))
            else:
                result = self.conn.execute(
                    insert(resources).returning(resources.c.rid, sort_by_parameter_order=True),
                    rows,
                )
                rids = list(result.scalars().all())
            for create, rid in zip(self._creates.values(), rids, strict=True):
                self._history.append(
                    self._history_row(
                        rid, create.res_type, create.res_id, 1, create.content, "POST"
                    )
                )
                self._add_index(rid, create.res_type, create.rows)
        pending.append((resource_history, self._history))
        pending.extend((INDEX_TABLES[kind], rows) for kind, rows in self._index.items())
        pending = [(table, rows) for table, rows in pending if rows]
        if not bulk:
            for table, rows in pending:
                self.conn.execute(insert(table), [as_mapping(table, r) for r in rows])
        elif len(self._creates) >= COPY_THRESHOLD:
            for table, rows in pending:
                copy_rows(self.conn, table, rows)
        elif pending:
            insert_pipelined(self.conn, pending)
        self._creates.clear()
        self._history = []
        self._index = {}

    # -- helpers --

    def _lock_current(self, res_type: str, res_id: str) -> tuple[int, int, bool] | None:
        query = select(resources.c.rid, resources.c.version_id, resources.c.deleted).where(
            resources.c.res_type == res_type, resources.c.res_id == res_id
        )
        if self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        return (row.rid, row.version_id, bool(row.deleted)) if row else None

    def _replace_current(self, rid: int, version_id: int, content: str | None) -> None:
        """Point the resource row at a new version (None: a deletion) and drop its old index."""
        self.conn.execute(
            update(resources)
            .where(resources.c.rid == rid)
            .values(
                version_id=version_id,
                last_updated=self.last_updated,
                content=content,
                deleted=content is None,
            )
        )
        self._clear_index(rid)

    def _clear_index(self, rid: int) -> None:
        if self.conn.dialect.name == "postgresql":
            delete_pipelined(self.conn, list(INDEX_TABLES.values()), rid)
            return
        for table in INDEX_TABLES.values():
            self.conn.execute(delete(table).where(table.c.rid == rid))

    def _add_index(self, rid: int, res_type: str, rows: Rows) -> None:
        # The extractor's rows follow their table's columns after (rid, res_type).
        key = (rid, res_type)
        for kind, kind_rows in rows.items():
            if kind_rows:
                self._index.setdefault(kind, []).extend([key + row for row in kind_rows])

    def _history_row(
        self,
        rid: int,
        res_type: str,
        res_id: str,
        version_id: int,
        content: str | None,
        method: str,
    ) -> dict[str, Any]:
        return {
            "rid": rid,
            "version_id": version_id,
            "res_type": res_type,
            "res_id": res_id,
            "last_updated": self.last_updated,
            "deleted": content is None,
            "method": method,
            "content": content,
        }


def exists(conn: Connection, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (type, id) pairs exist and are not deleted."""
    found: set[tuple[str, str]] = set()
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
        by_type.setdefault(res_type, []).append(res_id)
    for res_type, ids in by_type.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = select(resources.c.res_id).where(
                resources.c.res_type == res_type,
                resources.c.res_id.in_(chunk),
                resources.c.deleted.is_(False),
            )
            found.update((res_type, rid) for rid in conn.execute(query).scalars())
    return found
