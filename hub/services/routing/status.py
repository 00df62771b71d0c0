"""Each routed order's status, kept in ``routed_orders`` and shown by its Task.

Statuses (CodeSystem ``routing-status``, the Task's ``businessStatus``):

    sent ──ACK AA / centre accepts──▶ accepted ──result──▶ resulted ──ACK AA──▶ delivered
      │                                  │                    │
      └──AE/AR, attempts run out─────────┴─▶ failed ◀─────────┘ (the result's delivery)
    cancelled: the orderer revoked the order before a result came.

A result moves any order to ``resulted`` (even a failed or cancelled one: the centre did the
work, and the result must reach the orderer), and a corrected result moves a delivered order
back to ``resulted`` until the correction is delivered too.  A dead letter replayed by the
office puts the order back where it was before that message failed.

The Task (``Task/route-<ServiceRequest id>``: intent order, focus the order, owner the centre,
requester the ordering member) is rewritten at each step, in the same transaction as the row,
so Subscriptions on it hear every step.  Writes of the routing service itself are marked with
``OWN_WRITES``, so the router does not take them for the centre's.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from hub.search.values import format_instant
from hub.store import repository as repo
from hub.store.repository import Writer, now_micros
from hub.store.schema import routed_orders

ROUTING_STATUS = "https://ygt.example.org/fhir/CodeSystem/routing-status"
ORDER_ROUTING = "https://ygt.example.org/fhir/CodeSystem/order-routing"
TASK_CODES = "http://hl7.org/fhir/CodeSystem/task-code"
ROUTED_ORDER = {"system": ORDER_ROUTING, "code": "routed-order", "display": "分中心检验检查申请"}
STATUSES = {
    "sent": "已发送",
    "accepted": "已接收",
    "resulted": "已出结果",
    "delivered": "结果已送达",
    "failed": "失败",
    "cancelled": "已撤销",
}
_TASK_STATUS = {
    "sent": "requested",
    "accepted": "accepted",
    "resulted": "completed",
    "delivered": "completed",
    "cancelled": "cancelled",
}
# Outbox topics: the order (or its change, or its cancel) to the centre, the result to the
# orderer.
ORDER_TOPIC, CANCEL_TOPIC, RESULT_TOPIC = "route-order", "route-cancel", "route-result"
CHANGE_TOPIC = "route-change"

# Set while the routing service writes its own Tasks.
OWN_WRITES: ContextVar[bool] = ContextVar("routing_own_writes", default=False)


def task_id_for(request_id: str) -> str:
    """The routing Task's id: ``route-<ServiceRequest id>`` (hashed when that is too long)."""
    if len(request_id) <= 58:
        return f"route-{request_id}"
    return "route-" + hashlib.sha1(request_id.encode()).hexdigest()[:40]


def advance(status: str, event: str) -> str | None:
    """The status after ``event``, or None when the event changes nothing (pure)."""
    if event == "resulted":
        return "resulted"
    if event in ("order-accepted", "centre-accepted"):
        return "accepted" if status == "sent" else None
    if event in ("order-failed", "centre-rejected"):
        return "failed" if status in ("sent", "accepted") else None
    if event == "order-replayed":
        return "sent" if status == "failed" else None
    if event == "cancelled":
        return "cancelled" if status in ("sent", "accepted", "failed") else None
    if event == "changed":
        return None  # the order changed, not where it stands
    if event == "result-delivered":
        return "delivered" if status == "resulted" else None
    if event == "result-failed":
        return "failed" if status in ("resulted", "delivered") else None
    if event == "result-replayed":
        return "resulted" if status == "failed" else None
    raise ValueError(f"unknown routing event {event!r}")


_STAMP = {
    "accepted": "accepted_at",
    "resulted": "resulted_at",
    "delivered": "delivered_at",
    "failed": "failed_at",
    "cancelled": "cancelled_at",
}


@dataclass(frozen=True)
class Routed:
    """One routed order, as ``routed_orders`` holds it."""

    id: int
    request_id: str
    task_id: str
    orderer: str
    destination: str
    endpoint: str | None
    channel: str
    message: str | None
    status: str
    ordered_at: int
    routed_at: int
    resulted_at: int | None
    report_id: str | None
    last_error: str | None

    @classmethod
    def of(cls, row: Any) -> Routed:
        return cls(
            row.id, row.request_id, row.task_id, row.orderer, row.destination, row.endpoint,
            row.channel, row.message, row.status, row.ordered_at, row.routed_at, row.resulted_at,
            row.report_id, row.last_error,
        )  # fmt: skip


