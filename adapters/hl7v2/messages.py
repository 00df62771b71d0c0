"""Message mappers: a parsed HL7 v2 message → a FHIR R4 transaction Bundle.

Routed by MSH-9 (never by file or feed name) through ``MAPPERS``.  Each mapper is a pure
function of the message and the community; the transport turns a ``MappingError`` into an
AE/AR ACK and keeps the message for replay.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from adapters.feeds.config import Community, Member
from adapters.hl7v2.datatypes import xpn
from adapters.hl7v2.errors import (
    REQUIRED_FIELD_MISSING,
    UNKNOWN_KEY_IDENTIFIER,
    UNSUPPORTED_EVENT_CODE,
    UNSUPPORTED_MESSAGE_TYPE,
)
from adapters.hl7v2.mapped import Context, Mapped, MappingError
from adapters.hl7v2.parse import Message
from adapters.hl7v2.segments.clinical import map_diagnoses, map_procedures
from adapters.hl7v2.segments.encounter import EVENT_STATUS, map_encounter
from adapters.hl7v2.segments.groups import order_groups
from adapters.hl7v2.segments.orders import map_service_request, map_specimens, order_ids
from adapters.hl7v2.segments.patient import (
    PatientRef,
    identifiers,
    map_patient,
    patient_key,
)
from adapters.hl7v2.segments.provenance import map_provenance
from adapters.hl7v2.segments.results import map_order_answers, map_report

ADT_EVENTS = frozenset(EVENT_STATUS) | {"A24", "A28", "A31", "A37", "A40"}
_PATIENT_ONLY = frozenset({"A28", "A31"})
_UPDATES = frozenset({"A08", "A31", "A40"})


def _adt(ctx: Context, event: str) -> PatientRef:
    if event == "A40":
        return _merge(ctx)
    if event in ("A24", "A37"):
        return _link_records(ctx, event)
    patient = map_patient(ctx, ctx.message.first("PID"), update=True)
    if event not in _PATIENT_ONLY:
        encounter = map_encounter(ctx, ctx.message.first("PV1"), patient, event=event, adt=True)
        map_diagnoses(ctx, patient, encounter)
        map_procedures(ctx, patient, encounter)
    map_provenance(ctx, update=event in _UPDATES)
    return patient


def _merge(ctx: Context) -> PatientRef:
    """A40: each PID/MRG pair retires the MRG-1 record in favour of the PID record.

    The retired record is written with a conditional PUT too: it keeps its identifiers, turns
    inactive and points at the survivor (its demographics were the survivor's to keep).
    """
    survivors: list[PatientRef] = []
    for seg in ctx.message.segments:
        if seg.name == "PID":
            survivors.append(map_patient(ctx, seg, update=True))
        elif seg.name == "MRG" and survivors:
            survivor = survivors[-1]
            prior_ids = identifiers(ctx, seg, 1, ssn=None)
            if not prior_ids:
                raise ctx.error(seg, 1, "prior patient identifier is empty", REQUIRED_FIELD_MISSING)
            system, value, org = patient_key(ctx, seg, prior_ids)
            if (system, value) == (survivor.system, survivor.value):
                continue  # a merge into itself changes nothing
            prior: dict[str, Any] = {
                "resourceType": "Patient",
                "identifier": prior_ids,
                "active": False,
                "link": [{"other": {"reference": survivor.full_url}, "type": "replaced-by"}],
                "managingOrganization": {"reference": org},
            }
            if name := xpn(seg, 7):
                prior["name"] = [name]
            prior_url = ctx.put(prior, system, value)
            survivor_resource = _resource(ctx, survivor.full_url)
            survivor_resource["active"] = True
            survivor_resource.setdefault("link", []).append(
                {"other": {"reference": prior_url}, "type": "replaces"}
            )
    if not survivors:
        raise ctx.error(ctx.message.msh, None, "the merge has no PID segment", "100")
    map_provenance(ctx, update=True)
    return survivors[0]


def _link_records(ctx: Context, event: str) -> PatientRef:
    """A24 links, A37 unlinks the two patients of its PID segments (the same person, or not).

    The records are created if unknown but not updated (a link message is no demographics
    update); the link itself is the patient index's $link / $unlink, as a transaction entry.
    """
    pids = ctx.message.all("PID")
    if len(pids) < 2:
        raise ctx.error(ctx.message.msh, None, f"ADT^{event} needs two PID segments", "100")
    first = map_patient(ctx, pids[0], update=False)
    second = map_patient(ctx, pids[1], update=False)
    if first.key == second.key:
        raise ctx.error(pids[1], 3, "both PID segments name the same record", "103")
    operation = "$link" if event == "A24" else "$unlink"
    ctx.add(
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueReference": {"reference": first.full_url}},
                {"name": "other", "valueReference": {"reference": second.full_url}},
            ],
        },
        {"method": "POST", "url": f"Patient/{operation}"},
    )
    map_provenance(ctx, update=False)
    return first


def _resource(ctx: Context, full_url: str) -> dict[str, Any]:
    return next(e["resource"] for e in ctx.entries if e["fullUrl"] == full_url)


def _link(resource: dict[str, Any], element: str, full_urls: list[str]) -> None:
    """Add references to a list element, once each: several OBR of one order (same placer
    number) share one ServiceRequest."""
    refs = resource.setdefault(element, [])
    refs.extend({"reference": u} for u in full_urls if {"reference": u} not in refs)
    if not refs:
        del resource[element]


def _orders(ctx: Context, event: str) -> PatientRef:
    """ORM^O01 / OML^O21: the orders are written; the patient and visit only created."""
    patient = map_patient(ctx, ctx.message.first("PID"), update=False)
    encounter = map_encounter(ctx, ctx.message.first("PV1"), patient, event=event, adt=False)
    groups = order_groups(ctx.message)
    if not groups:
        raise ctx.error(ctx.message.msh, None, "the message has no ORC or OBR segment", "100")
    changed = False
    for group in groups:
        written = map_service_request(ctx, group, patient, encounter, update=True)
        assert written is not None
        url, ids = written
        request = _resource(ctx, url)
        _link(request, "specimen", map_specimens(ctx, group, patient, url))
        order_number = (ids.placer or ids.filler or ("", ""))[1]
        answers = map_order_answers(ctx, group, order_number, patient, encounter)
        _link(request, "supportingInfo", answers)
        control = group.orc.value(1).strip().upper() if group.orc else "NW"
        changed = changed or control not in ("NW", "")
    map_provenance(ctx, update=changed)
    return patient


def _results(ctx: Context, event: str) -> PatientRef:
    """ORU^R01: reports and observations written; order, patient and visit only created."""
    patient = map_patient(ctx, ctx.message.first("PID"), update=False)
    encounter = map_encounter(ctx, ctx.message.first("PV1"), patient, event=event, adt=False)
    groups = [g for g in order_groups(ctx.message) if g.obr is not None]
    if not groups:
        raise ctx.error(ctx.message.msh, None, "the message has no OBR segment", "100")
    corrected = False
    for group in groups:
        written = map_service_request(ctx, group, patient, encounter, update=False)
        request_url, ids = written if written else (None, None)
        if ids is None:
            ids = order_ids(ctx, group)
        specimens = map_specimens(ctx, group, patient, request_url)
        map_report(ctx, group, ids, patient, encounter, request_url, specimens)
        statuses = [group.segment().value(25)] + [r.obx.value(11) for r in group.results]
        corrected = corrected or any(s.strip().upper() in ("C", "A") for s in statuses)
    map_provenance(ctx, update=corrected)
    return patient


Mapper = Callable[[Context, str], PatientRef]
# MSH-9.1 → (supported trigger events, mapper).
MAPPERS: dict[str, tuple[frozenset[str], Mapper]] = {
    "ADT": (ADT_EVENTS, _adt),
    "ORM": (frozenset({"O01"}), _orders),
    "OML": (frozenset({"O21"}), _orders),
    "ORU": (frozenset({"R01"}), _results),
}


def _peer_address(peer: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of a peer written ``host:port`` (or a bare host, or ``[v6]:port``)."""
    if not peer:
        return None
    host = peer.rsplit(":", 1)[0] if peer.count(":") == 1 else peer
    host = host.strip("[]").rsplit("]:", 1)[0] if host.startswith("[") else host
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_binding(message: Message, member: Member, *, peer: str | None,
                  bound_sender: str | None) -> None:  # fmt: skip
    """A feed speaks only for the member it is bound to: the sender an authenticated HTTP
    client is (``bound_sender``), and the source addresses configured for the member."""
    code = message.msh.value(4).strip()
    if bound_sender is not None and code != bound_sender:
        raise MappingError(
            f"MSH-4 {code!r} is not the member this connection is authenticated as "
            f"({bound_sender})",
            segment="MSH", field_no=4, code=UNKNOWN_KEY_IDENTIFIER, reject=True,
        )  # fmt: skip
    if member.sources:
        address = _peer_address(peer)
        allowed = address is not None and any(
            address in ipaddress.ip_network(net, strict=False) for net in member.sources
        )
        if not allowed:
            raise MappingError(
                f"messages of {member.code} are not accepted from this address",
                segment="MSH", field_no=4, code=UNKNOWN_KEY_IDENTIFIER, reject=True,
            )  # fmt: skip


def _sender(message: Message, community: Community) -> Member:
    code = message.msh.value(4).strip()
    member = community.member(code)
    if member is None or not member.feeds:
        raise MappingError(
            f"MSH-4 sending facility {code!r} is not a member of {community.name} with a feed",
            segment="MSH",
            field_no=4,
            code=UNKNOWN_KEY_IDENTIFIER,
            reject=True,
        )
    application = message.msh.value(3).strip()
    if member.restrict_applications and application not in member.applications:
        raise MappingError(
            f"MSH-3 sending application {application!r} is not one of {member.code}'s "
            f"({', '.join(member.applications)})",
            segment="MSH",
            field_no=3,
            code=UNKNOWN_KEY_IDENTIFIER,
            reject=True,
        )
    return member


def map_message(
    message: Message,
    community: Community,
    *,
    source_ref: str,
    received_at: str,
    member_override: Member | None = None,
) -> Mapped:
    """The transaction Bundle for one message (pure: same input, same JSON).

    ``member_override`` maps a message as if its sender were that member (tests and feeds
    whose MSH-4 the office has bound to a member); real traffic leaves it None.
    """
    code, event, _structure = message.message_type
    code, event = code.strip().upper(), event.strip().upper()
    if code not in MAPPERS:
        raise MappingError(
            f"message type {code!r} (MSH-9) is not supported",
            field_no=9,
            code=UNSUPPORTED_MESSAGE_TYPE,
            reject=True,
        )
    events, mapper = MAPPERS[code]
    if event not in events:
        raise MappingError(
            f"trigger event {code}^{event} (MSH-9) is not supported",
            field_no=9,
            code=UNSUPPORTED_EVENT_CODE,
            reject=True,
        )
    sender = member_override or _sender(message, community)
    ctx = Context(message, community, sender, source_ref, received_at)
    patient = mapper(ctx, event)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": ctx.entries}
    return Mapped(bundle, patient.key, ctx.warnings, ctx.unmapped)
