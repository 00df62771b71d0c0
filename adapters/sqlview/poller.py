"""Read the next batch of a middle table after a key (transport only: rows, not meaning).

Rows come in key order.  A batch never splits a report: when the batch is full, the rows of
its last report are left for the next poll (unless that report alone fills the batch), since
vendors write a report's rows together but a poll can land between two of them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, MetaData, Table, select

from adapters.sqlview.config import SqlFeed


def source_table(engine: Engine, feed: SqlFeed) -> Table:
    """The table or view, reflected (views too); ``schema.name`` names another schema."""
    schema, _, name = feed.table.rpartition(".")
    return Table(name, MetaData(), autoload_with=engine, schema=schema or None)


def read_batch(
    engine: Engine, table: Table, feed: SqlFeed, after: Any | None
) -> list[dict[str, Any]]:
    key = table.c[feed.key]
    query = select(table).order_by(key).limit(feed.batch)
    if after is not None:
        query = query.where(key > after)
    with engine.connect() as conn:
        # Plain str keys: reflected column names are a str subclass that orjson refuses.
        rows = [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(query)]
    if len(rows) < feed.batch or not rows:
        return rows
    last_group = rows[-1].get(feed.group)
    trimmed = [r for r in rows if r.get(feed.group) != last_group]
    # A single report larger than the batch is taken whole rather than never.
    return trimmed or rows


def group_rows(rows: list[dict[str, Any]], feed: SqlFeed) -> list[list[dict[str, Any]]]:
    """Rows grouped by report, in the order each report first appears."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get(feed.group), []).append(row)
    return list(groups.values())
