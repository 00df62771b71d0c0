"""Members' destinations as FHIR Endpoints, and how the hub talks to each.

Each member that takes orders or results from the hub has ``Endpoint/<member>``, referenced
from its ``Organization.endpoint``: connectionType ``hl7v2-mllp`` with ``address``
``mllp://host:port`` and the HL7 v2 messages it takes as ``payloadType`` (table 0354 message
structures: OML_O21, ORM_O01, ORU_R01), or ``hl7-fhir-rest`` for a member that speaks FHIR (it
finds its orders as Tasks and hears of its results by Subscription).  community.json's
``endpoint`` block seeds them; the office changes them through the FHIR API, and the hub reads
them again for every order and every delivery attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection

from adapters.feeds.config import Member
from hub.queue.destinations import (
    CONNECTION_TYPES,
    FHIR_REST,
    MLLP,
    EndpointInfo,
    read_endpoint,
)
from hub.store import repository as repo

MESSAGE_STRUCTURES = "http://terminology.hl7.org/CodeSystem/v2-0354"
PAYLOAD_TYPES = "http://terminology.hl7.org/CodeSystem/endpoint-payload-type"
ER7 = "x-application/hl7-v2+er7"
FHIR_JSON = "application/fhir+json"
ORDER_STRUCTURES = ("OML_O21", "ORM_O01")
RESULT_STRUCTURE = "ORU_R01"
# An MLLP endpoint that lists no order message takes the older, more widely spoken one.
DEFAULT_ORDER_STRUCTURE = "ORM_O01"


def structure(message: str) -> str:
    """ "OML^O21" → "OML_O21" (the table 0354 code the Endpoint lists)."""
    return message.replace("^", "_").upper()


def endpoint_resource(member: Member) -> dict[str, Any] | None:
    """The Endpoint community.json describes for ``member`` (None when it has none)."""
    seed = member.endpoint
    if seed is None:
        return None
    endpoint: dict[str, Any] = {
        "resourceType": "Endpoint",
        "id": member.org_id,
        "status": "active",
        "connectionType": {"system": CONNECTION_TYPES, "code": seed.connection},
        "name": seed.name or member.name,
        "managingOrganization": {"reference": member.reference, "display": member.name},
        "address": seed.address,
    }
    if seed.connection == MLLP:
        endpoint["payloadType"] = [
            {
                "coding": [
                    {"system": MESSAGE_STRUCTURES, "code": structure(m), "display": m}
                    for m in seed.messages
                ]
                or [{"system": PAYLOAD_TYPES, "code": "any"}],
                "text": ", ".join(seed.messages) or "HL7 v2",
            }
        ]
        endpoint["payloadMimeType"] = [ER7]
    else:
        endpoint["payloadType"] = [{"coding": [{"system": PAYLOAD_TYPES, "code": "any"}]}]
        endpoint["payloadMimeType"] = [FHIR_JSON]
    return endpoint


@dataclass(frozen=True)
class Channel:
    """How the hub reaches a member now: ``hl7v2`` (to ``endpoint``, as ``structure``) or
    ``fhir`` (a Task it reads, a Subscription it set up; ``endpoint`` its FHIR Endpoint)."""

    kind: str  # hl7v2 | fhir
    endpoint: EndpointInfo | None = None
    structure: str | None = None  # OML_O21, ORM_O01, ORU_R01

    @property
    def destination(self) -> str | None:
        return f"Endpoint/{self.endpoint.id}" if self.endpoint is not None else None

    @property
    def message(self) -> str | None:
        return self.structure.replace("_", "^") if self.structure else None


def member_endpoints(conn: Connection, org_id: str) -> list[EndpointInfo]:
    """The Endpoints the member's Organization lists, as they are now."""
    stored = repo.read_current(conn, "Organization", org_id)
    if stored is None or stored.deleted or not stored.content:
        return []
    found = []
    for ref in orjson.loads(stored.content).get("endpoint") or []:
        target = str(ref.get("reference") or "")
        if target.startswith("Endpoint/"):
            info = read_endpoint(conn, target.split("/", 1)[1])
            if info is not None and info.status != "entered-in-error":
                found.append(info)
    return found


def order_channel(endpoints: list[EndpointInfo]) -> Channel:
    """How a centre takes orders: its first MLLP Endpoint, as OML^O21 or ORM^O01 (in the
    order the Endpoint lists them); else FHIR (a Task offered to it)."""
    for info in endpoints:
        if info.connection == MLLP:
            taken = [s for s in info.payload_types if s in ORDER_STRUCTURES]
            if taken or not any(s == RESULT_STRUCTURE for s in info.payload_types):
                return Channel("hl7v2", info, taken[0] if taken else DEFAULT_ORDER_STRUCTURE)
    return Channel("fhir", _fhir(endpoints))


def result_channel(endpoints: list[EndpointInfo]) -> Channel:
    """How an orderer takes results: ORU^R01 to its first MLLP Endpoint that takes them (or
    lists no message at all); else FHIR."""
    for info in endpoints:
        if info.connection == MLLP and (
            RESULT_STRUCTURE in info.payload_types
            or not any(s in ORDER_STRUCTURES for s in info.payload_types)
        ):
            return Channel("hl7v2", info, RESULT_STRUCTURE)
    return Channel("fhir", _fhir(endpoints))


def _fhir(endpoints: list[EndpointInfo]) -> EndpointInfo | None:
    return next((e for e in endpoints if e.connection == FHIR_REST), None)
