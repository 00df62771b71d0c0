"""The order router: a write observer that sends orders to the regional centres.

It watches every ServiceRequest, DiagnosticReport and Task written by any path (REST, a
transaction Bundle, a township HIS's ORM/OML applied by the feed worker) inside the writing
transaction, so what it does commits or rolls back with the write that caused it:

- an order (intent order, status active, not a referral) that the rules route (``rules``)
  gets a ``routed_orders`` row and a routing Task, its performer set to the centre when it
  named none, and, for a centre whose Endpoint is ``hl7v2-mllp``, an OML^O21 or ORM^O01 in
  the durable outbox addressed to ``Endpoint/<id>``; a centre speaking FHIR finds the Task
  (owner: the centre) by search or Subscription;
- a routed order turning ``revoked`` or ``entered-in-error`` (a FHIR update, ORC CA/DC) is
  cancelled: ORC CA to the same Endpoint (so it follows the order), or the Task cancelled;
- a routed order still awaiting its result whose content for the centre changed (the test,
  priority, timing, specimens, notes, reasons: a FHIR update, ORC XO) is changed there too:
  ORC XO to the same Endpoint, and the Task rewritten (a FHIR centre hears of it by its
  Subscription);
- a DiagnosticReport based on a routed order is its result (``results``);
- a centre that speaks FHIR moves its Task itself: ``accepted``/``in-progress`` is accepted,
  ``rejected``/``failed`` a failure with its ``statusReason``.  The router keeps the Task's
  businessStatus to the routing status, whatever the centre wrote there.

An order already routed is never routed again (a resend that changes nothing sends nothing),
and the rules decide once: an order's destination does not move when the rules do.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection, insert

from adapters.feeds.config import Community, Member
from hub.queue.outbox import enqueue
from hub.search.values import DateFormatError, date_range, from_micros
from hub.services import context
from hub.services.recognition.catalogue import Catalogue, load_catalogue
from hub.services.recognition.recognize import resolve_item
from hub.services.routing import hooks as _hooks  # noqa: F401  (delivery hooks registered)
from hub.services.routing import results
from hub.services.routing.endpoints import member_endpoints, order_channel, structure
from hub.services.routing.fields import placer_member
from hub.services.routing.outbound import Addressing, order_message
from hub.services.routing.rules import Decision, OrderFacts, RoutingRules, decide, load_rules
from hub.services.routing.status import (
    CANCEL_TOPIC,
    CHANGE_TOPIC,
    ORDER_TOPIC,
    OWN_WRITES,
    ROUTED_ORDER,
    ROUTING_STATUS,
    STATUSES,
    Routed,
    load,
    move,
    task_id_for,
    write_task,
)
from hub.store.repository import Writer, now_micros, read_current
from hub.store.schema import routed_orders

SNOMED = "http://snomed.info/sct"
REFERRAL = (SNOMED, "3457005")  # two-way referral: hub.services.referral's, not routed here
_ORDER_INTENTS = frozenset({"order", "original-order", "instance-order"})
_CANCELLED = frozenset({"revoked", "entered-in-error"})
# What of an order the centre acts on: a change to any of these is sent on (ORC XO).
_CENTRE_FIELDS = (
    "code", "priority", "occurrenceDateTime", "occurrencePeriod", "occurrenceTiming",
    "orderDetail", "quantityQuantity", "bodySite", "specimen", "note", "reasonCode",
    "reasonReference", "patientInstruction", "subject",
)  # fmt: skip
# ServiceRequest.category (SNOMED, the R4 example value set) → the catalogue's kinds.
_CATEGORY_KINDS = {
    (SNOMED, "108252007"): "lab",  # Laboratory procedure
    (SNOMED, "363679005"): "imaging",  # Imaging
    (SNOMED, "29303009"): "ecg",  # Electrocardiographic procedure
}
_CENTRE_ACCEPTS = frozenset({"accepted", "in-progress"})
_CENTRE_REFUSES = frozenset({"rejected", "failed"})


def _codes(concept: Any) -> list[dict[str, Any]]:
    return list((concept or {}).get("coding") or []) if isinstance(concept, dict) else []


def is_order(request: dict[str, Any]) -> bool:
    """A placer's order the router considers (not a proposal, a plan or a referral)."""
    if request.get("intent") not in _ORDER_INTENTS:
        return False
    return not any(
        (c.get("system"), c.get("code")) == REFERRAL
        for concept in request.get("category") or []
        for c in _codes(concept)
    )


