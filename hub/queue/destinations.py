"""Where an outbox destination points, read again at every delivery attempt.

A destination is either a plain ``mllp://host:port`` (``mllps://`` for TLS), used as it is, or
``Endpoint/<id>``: a FHIR Endpoint in the store, whose ``address`` is read when the message is
about to be sent.  Naming the Endpoint rather than copying its address into the queue is what
lets the office move a member's LIS to a new host through the FHIR API while messages for it
wait, with no restart: the next attempt goes to the new address.

The Endpoint's ``status`` is honoured: ``active`` (and ``test``) deliver; ``suspended``, ``off``
and ``error`` hold the queue without spending attempts (the office has said "not now");
anything else, a deleted Endpoint, or one that is not ``hl7v2-mllp``, is a failed attempt with
that reason, so it ends as a dead letter the office can see and replay once it is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection

from adapters.mllp.sync_client import parse_destination
from hub.store import repository as repo

CONNECTION_TYPES = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
MLLP = "hl7v2-mllp"
FHIR_REST = "hl7-fhir-rest"
_DELIVER = frozenset({"active", "test"})
_HOLD = frozenset({"suspended", "off", "error"})


@dataclass(frozen=True)
class EndpointInfo:
    """What the hub needs of an Endpoint resource."""

    id: str
    status: str
    connection: str  # endpoint-connection-type code: hl7v2-mllp, hl7-fhir-rest, ...
    address: str
    payload_types: tuple[str, ...]  # the codes of payloadType (v2-0354 structures: OML_O21)
    mime_types: tuple[str, ...]


def endpoint_info(resource: dict[str, Any]) -> EndpointInfo:
    """An Endpoint resource's routing facts (pure)."""
    connection = resource.get("connectionType") or {}
    return EndpointInfo(
        id=str(resource.get("id") or ""),
        status=str(resource.get("status") or ""),
        connection=str(connection.get("code") or ""),
        address=str(resource.get("address") or ""),
        payload_types=tuple(
            str(c["code"])
            for concept in resource.get("payloadType") or []
            for c in concept.get("coding") or []
            if c.get("code")
        ),
        mime_types=tuple(str(m) for m in resource.get("payloadMimeType") or []),
    )


def read_endpoint(conn: Connection, endpoint_id: str) -> EndpointInfo | None:
    """The current version of Endpoint/<id>, or None when it is absent or deleted."""
    stored = repo.read_current(conn, "Endpoint", endpoint_id)
    if stored is None or stored.deleted or not stored.content:
        return None
    return endpoint_info(orjson.loads(stored.content))


@dataclass(frozen=True)
class Resolution:
    """Exactly one of: ``url`` to send to, ``hold`` (wait, no attempt spent), ``error``."""

    url: str | None = None
    hold: str | None = None
    error: str | None = None


def resolve(conn: Connection, destination: str) -> Resolution:
    if destination.startswith("Endpoint/"):
        endpoint_id = destination.split("/", 1)[1]
        info = read_endpoint(conn, endpoint_id)
        if info is None:
            return Resolution(error=f"{destination} does not exist")
        if info.status in _HOLD:
            return Resolution(hold=f"{destination} is {info.status}")
        if info.status not in _DELIVER:
            return Resolution(error=f"{destination} has status {info.status!r}")
        if info.connection != MLLP:
            return Resolution(error=f"{destination} is {info.connection!r}, not {MLLP}")
        return _checked(info.address, destination)
    return _checked(destination, destination)


def _checked(url: str, destination: str) -> Resolution:
    try:
        parse_destination(url)
    except ValueError:
        return Resolution(error=f"{destination}: {url!r} is not an mllp://host:port address")
    return Resolution(url=url)
