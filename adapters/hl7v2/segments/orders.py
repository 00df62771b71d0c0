"""ORC/OBR → ServiceRequest and SPM → Specimen, per the guide's ORC[ServiceRequest],
OBR[ServiceRequest] and SPM[Specimen] maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.errors import REQUIRED_FIELD_MISSING
from adapters.hl7v2.mapped import Context
from adapters.hl7v2.parse import Segment
from adapters.hl7v2.segments.encounter import EncounterRef
from adapters.hl7v2.segments.groups import OrderGroup
from adapters.hl7v2.segments.patient import PatientRef
from adapters.hl7v2.segments.people import practitioner

# OrderControlCode[ServiceRequest.status].  Departure: the guide keeps CA (cancel request)
# "active" because a filler has yet to confirm with CR; the hub is no filler, and for the
# shared record the placer's cancel is the end of the order, so CA → revoked.  Codes the guide
# leaves blank (XO change, SC status changed ...) fall to ORC-5 (OrderStatus map), else active.
_CONTROL = {
    "NW": "active", "AF": "active", "CA": "revoked", "CR": "revoked", "DC": "revoked",
    "DF": "revoked", "DR": "revoked", "FU": "completed", "HD": "active", "HR": "on-hold",
    "OC": "revoked", "OD": "revoked", "OH": "on-hold", "OK": "active", "PR": "active",
    "PY": "active", "RL": "active", "RO": "active", "RQ": "active",
}  # fmt: skip
_ORDER_STATUS = {
    "CA": "revoked", "CM": "completed", "DC": "revoked", "ER": "entered-in-error",
    "HD": "on-hold", "IP": "active", "RP": "revoked", "SC": "active",
}  # fmt: skip
_PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}  # ExtendedPriorityCodes


@dataclass
class OrderIds:
    placer: tuple[str, str] | None  # (system, value)
    filler: tuple[str, str] | None


def order_ids(ctx: Context, group: OrderGroup) -> OrderIds:
    """Placer (ORC-2, else OBR-2) and filler (ORC-3, else OBR-3) numbers with their systems."""

    def ei(n_orc: int, n_obr: int, kind: str) -> tuple[str, str] | None:
        value = group.field(n_orc, n_obr)
        if not value:
            return None
        namespace = group.field(n_orc, n_obr, 2)
        system = ctx.community.system_for_authority(namespace, kind) or ctx.sender.system(kind)
        return system, value

    placer, filler = ei(2, 2, "placer"), ei(3, 3, "filler")
    if placer is None and filler is None and group.orc is not None:
        # Neither number, only the placer group number (ORC-4): the order is known by the group
        # and its OBR set id, which the placer repeats when it changes or cancels the order.
        group_number = group.orc.value(4).strip()
        if group_number:
            set_id = group.obr.value(1).strip() if group.obr else ""
            placer = ctx.sender.system("placer"), f"{group_number}-{set_id or '1'}"
    return OrderIds(placer, filler)


def _identifiers(ids: OrderIds) -> list[dict[str, Any]]:
    out = []
    for pair, code in ((ids.placer, "PLAC"), (ids.filler, "FILL")):
        if pair:
            out.append(
                {"type": dt.coded(f"{dt.V2}0203", code), "system": pair[0], "value": pair[1]}
            )
    return out


def _status(group: OrderGroup) -> str:
    control = group.orc.value(1).strip().upper() if group.orc else ""
    if control in _CONTROL:
        return _CONTROL[control]
    order_status = group.orc.value(5).strip().upper() if group.orc else ""
    return _ORDER_STATUS.get(order_status, "active")


def _priority(group: OrderGroup) -> str | None:
    codes = [
        group.tq1.value(9).strip() if group.tq1 else "",
        group.field(7, 27, 6),  # TQ.6 priority of ORC-7 / OBR-27
        group.obr.value(5).strip() if group.obr else "",  # OBR-5 (deprecated) priority
    ]
    return next((_PRIORITY[c.upper()] for c in codes if c.upper() in _PRIORITY), None)


def notes(ctx: Context, segments: list[Segment]) -> list[dict[str, str]]:
    texts = ["\n".join(dt.raw_unescaped(nte, 3)).strip() for nte in segments]
    return [{"text": t} for t in texts if t]


def map_service_request(
    ctx: Context,
    group: OrderGroup,
    patient: PatientRef,
    encounter: EncounterRef | None,
    *,
    update: bool,
) -> tuple[str, OrderIds] | None:
    """ORM/OML write the order (PUT by placer number); ORU only makes sure it exists."""
    ids = order_ids(ctx, group)
    key = ids.placer or (ids.filler if update else None)  # ORM/OML: the filler's, if alone
    if key is None:
        if update:
            raise ctx.error(
                group.segment(), 2, "placer order number is empty", REQUIRED_FIELD_MISSING
            )
        return None
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": _identifiers(ids),
        "status": _status(group) if update else "active",
        "intent": "order",
    }
    if group.obr is not None and (code := ctx.test_code(group.obr, 4)):
        request["code"] = code
    request["subject"] = {"reference": patient.full_url}
    if encounter:
        request["encounter"] = {"reference": encounter.full_url}
    if update:
        _order_details(ctx, group, request)
    url = ctx.write(request, *key, update=update)
    return url, ids


def _order_details(ctx: Context, group: OrderGroup, request: dict[str, Any]) -> None:
    if priority := _priority(group):
        request["priority"] = priority
    if group.orc is not None and (authored := ctx.ts(group.orc, 9)):
        request["authoredOn"] = authored
    who = None
    if group.orc is not None:
        who = practitioner(ctx, group.orc, 12)
    if who is None and group.obr is not None:
        who = practitioner(ctx, group.obr, 16)
    request["requester"] = who or {"reference": ctx.sender.reference}
    # The filler is the member the message names where the sender's feed puts it (MSH-6,
    # the receiving facility, unless community.json's ``orderDestination`` says otherwise):
    # the lab centre for a township centre's blood count.  Order routing sends the order there.
    filler = ctx.community.member(_named_destination(ctx, group))
    if filler is not None:
        request["performer"] = [{"reference": filler.reference, "display": filler.name}]
    if group.obr is not None:
        reasons = [ctx.cwe(group.obr, 31, rep) for rep in range(len(group.obr.repetitions(31)))]
        if reasons := [r for r in reasons if r]:
            request["reasonCode"] = reasons
    if annotations := notes(ctx, group.notes):
        request["note"] = annotations


def _named_destination(ctx: Context, group: OrderGroup) -> str:
    name, field_no, component = ctx.sender.order_destination
    segment = {"MSH": ctx.message.msh, "ORC": group.orc, "OBR": group.obr}[name]
    return segment.value(field_no, component).strip() if segment is not None else ""


def map_specimens(
    ctx: Context, group: OrderGroup, patient: PatientRef, request_url: str | None
) -> list[str]:
    """SPM → Specimen, PUT by the placer's specimen id (else the filler's, else derived);
    without SPM (v2.3.1, v2.4), OBR-15 specimen source → Specimen.  SPM wins when both are."""
    urls = []
    ids = order_ids(ctx, group)
    order_number = (ids.placer or ids.filler or ("", ""))[1]
    if not group.specimens:
        return _obr_specimen(ctx, group, ids, patient, request_url)
    for spm in group.specimens:
        placer, filler = spm.value(2, 1).strip(), spm.value(2, 2).strip()
        # The placer's barcode is what both the order and the result carry; the filler's id
        # alone only when the placer gave none, so ORM and ORU meet on one Specimen.
        value = placer or filler or f"{order_number}-{spm.value(1).strip() or '1'}"
        if not (placer or filler or order_number):
            raise ctx.error(spm, 2, "specimen id is empty", REQUIRED_FIELD_MISSING)
        namespace = spm.value(2, 1, sub=2).strip() if placer else spm.value(2, 2, sub=2).strip()
        system = ctx.community.system_for_authority(namespace, "specimen") or ctx.sender.system(
            "specimen"
        )
        specimen: dict[str, Any] = {
            "resourceType": "Specimen",
            "identifier": [{"system": system, "value": value}],
            "subject": {"reference": patient.full_url},
        }
        if filler and filler != value:
            specimen["accessionIdentifier"] = {
                "system": ctx.sender.system("specimen"),
                "value": filler,
            }
        if kind := ctx.cwe(spm, 4):
            specimen["type"] = kind
        if request_url:
            specimen["request"] = [{"reference": request_url}]
        if collected := ctx.ts(spm, 17):
            specimen["collection"] = {"collectedDateTime": collected}
        if received := ctx.ts(spm, 18):
            specimen["receivedTime"] = received
        urls.append(ctx.put(specimen, system, value))
    return urls


def _obr_specimen(
    ctx: Context,
    group: OrderGroup,
    ids: OrderIds,
    patient: PatientRef,
    request_url: str | None,
) -> list[str]:
    """OBR-15 (SPS) with OBR-7/8, OBR-14 → Specimen, per the guide's OBR[Specimen] map.

    SPS carries no specimen id: the Specimen is known by the order number and the OBR set id,
    in the system of the order number's assigning authority, so the clinic's v2.3.1 order and
    the lab's result of it meet on one Specimen.
    """
    obr = group.obr
    number = ids.placer or ids.filler
    if obr is None or not obr.raw(15).strip() or number is None:
        return []
    namespace = group.field(2, 2, 2) if ids.placer else group.field(3, 3, 2)
    system = ctx.community.system_for_authority(namespace, "specimen") or ctx.sender.system(
        "specimen"
    )
    value = f"{number[1]}-{obr.value(1).strip() or '1'}"
    specimen: dict[str, Any] = {
        "resourceType": "Specimen",
        "identifier": [{"system": system, "value": value}],
        "subject": {"reference": patient.full_url},
    }
    local = ctx.sender.local_code_system
    if kind := dt.cwe_in_component(obr, 15, 1, local):
        specimen["type"] = kind
    if request_url:
        specimen["request"] = [{"reference": request_url}]
    collection: dict[str, Any] = {}
    start, end = ctx.ts(obr, 7), ctx.ts(obr, 8)
    if start and end:
        collection["collectedPeriod"] = {"start": start, "end": end}
    elif start:
        collection["collectedDateTime"] = start
    if site := dt.cwe_in_component(obr, 15, 4, local):
        collection["bodySite"] = site
    if collection:
        specimen["collection"] = collection
    if received := ctx.ts(obr, 14):
        specimen["receivedTime"] = received
    if free_text := obr.value(15, 3).strip():
        specimen["note"] = [{"text": free_text}]
    return [ctx.put(specimen, system, value)]
