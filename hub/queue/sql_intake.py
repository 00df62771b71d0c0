"""SQL middle-table intake: poll a member's view, one inbox message per report, durably.

Each poll reads the rows after the feed's high-water mark, maps each report's rows to a
Bundle, and writes the inbox rows and the new high-water mark in one transaction: a crash
before the commit reads the same rows again, a crash after it never reads them twice.  A report
that cannot be mapped (an empty required column) is kept as rejected, with its rows as JSON,
and does not hold up the feed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Engine, Table, insert

from adapters.feeds.config import Community
from adapters.hl7v2.mapped import Mapped, MappingError
from adapters.logsafe import describe
from adapters.sqlview.config import SqlFeed
from adapters.sqlview.mapping import map_report_rows
from adapters.sqlview.poller import group_rows, read_batch, source_table
from hub.queue.intake import inbox_row
from hub.queue.mapped_check import validated
from hub.queue.streams import announce_inbox
from hub.search.values import format_instant
from hub.store.marks import read_mark, write_mark
from hub.store.repository import now_micros
from hub.store.schema import inbox

log = logging.getLogger("hub.sqlfeed")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(type(value).__name__)


def rows_json(rows: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(rows, default=_json_default)


def watermark(engine: Engine, feed: SqlFeed) -> Any | None:
    with engine.connect() as conn:
        found = read_mark(conn, feed.id)
    return orjson.loads(found) if found is not None else None


def map_group(rows: list[dict[str, Any]], feed: SqlFeed, community: Community) -> Mapped:
    report_no = str(rows[0].get(feed.group, ""))
    mapped = map_report_rows(
        rows,
        feed,
        community,
        source_ref=f"{feed.id}|{report_no}|{rows[0].get(feed.key)}",
        received_at=format_instant(now_micros()),
    )
    return validated(mapped)


def poll_once(
    engine: Engine,
    source: Engine,
    feed: SqlFeed,
    community: Community,
    table: Table | None = None,
) -> int:
    """Move one batch from the view into the inbox; returns how many reports it held."""
    table = table if table is not None else source_table(source, feed)
    after = watermark(engine, feed)
    rows = read_batch(source, table, feed, after)
    if not rows:
        return 0
    stored = []
    for group in group_rows(rows, feed):
        raw = rows_json(group)
        report_no = str(group[0].get(feed.group, ""))
        error, mapped = None, None
        try:
            mapped = map_group(group, feed, community)
        except MappingError as exc:
            error = f"{exc.code}: {exc}"
        row = inbox_row(
            raw,
            transport="sql",
            peer=f"{feed.id}:{feed.table}",
            sender=feed.member,
            application="SQL",
            control_id=f"{feed.id}:{report_no}:{group[0].get(feed.key)}",
            message_type=f"SQL^{feed.kind}",
            error=error,
            mapped=mapped,
        )
        stored.append(row)
    last_key = orjson.dumps(rows[-1][feed.key], default=_json_default).decode()
    with engine.begin() as conn:
        written = conn.execute(
            insert(inbox).returning(inbox.c.id, inbox.c.patient_key, inbox.c.status), stored
        ).all()
        write_mark(conn, feed.id, last_key)
    for r in written:  # committed: with Redis, tell a worker
        if r.status == "pending":
            announce_inbox(int(r.id), r.patient_key)
    return len(stored)


class SqlPoller:
    """A thread per process that polls every configured feed on its interval."""

    def __init__(
        self,
        engine: Engine,
        community: Community,
        feeds: list[SqlFeed],
        *,
        on_stored: Any = None,
    ) -> None:
        from hub.db import make_engine

        self.engine, self.community, self.on_stored = engine, community, on_stored
        self.feeds = [f for f in feeds if f.url]
        self._sources = {
            f.id: make_engine(f.url or "", pool_size=1, max_overflow=1) for f in self.feeds
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sql-poller", daemon=True)

    def start(self) -> None:
        if self.feeds:
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for source in self._sources.values():
            source.dispose()

    def _run(self) -> None:
        due = {f.id: 0.0 for f in self.feeds}
        while not self._stop.is_set():
            for feed in self.feeds:
                if time.monotonic() < due[feed.id]:
                    continue
                try:
                    while poll_once(self.engine, self._sources[feed.id], feed, self.community):
                        if self.on_stored is not None:
                            self.on_stored()
                except Exception as exc:  # a source that is down must not stop the others
                    log.warning("SQL feed %s: %s", feed.id, describe(exc))
                due[feed.id] = time.monotonic() + feed.poll_seconds
            self._stop.wait(1.0)