def _member_of(reference: Any, community: Community) -> Member | None:
    ref = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
    if ref.startswith("Organization/"):
        return community.member(ref.split("/", 1)[1])
    return None


def orderer_of(request: dict[str, Any], community: Community) -> Member | None:
    """The ordering member: the requester Organization, else whose placer number it carries.

    An order the hub only knows from a result (created by an ORU, with no requester) has
    neither as far as routing is concerned: it is a placeholder, not an order to send."""
    if request.get("requester") is None:
        return None
    member = _member_of(request.get("requester"), community)
    if member is not None:
        return member
    code = placer_member(request, community)
    return community.member(code) if code else None


def order_facts(
    request: dict[str, Any], community: Community, catalogue: Catalogue
) -> OrderFacts | None:
    """What the rules look at (pure); None when the order has no ordering member."""
    orderer = orderer_of(request, community)
    if orderer is None:
        return None
    named = next(
        (m for p in request.get("performer") or [] if (m := _member_of(p, community))), None
    )
    codings = _codes(request.get("code"))
    item = next((found for c in codings if (found := resolve_item(c, catalogue, community))), None)
    kind = item.kind if item is not None else None
    if kind is None:
        kind = next(
            (
                _CATEGORY_KINDS[key]
                for concept in request.get("category") or []
                for c in _codes(concept)
                if (key := (c.get("system"), c.get("code"))) in _CATEGORY_KINDS
            ),
            None,
        )
    return OrderFacts(
        orderer=orderer.code,
        orderer_kind=orderer.kind,
        named=named.code if named else None,
        named_kind=named.kind if named else None,
        kind=kind,
        item=item.code if item else None,
        codes=frozenset((str(c.get("system")), str(c.get("code"))) for c in codings),
    )


def _ordered_at(request: dict[str, Any], community: Community) -> int:
    authored = request.get("authoredOn")
    if isinstance(authored, str):
        with suppress(DateFormatError):
            return date_range(authored, community.tz)[0]
    return now_micros()


def _month(micros: int, community: Community) -> str:
    return from_micros(micros).astimezone(community.tz).strftime("%Y-%m")


def _read(writer: Writer, reference: Any, res_type: str) -> dict[str, Any] | None:
    ref = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
    if not ref.startswith(f"{res_type}/"):
        return None
    content = writer.content_of(res_type, ref.split("/", 1)[1])
    return orjson.loads(content) if content else None


def _with_placer_number(
    request: dict[str, Any], res_id: str, orderer: str, community: Community
) -> dict[str, Any]:
    """The order with a placer number in its orderer's namespace, given one if it has none.

    A centre finds the order again by the placer number it was sent (ORC-2, echoed in its
    ORU); an order created through FHIR may carry none, or only numbers of systems no HL7
    message can name.  The hub then numbers it from its id, in the orderer's placer system."""
    if placer_member(request, community) is not None:
        return request
    member = community.member(orderer)
    if member is None:
        return request
    number = res_id if len(res_id) <= 20 else res_id.replace("-", "")[:20]
    identifier = {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "PLAC"}]},
        "system": member.system("placer"),
        "value": number,
    }  # fmt: skip
    return {**request, "identifier": [*(request.get("identifier") or []), identifier]}


def control_id() -> str:
    return uuid.uuid4().hex[:20]


@dataclass
class _Order:
    res_id: str
    request: dict[str, Any]
    facts: OrderFacts | None
    decision: Decision | None
    changed: bool = False  # routed before, and what the centre acts on differs now


