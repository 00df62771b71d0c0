"""What the delivery threads tell the routing service, in the transaction that records it.

- The outbox (hub.queue.outbox) reports each final outcome of a routed order's messages and
  each replay: the order's ACK AA is ``accepted``, a dead letter ``failed`` with the receiver's
  reason, a replay puts it back; the same for the result sent back to the orderer
  (``delivered`` / ``failed``).  A refused cancel is noted on the order, which stays cancelled;
  a refused change likewise, the order standing where it was.
- Subscription rest-hook delivery (hub.services.subscriptions.delivery) reports each
  notification that reached its endpoint: a result is ``delivered`` to a member that speaks
  FHIR when a notification of the report, or of the routing Task carrying it, reached one of
  that member's rest-hooks, i.e. an endpoint under its ``hl7-fhir-rest`` Endpoint's address.

Imported by the router (so every process that writes registers them) and by the feed service
(which runs the delivery threads).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select

from hub.queue.destinations import FHIR_REST
from hub.queue.outbox import Outcome, on_outcome
from hub.services import context
from hub.services.routing.endpoints import member_endpoints
from hub.services.routing.status import (
    CANCEL_TOPIC,
    CHANGE_TOPIC,
    ORDER_TOPIC,
    RESULT_TOPIC,
    Routed,
    load,
    move,
)
from hub.services.subscriptions.delivery import delivered_hooks
from hub.store.schema import resource_history, routed_orders

_EVENTS = {
    (ORDER_TOPIC, "sent"): "order-accepted",
    (ORDER_TOPIC, "failed"): "order-failed",
    (ORDER_TOPIC, "pending"): "order-replayed",
    (RESULT_TOPIC, "sent"): "result-delivered",
    (RESULT_TOPIC, "failed"): "result-failed",
    (RESULT_TOPIC, "pending"): "result-replayed",
}


def on_delivery(conn: Connection, outcome: Outcome) -> None:
    """The outbox's hook for the routing topics."""
    from hub.fhir.interactions import Unit

    routed = load(conn, row_id=outcome.topic_id) if outcome.topic_id is not None else None
    if routed is None:
        return
    unit = Unit.on(conn)
    if outcome.topic == CANCEL_TOPIC:
        if outcome.status == "failed":
            move(unit.writer, routed, "cancelled", error=f"cancel: {outcome.error}")
    elif outcome.topic == CHANGE_TOPIC:
        if outcome.status == "failed":
            move(unit.writer, routed, "changed", error=f"change: {outcome.error}")
    else:
        event = _EVENTS[(outcome.topic, outcome.status)]
        leg = "result delivery" if outcome.topic == RESULT_TOPIC else "order delivery"
        error = f"{leg}: {outcome.error}" if outcome.error else None
        move(unit.writer, routed, event, error=error, at=outcome.at)
    unit.writer.flush()


def _routed_by_notification(conn: Connection, row: Any) -> Routed | None:
    if row.res_type == "Task":
        routed = load(conn, task_id=row.res_id)
        if routed is None:
            return None
        # Only a version that carries the result counts (not the "accepted" one).
        content = conn.execute(
            select(resource_history.c.content).where(
                resource_history.c.res_type == "Task",
                resource_history.c.res_id == row.res_id,
                resource_history.c.version_id == row.version_id,
            )
        ).scalar()
        task = orjson.loads(content) if content else {}
        return routed if task.get("output") else None
    if row.res_type == "DiagnosticReport":
        found = conn.execute(
            select(routed_orders.c.id).where(routed_orders.c.report_id == row.res_id)
        ).scalar()
        return load(conn, row_id=int(found)) if found is not None else None
    return None


def on_notified(conn: Connection, row: Any, subscription: dict[str, Any]) -> None:
    """Subscription delivery's hook: a result reached a FHIR-speaking orderer's rest-hook."""
    from hub.fhir.interactions import Unit

    routed = _routed_by_notification(conn, row)
    if routed is None or routed.status != "resulted":
        return
    hook = str((subscription.get("channel") or {}).get("endpoint") or "")
    orderer = context.community().member(routed.orderer)
    endpoints = member_endpoints(conn, orderer.org_id) if orderer is not None else []
    if not any(
        e.connection == FHIR_REST and e.address and hook.startswith(e.address) for e in endpoints
    ):
        return  # someone else's Subscription (the centre's, the office's)
    unit = Unit.on(conn)
    move(unit.writer, routed, "result-delivered")
    unit.writer.flush()


for _topic in (ORDER_TOPIC, CANCEL_TOPIC, CHANGE_TOPIC, RESULT_TOPIC):
    on_outcome(_topic, on_delivery)
if on_notified not in delivered_hooks:
    delivered_hooks.append(on_notified)
