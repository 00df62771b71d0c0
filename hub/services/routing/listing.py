"""The office's list of routed orders, each with where its last message stands."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from hub.search.values import format_instant
from hub.store.schema import outbox
from hub.store.schema import routed_orders as ro

_TIMES = ("ordered_at", "routed_at", "accepted_at", "resulted_at", "delivered_at", "failed_at",
          "cancelled_at", "updated_at")  # fmt: skip


def routed(
    conn: Connection,
    *,
    status: str | None = None,
    destination: str | None = None,
    orderer: str | None = None,
    month: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first; each with its latest outbox message (order, cancel or result)."""
    query = select(ro).order_by(ro.c.id.desc()).limit(max(1, min(limit, 1000)))
    for column, value in (
        (ro.c.status, status),
        (ro.c.destination, destination),
        (ro.c.orderer, orderer),
        (ro.c.month, month),
    ):
        if value:
            query = query.where(column == value)
    rows = conn.execute(query).all()
    latest: dict[int, Any] = {}
    if rows:
        ids = [r.id for r in rows]
        newest = (
            select(func.max(outbox.c.id))
            .where(outbox.c.topic_id.in_(ids), outbox.c.topic.like("route-%"))
            .group_by(outbox.c.topic_id)
            .scalar_subquery()
        )
        for message in conn.execute(
            select(
                outbox.c.id, outbox.c.topic, outbox.c.topic_id, outbox.c.status,
                outbox.c.attempts, outbox.c.last_error, outbox.c.destination,
            ).where(outbox.c.id.in_(newest))
        ):  # fmt: skip
            latest[message.topic_id] = message
    return [_listed(r, latest.get(r.id)) for r in rows]


def _listed(row: Any, message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "serviceRequest": f"ServiceRequest/{row.request_id}",
        "task": f"Task/{row.task_id}",
        "orderer": row.orderer,
        "destination": row.destination,
        "endpoint": row.endpoint,
        "channel": row.channel,
        "message": row.message,
        "kind": row.kind,
        "item": row.item,
        "month": row.month,
        "status": row.status,
        "report": f"DiagnosticReport/{row.report_id}" if row.report_id else None,
        "error": row.last_error,
    }
    for name in _TIMES:
        value = getattr(row, name)
        out[name.removesuffix("_at")] = format_instant(value) if value is not None else None
    if message is not None:
        out["lastMessage"] = {
            "outbox": message.id,
            "topic": message.topic,
            "destination": message.destination,
            "status": message.status,
            "attempts": message.attempts,
            "error": message.last_error,
        }
    return out