@dataclass
class OrderRouter:
    """Routes orders as they are written; see the module's docstring."""

    conn: Connection
    community: Community = field(default_factory=context.community)
    catalogue: Catalogue = field(default_factory=load_catalogue)
    rules: RoutingRules | None = None
    types: frozenset[str] = frozenset({"ServiceRequest", "DiagnosticReport", "Task"})
    _orders: list[_Order] = field(default_factory=list)
    _reports: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Orders this unit routed (their routed_orders rows are new in it).
    _routed_here: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.rules is None:
            self.rules = load_rules(self.community)

    # -- the writes, as they happen --

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict:
        if OWN_WRITES.get():
            return resource
        kind = resource["resourceType"]
        if kind == "ServiceRequest" and is_order(resource):
            return self._order_written(writer, res_id, resource)
        if kind == "DiagnosticReport" and results.based_on(resource):
            assert self.rules is not None
            resource = results.reattach(
                writer, resource, self.community, self.rules.centres, partial(self._routed, writer)
            )
            self._reports.append((res_id, resource))
        elif kind == "Task" and _is_routing_task(resource):
            return self._centre_moved(writer, res_id, resource)
        return resource

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        if res_type == "ServiceRequest":
            routed = load(writer.conn, request_id=res_id)
            if routed is not None:
                self._cancel(writer, routed)

    def before_flush(self, writer: Writer) -> None:
        orders, self._orders = self._orders, []
        reports, self._reports = self._reports, []
        for order in orders:
            self._settle(writer, order)
        for res_id, report in reports:
            results.report_written(
                writer, res_id, report, self.community, partial(self._routed, writer)
            )

    def _routed(self, writer: Writer, request_id: str) -> Routed | None:
        """An order's routed_orders row (locked), by the ServiceRequest's id.  An order this
        unit created and has not routed has none, and the store is not asked: most results
        arrive with a new order of their own (the lab centre's report of a ward's order)."""
        if writer.fresh("ServiceRequest", request_id) and request_id not in self._routed_here:
            return None
        return load(writer.conn, request_id=request_id)

    # -- orders --

    def _order_written(
        self, writer: Writer, res_id: str, request: dict[str, Any]
    ) -> dict[str, Any]:
        assert self.rules is not None
        facts = decision = None
        changed = False
        if request.get("status") == "active":
            facts = order_facts(request, self.community, self.catalogue)
            routed = self._routed(writer, res_id) if facts is not None else None
            if routed is not None:
                destination = routed.destination
                before = _stored(self.conn, res_id)
                changed = before is not None and _for_centre(before) != _for_centre(request)
            elif facts is not None and (decision := decide(self.rules, facts)) is not None:
                destination = decision.destination
                request = _with_placer_number(request, res_id, facts.orderer, self.community)
            else:
                destination = None
            centre = self.community.member(destination) if destination else None
            if centre is not None and not request.get("performer"):
                # Where it went, for everyone reading the order through FHIR.
                performer = [{"reference": centre.reference, "display": centre.name}]
                request = {**request, "performer": performer}
        self._orders.append(_Order(res_id, request, facts, decision, changed))
        return request

    def _settle(self, writer: Writer, order: _Order) -> None:
        status = order.request.get("status")
        routed = self._routed(writer, order.res_id)
        if status == "active" and routed is None and order.decision is not None:
            assert order.facts is not None
            self._route(writer, order)
        elif status in _CANCELLED and routed is not None:
            self._cancel(writer, routed)
        elif status == "active" and routed is not None and order.changed:
            self._change(writer, routed, order.request)

    def _route(self, writer: Writer, order: _Order) -> None:
        assert order.decision is not None and order.facts is not None
        community = self.community
        centre = community.member(order.decision.destination)
        if centre is None:
            return
        channel = order_channel(member_endpoints(writer.conn, centre.org_id))
        now = now_micros()
        ordered_at = _ordered_at(order.request, community)
        row_id = writer.conn.execute(
            insert(routed_orders).returning(routed_orders.c.id),
            {
                "request_id": order.res_id,
                "task_id": task_id_for(order.res_id),
                "orderer": order.facts.orderer,
                "destination": centre.code,
                "endpoint": channel.destination,
                "channel": channel.kind,
                "message": channel.message,
                "kind": order.facts.kind,
                "item": order.facts.item,
                "month": _month(ordered_at, community),
                "ordered_at": ordered_at,
                "routed_at": now,
                "status": "sent",
                "updated_at": now,
            },
        ).scalar_one()
        self._routed_here.add(order.res_id)
        routed = load(writer.conn, row_id=int(row_id))
        assert routed is not None
        write_task(writer, routed)
        if channel.kind != "hl7v2":
            return  # offered as the Task: the centre reads it through FHIR
        assert channel.structure is not None and channel.destination is not None
        try:
            payload = self._order_message(writer, order.request, channel.structure, "NW", centre)
        except (ValueError, KeyError, TypeError) as exc:
            # The order is stored; only its message could not be made.  The office sees why.
            error = f"the order could not be built as {channel.message}: {exc}"
            move(writer, routed, "order-failed", error=error)
            return
        enqueue(writer.conn, channel.destination, payload, topic=ORDER_TOPIC, topic_id=routed.id)

    def _order_message(
        self, writer: Writer, request: dict[str, Any], kind: str, control: str, centre: Member
    ) -> bytes:
        community = self.community
        specimens = [
            found
            for ref in request.get("specimen") or []
            if (found := _read(writer, ref, "Specimen")) is not None
        ]
        facts_orderer = orderer_of(request, community)
        return order_message(
            kind,
            control,
            request,
            patient=_read(writer, request.get("subject"), "Patient"),
            encounter=_read(writer, request.get("encounter"), "Encounter"),
            specimens=specimens,
            orderer=facts_orderer,
            address=Addressing(centre, control_id(), datetime.now(community.tz)),
            community=community,
        )

    def _cancel(self, writer: Writer, routed: Routed) -> None:
        """The orderer withdrew the order: tell the centre, unless it never got it or has
        answered already (a result stands; the cancel of a result is the centre's)."""
        if routed.status not in ("sent", "accepted", "failed"):
            return
        centre = self.community.member(routed.destination)
        if (
            routed.channel == "hl7v2"
            and routed.status != "failed"
            and routed.endpoint
            and routed.message
            and centre is not None
        ):
            content = writer.content_of("ServiceRequest", routed.request_id)
            request = orjson.loads(content) if content else None
            if request is not None:
                payload = self._order_message(
                    writer, request, structure(routed.message), "CA", centre
                )
                enqueue(writer.conn, routed.endpoint, payload, topic=CANCEL_TOPIC,
                        topic_id=routed.id)  # fmt: skip
        move(writer, routed, "cancelled")

    def _change(self, writer: Writer, routed: Routed, request: dict[str, Any]) -> None:
        """The orderer changed an order the centre has not answered: tell it (ORC XO after
        the order on the same queue), and rewrite the Task from the order as it is now.  An
        order that never arrived (failed) goes as it is now when replayed by the office."""
        if routed.status not in ("sent", "accepted"):
            return
        centre = self.community.member(routed.destination)
        if routed.channel == "hl7v2" and routed.endpoint and routed.message and centre:
            payload = self._order_message(writer, request, structure(routed.message), "XO", centre)
            enqueue(writer.conn, routed.endpoint, payload, topic=CHANGE_TOPIC, topic_id=routed.id)
        write_task(writer, routed)

    # -- a centre speaking FHIR moves its Task --

    def _centre_moved(self, writer: Writer, res_id: str, task: dict[str, Any]) -> dict[str, Any]:
        focus = str((task.get("focus") or {}).get("reference") or "")
        routed = (
            load(writer.conn, request_id=focus.split("/", 1)[1])
            if focus.startswith("ServiceRequest/")
            else None
        )
        if routed is None or routed.task_id != res_id:
            return task
        status = task.get("status")
        if status in _CENTRE_ACCEPTS:
            routed = move(writer, routed, "centre-accepted", task=False)
        elif status in _CENTRE_REFUSES:
            reason = (task.get("statusReason") or {}).get(
                "text"
            ) or f"the centre's Task is {status}"
            routed = move(writer, routed, "centre-rejected", error=f"centre: {reason}", task=False)
        coding = {"system": ROUTING_STATUS, "code": routed.status,
                  "display": STATUSES[routed.status]}  # fmt: skip
        return {**task, "businessStatus": {"coding": [coding], "text": STATUSES[routed.status]}}


def _stored(conn: Connection, res_id: str) -> dict[str, Any] | None:
    """The order as stored before this write."""
    found = read_current(conn, "ServiceRequest", res_id)
    return orjson.loads(found.content) if found is not None and found.content else None


def _for_centre(request: dict[str, Any]) -> bytes:
    return orjson.dumps({k: request.get(k) for k in _CENTRE_FIELDS}, option=orjson.OPT_SORT_KEYS)


def _is_routing_task(task: dict[str, Any]) -> bool:
    return any(
        (c.get("system"), c.get("code")) == (ROUTED_ORDER["system"], ROUTED_ORDER["code"])
        for c in _codes(task.get("code"))
    )
