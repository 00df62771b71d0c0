"""Replay: map chosen inbox messages again (after the configuration is fixed) and apply them.

A rejected message that now maps becomes accepted, unless an accepted message from the same
sender already holds its control id (then it stays rejected, saying so).  A failed message is
mapped again too, since the cause may have been the mapping, and goes back to pending.  The
original bytes are never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from adapters.feeds.config import Community
from adapters.hl7v2.errors import HL7ParseError
from adapters.hl7v2.mapped import Mapped, MappingError
from adapters.sqlview.config import SqlFeed, load_sql_feeds
from hub.queue.intake import read_and_map
from hub.queue.sql_intake import map_group
from hub.queue.worker import drain
from hub.store.schema import inbox

REPLAYABLE = ("failed", "rejected")


def replay_messages(
    engine: Engine, community: Community, ids: Sequence[int] | None = None
) -> dict[str, int]:
    """Re-map and re-queue the messages (default: every failed one), then apply the queue."""
    query = select(
        inbox.c.id, inbox.c.sender, inbox.c.raw, inbox.c.transport, inbox.c.control_id
    ).where(inbox.c.status.in_(REPLAYABLE))
    query = (
        query.where(inbox.c.id.in_(list(ids))) if ids else query.where(inbox.c.status == "failed")
    )
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(inbox.c.id)).all()
    counts: dict[str, int] = {}
    sql_feeds = {f.id: f for f in load_sql_feeds()}  # today's configuration, read once
    for row in rows:
        outcome = _requeue(engine, community, sql_feeds, row)
        counts[outcome] = counts.get(outcome, 0) + 1
    for status, n in drain(engine).items():
        counts[status] = counts.get(status, 0) + n
    return counts


def _map_again(community: Community, feeds: dict[str, SqlFeed], row: Any) -> Mapped:
    """The message mapped with today's configuration, by the transport it came through."""
    if row.transport == "sql":
        feed_id = row.control_id.split(":", 1)[0]
        if feed_id not in feeds:
            raise MappingError(f"SQL feed {feed_id!r} is no longer configured", reject=True)
        return map_group(orjson.loads(row.raw), feeds[feed_id], community)
    return read_and_map(row.raw, community, row.sender)[1]


def _requeue(engine: Engine, community: Community, feeds: dict[str, SqlFeed], row: Any) -> str:
    inbox_id = row.id
    try:
        mapped = _map_again(community, feeds, row)
    except HL7ParseError as exc:
        _set(engine, inbox_id, error=f"{exc.code} {exc.segment}-{exc.field_no or ''}: {exc}")
        return "still rejected"
    try:
        _set(
            engine,
            inbox_id,
            status="pending",
            accepted=True,
            error=None,
            bundle=orjson.dumps(mapped.bundle).decode(),
            patient_key=mapped.patient_key,
        )
    except IntegrityError:
        _set(engine, inbox_id, error="an accepted message from this sender has this control id")
        return "still rejected"
    return "requeued"


def _set(engine: Engine, inbox_id: int, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(update(inbox).where(inbox.c.id == inbox_id).values(**values))
