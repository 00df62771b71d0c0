"""Enhanced-mode application acknowledgements (MSH-16), sent once a message is applied.

The commit ACK (CA) answered on the connection says "stored"; a sender in enhanced mode may
also ask (MSH-16 AL, or ER / SU) for an application ACK saying what became of the message.
It is a message of its own, delivered through the durable outbox to the member's configured
address (``applicationAcks`` in community.json), and queued in the same transaction that
applied (or failed) the message, so it is sent exactly when the outcome is final.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from adapters.hl7v2.ack import ErrorDetail, build_ack
from adapters.hl7v2.errors import APPLICATION_INTERNAL_ERROR
from adapters.hl7v2.parse import parse_header
from hub.queue.outbox import enqueue
from hub.store.repository import new_id
from hub.store.schema import inbox

# MSH-16 → the application ACK codes it asks for (HL7 table 0155).
_WANTED = {"AL": {"AA", "AE"}, "ER": {"AE"}, "SU": {"AA"}}


def queue_application_acks(
    conn: Connection, ids: list[int], code: str, error: str | None = None
) -> int:
    """Queue the application ACKs these messages' senders asked for; how many were queued."""
    rows = conn.execute(
        select(inbox.c.raw, inbox.c.app_ack, inbox.c.reply_to).where(
            inbox.c.id.in_(ids), inbox.c.reply_to.is_not(None)
        )
    ).all()
    queued = 0
    for row in rows:
        if code not in _WANTED.get(row.app_ack or "", set()):
            continue
        ack = _application_ack(row, code, error)
        if ack is not None:
            enqueue(conn, row.reply_to, ack)
            queued += 1
    return queued


def _application_ack(row: Any, code: str, error: str | None) -> bytes | None:
    header = parse_header(row.raw)
    if header is None:
        return None
    errors = [ErrorDetail(error, APPLICATION_INTERNAL_ERROR)] if error else None
    return build_ack(header, code, errors=errors, control_id=new_id()[:20]).encode("utf-8")
