"""A routed order's result: the order turns ``resulted`` and the result goes back to the
member that ordered it.

The centre's ORU^R01 is mapped like every result (adapters/hl7v2): a DiagnosticReport
``basedOn`` the order, found by the placer number the hub sent in ORC-2/OBR-2 with the
ordering member as its namespace.  A report that is a result (partial, preliminary, final,
amended, corrected, appended) of a routed order then:

- moves the order to ``resulted`` (the Task completed, its output the report);
- goes to the ordering member: as ORU^R01 through the outbox to its ``hl7v2-mllp`` Endpoint
  (``delivered`` once it answers AA), or, for a member that speaks FHIR, through the Task and
  the report themselves, which its Subscriptions announce.

A report written again with nothing the orderer would see changed (the centre resent its ORU)
is not sent twice: the ORU is compared with the last one queued for that order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select

from adapters.feeds.config import Community
from adapters.hl7v2.datatypes import search_escape
from hub.queue.outbox import enqueue
from hub.search.engine import find_matches
from hub.services.routing.endpoints import member_endpoints, result_channel
from hub.services.routing.outbound import Addressing, result_message
from hub.services.routing.status import RESULT_TOPIC, Routed, move
from hub.store.repository import Writer
from hub.store.schema import outbox

RESULT_STATUSES = frozenset({"partial", "preliminary", "final", "amended", "corrected", "appended"})


def based_on(report: dict[str, Any]) -> list[str]:
    """The ids of the ServiceRequests a report is based on."""
    return [
        ref.split("/", 1)[1]
        for based in report.get("basedOn") or []
        if (ref := str(based.get("reference") or "")).startswith("ServiceRequest/")
    ]


def reattach(
    writer: Writer,
    report: dict[str, Any],
    community: Community,
    centres: frozenset[str],
    routed_of: Callable[[str], Routed | None],
) -> dict[str, Any]:
    """A centre's report based on a placeholder order, though it answers a routed one.

    A LIS that echoes ORC-2/OBR-2 without its namespace (``QS-1`` for ``QS-1^QSWSY``) makes
    the mapping read the number as the centre's own and create a placeholder order under the
    centre's placer system.  When exactly one order routed to that centre carries the number,
    the report is based on it instead (the placeholder stays, an order with no requester that
    nothing routes).  Only reports performed by a centre are looked at."""
    performer = next(
        (
            member
            for p in report.get("performer") or []
            if str(p.get("reference") or "").startswith("Organization/")
            and (member := community.member(str(p["reference"]).split("/", 1)[1])) is not None
        ),
        None,
    )
    if performer is None or performer.kind not in centres:
        return report
    ids = based_on(report)
    if any(routed_of(i) is not None for i in ids):
        return report
    own_placer = performer.system("placer")
    moved: dict[str, str] = {}
    for request_id in ids:
        placeholder = _read(writer, "ServiceRequest", {"reference": f"ServiceRequest/{request_id}"})
        numbers = [
            str(i["value"])
            for i in (placeholder or {}).get("identifier") or []
            if i.get("system") == own_placer and i.get("value")
        ]
        for number in numbers:
            found = find_matches(
                writer.conn, "ServiceRequest", [("identifier", search_escape(number))], limit=20
            )
            candidates = [
                routed
                for _, res_id in found
                if res_id != request_id
                and (routed := routed_of(res_id)) is not None
                and routed.destination == performer.code
            ]
            if len(candidates) == 1:
                moved[request_id] = candidates[0].request_id
                break
    if not moved:
        return report
    based = []
    for entry in report.get("basedOn") or []:
        ref = str(entry.get("reference") or "")
        target = moved.get(ref.split("/", 1)[1]) if ref.startswith("ServiceRequest/") else None
        based.append({"reference": f"ServiceRequest/{target}"} if target else entry)
    return {**report, "basedOn": based}


def _read(writer: Writer, res_type: str, reference: Any) -> dict[str, Any] | None:
    ref = str((reference or {}).get("reference") or "") if isinstance(reference, dict) else ""
    if not ref.startswith(f"{res_type}/"):
        return None
    content = writer.content_of(res_type, ref.split("/", 1)[1])
    return orjson.loads(content) if content else None


def _body(payload: bytes) -> bytes:
    """A message without its MSH (whose time and control id differ on every build)."""
    return payload.split(b"\r", 1)[1] if b"\r" in payload else payload


def _queued_before(writer: Writer, routed: Routed, payload: bytes) -> bool:
    last = writer.conn.execute(
        select(outbox.c.payload)
        .where(outbox.c.topic == RESULT_TOPIC, outbox.c.topic_id == routed.id)
        .order_by(outbox.c.id.desc())
        .limit(1)
    ).scalar()
    return last is not None and _body(bytes(last)) == _body(payload)


def report_written(
    writer: Writer,
    report_id: str,
    report: dict[str, Any],
    community: Community,
    routed_of: Callable[[str], Routed | None],
) -> None:
    if report.get("status") not in RESULT_STATUSES:
        return
    for request_id in based_on(report):
        routed = routed_of(request_id)
        if routed is None:
            continue
        orderer = community.member(routed.orderer)
        channel = result_channel(member_endpoints(writer.conn, orderer.org_id)) if orderer else None
        if orderer is None or channel is None or channel.kind != "hl7v2":
            # A member speaking FHIR (or with no Endpoint) reads the report the Task points at.
            move(writer, routed, "resulted", report_id=report_id)
            continue
        request = _read(writer, "ServiceRequest", {"reference": f"ServiceRequest/{request_id}"})
        observations = [
            found
            for ref in report.get("result") or []
            if (found := _read(writer, "Observation", ref)) is not None
        ]
        payload = result_message(
            report,
            observations,
            request=request,
            patient=_read(writer, "Patient", (request or report).get("subject")),
            encounter=_read(writer, "Encounter", (request or {}).get("encounter")),
            orderer=orderer,
            address=Addressing(orderer, uuid.uuid4().hex[:20], datetime.now(community.tz)),
            community=community,
        )
        if _queued_before(writer, routed, payload):
            continue  # the same result again: the orderer has it, or it is on its way
        routed = move(writer, routed, "resulted", report_id=report_id)
        assert channel.destination is not None
        enqueue(writer.conn, channel.destination, payload, topic=RESULT_TOPIC, topic_id=routed.id)
