"""Small keyed values the hub keeps beside its data (the ``sql_watermarks`` table): a SQL
feed's high-water mark, the certifications digest the HR marks were judged against.

Written in the caller's transaction, so a mark moves together with the work it records (the
rows a poll stored; the reports re-judged)."""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.store.repository import now_micros
from hub.store.schema import sql_watermarks


def read_mark(conn: Connection, key: str) -> str | None:
    return conn.execute(
        select(sql_watermarks.c.last_key).where(sql_watermarks.c.feed_id == key)
    ).scalar()


def write_mark(conn: Connection, key: str, value: str) -> None:
    values = {"last_key": value, "updated_at": now_micros()}
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(
        insert(sql_watermarks)
        .values(feed_id=key, **values)
        .on_conflict_do_update(index_elements=[sql_watermarks.c.feed_id], set_=values)
    )