def load(
    conn: Connection,
    *,
    row_id: int | None = None,
    request_id: str | None = None,
    task_id: str | None = None,
) -> Routed | None:
    """A routed order by its row id, its ServiceRequest or its Task; locked for update
    (PostgreSQL), since an ACK, a result and the office may move it at the same time."""
    query = select(routed_orders)
    if row_id is not None:
        query = query.where(routed_orders.c.id == row_id)
    elif request_id is not None:
        query = query.where(routed_orders.c.request_id == request_id)
    else:
        query = query.where(routed_orders.c.task_id == task_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return Routed.of(row) if row is not None else None


def task_resource(routed: Routed, request: dict[str, Any]) -> dict[str, Any]:
    """The routing Task for ``routed`` at its current status (pure)."""
    status = routed.status
    if status == "failed":
        # The order never reached the centre: the task failed.  A result that did not reach
        # the orderer: the centre's task is done, its delivery is what failed.
        task_status = "completed" if routed.resulted_at is not None else "failed"
    else:
        task_status = _TASK_STATUS[status]
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": routed.task_id,
        "basedOn": [{"reference": f"ServiceRequest/{routed.request_id}"}],
        "status": task_status,
        "businessStatus": {
            "coding": [{"system": ROUTING_STATUS, "code": status, "display": STATUSES[status]}],
            "text": STATUSES[status],
        },
        "intent": "order",
        "code": {
            "coding": [{"system": TASK_CODES, "code": "fulfill"}, ROUTED_ORDER],
            "text": ROUTED_ORDER["display"],
        },
        "focus": {"reference": f"ServiceRequest/{routed.request_id}"},
        "authoredOn": format_instant(routed.ordered_at),
        "lastModified": format_instant(now_micros()),
        "requester": {"reference": f"Organization/{routed.orderer}"},
        "owner": {"reference": f"Organization/{routed.destination}"},
        "executionPeriod": {"start": format_instant(routed.routed_at)},
    }
    if request.get("priority") in ("routine", "urgent", "asap", "stat"):
        task["priority"] = request["priority"]
    if subject := (request.get("subject") or {}).get("reference"):
        task["for"] = {"reference": subject}
    if encounter := (request.get("encounter") or {}).get("reference"):
        task["encounter"] = {"reference": encounter}
    if routed.resulted_at is not None:
        task["executionPeriod"]["end"] = format_instant(routed.resulted_at)
    if routed.endpoint:
        task["input"] = [
            {"type": {"text": "endpoint"}, "valueReference": {"reference": routed.endpoint}}
        ]
    if routed.report_id:
        task["output"] = [
            {
                "type": {"text": "report"},
                "valueReference": {"reference": f"DiagnosticReport/{routed.report_id}"},
            }
        ]
    if routed.last_error and status == "failed":
        task["statusReason"] = {"text": routed.last_error[:1000]}
    return task


def write_task(writer: Writer, routed: Routed) -> None:
    """Write the routing Task as ``routed`` says (created the first time)."""
    stored = writer.content_of("ServiceRequest", routed.request_id)
    request = orjson.loads(stored) if stored else {}
    task = task_resource(routed, request)
    token = OWN_WRITES.set(True)
    try:
        if writer.written("Task", routed.task_id):
            writer.rewrite(task, routed.task_id)  # one unit, one version
        elif repo.read_current(writer.conn, "Task", routed.task_id) is None:
            writer.create(task, routed.task_id)
        else:
            writer.update(task, routed.task_id)
    finally:
        OWN_WRITES.reset(token)


def move(
    writer: Writer,
    routed: Routed,
    event: str,
    *,
    error: str | None = None,
    report_id: str | None = None,
    at: int | None = None,
    task: bool = True,
) -> Routed:
    """Apply ``event`` to the routed order: its row and its Task; the order as it is now.

    ``task`` False: the row only, when the Task is the very resource being written (by a
    centre that speaks FHIR)."""
    new = advance(routed.status, event)
    now = at or now_micros()
    values: dict[str, Any] = {}
    if report_id and report_id != routed.report_id:
        values["report_id"] = report_id
    if new is not None and new != routed.status:
        values["status"] = new
        stamp = _STAMP.get(new)
        if stamp and not (new == "resulted" and routed.resulted_at):
            values[stamp] = now  # turnaround counts from the first result
    if new == "failed":
        values["last_error"] = error
    elif new is not None and new != "failed":
        values["last_error"] = None
    elif error:
        values["last_error"] = error  # noted, status unchanged (a late cancel refused ...)
    if not values:
        return routed
    values["updated_at"] = now
    writer.conn.execute(
        update(routed_orders).where(routed_orders.c.id == routed.id).values(**values)
    )
    changed = load(writer.conn, row_id=routed.id)
    assert changed is not None
    if task and ("status" in values or "report_id" in values):
        write_task(writer, changed)
    return changed
