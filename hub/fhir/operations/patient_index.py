"""The patient index's operations: $match, $ihe-pix, $merge, $unmerge, $link, $unlink.

$match follows FHIR R4 (a searchset of persons, scored, with the match-grade extension);
$ihe-pix follows IHE PIXm (Parameters of targetIdentifier and targetId); $merge takes the
parameters of FHIR R5's Patient $merge.  Every change leaves an AuditEvent, named in the answer,
and each can be undone: $unmerge takes a merge's AuditEvent, $link undoes an $unlink.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hub.fhir.errors import BadRequest, FhirError, NotFound, Unprocessable, info_outcome
from hub.fhir.interactions import Unit
from hub.fhir.operations.parameters import parameters, result, value
from hub.fhir.responses import fhir_response
from hub.fhir.routes import base_url, engine_of, read_body, run_read, run_write
from hub.fhir.validation import validate_resource
from hub.services.identity import bundle_operations as ops
from hub.services.identity import lookup
from hub.services.identity import merge as merging
from hub.services.identity.rules import load_rules

router = APIRouter()
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


@router.post("/Patient/$match")
async def match(request: Request) -> Response:
    params = parameters(await read_body(request))
    patient = value(params, "resource")
    if not isinstance(patient, dict):
        raise BadRequest("$match needs a 'resource' parameter holding a Patient", code="required")
    patient = validate_resource(patient, "Patient")
    only_certain = value(params, "onlyCertainMatches") is True
    count = value(params, "count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise BadRequest("'count' must be a positive integer", code="value")
    if not any(patient.get(k) for k in ("identifier", "name", "birthDate", "telecom")):
        raise Unprocessable(
            "the Patient has nothing to match on: give an identifier, a name, a birth date "
            "or a phone", code="incomplete",
        )  # fmt: skip
    base = base_url(request)

    def run(unit: Unit) -> dict[str, Any]:
        found = lookup.match(unit.conn, patient, load_rules(), count or 10)
        if only_certain:
            found = [c for c in found if c.match.grade == "certain"][:1]
        masters = lookup.contents(unit.conn, [c.master_id for c in found])
        entries = [
            {
                "fullUrl": f"{base}/Patient/{c.master_id}",
                "resource": masters[c.master_id],
                "search": {
                    "mode": "match",
                    "score": round(c.match.score, 4),
                    "extension": [{"url": MATCH_GRADE, "valueCode": c.match.grade}],
                },
            }
            for c in found
            if c.master_id in masters
        ]
        return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                "entry": entries}  # fmt: skip

    return fhir_response(200, await run_in_threadpool(run_read, engine_of(request), run))


@router.get("/Patient/$ihe-pix")
async def ihe_pix(request: Request) -> Response:
    source = request.query_params.get("sourceIdentifier")
    if not source or "|" not in source:
        raise BadRequest("sourceIdentifier=system|value is required", code="required")
    system, _, source_value = source.partition("|")
    targets = set(request.query_params.getlist("targetSystem"))

    def run(unit: Unit) -> dict[str, Any]:
        records = lookup.patients_with_identifier(unit.conn, system, source_value)
        if not records:
            raise NotFound(f"no patient is known by {source}", code="not-found")
        persons = {p for r in records if (p := lookup.person_of(unit.conn, r))}
        ids = sorted(
            {
                *records,
                *persons,
                *(i for p in persons for i in lookup.records_of_person(unit.conn, p)),
            }
        )
        found = lookup.contents(unit.conn, ids)
        known_systems = {
            i.get("system") for res in found.values() for i in res.get("identifier", [])
        }
        unknown = targets - known_systems
        if unknown:
            raise _Forbidden(f"targetSystem {sorted(unknown)[0]!r} is not a domain of this person")
        parts: list[tuple[str, str, Any]] = []
        seen = {(system, source_value)}
        for res_id in ids:
            res = found.get(res_id)
            if res is None:
                continue
            for ident in res.get("identifier", []):
                key = (ident.get("system"), ident.get("value"))
                if key in seen or (targets and key[0] not in targets):
                    continue
                seen.add(key)
                clean = {k: v for k, v in ident.items() if k in ("use", "type", "system", "value")}
                parts.append(("targetIdentifier", "valueIdentifier", clean))
            parts.append(("targetId", "valueReference", {"reference": f"Patient/{res_id}"}))
        return result(*parts)

    return fhir_response(200, await run_in_threadpool(run_read, engine_of(request), run))


class _Forbidden(FhirError):
    status = 403
    code = "business-rule"


@router.post("/Patient/$merge")
async def merge(request: Request) -> Response:
    params = parameters(await read_body(request))
    preview = value(params, "preview") is True

    def run(unit: Unit) -> dict[str, Any]:
        source = ops.patient_param(unit, params, "source-patient")
        target = ops.patient_param(unit, params, "target-patient")
        assert source is not None and target is not None
        if preview:
            outcome = info_outcome(
                f"preview: Patient/{source} would be merged into Patient/{target}; "
                f"{len(merging.referring(unit.conn, source))} resources would move"
            )
            return result(("outcome", "resource", outcome))
        merging.merge(ops.index_of(unit), unit.writer, source, target)
        unit.writer.flush()  # the merge itself runs as the unit flushes (see the linker)
        audit_id, moved = merging.last_merge(unit.conn, source)
        outcome = info_outcome(
            f"Patient/{source} merged into Patient/{target}; {moved} resources moved"
        )
        survivor = lookup.contents(unit.conn, [target]).get(target)
        return result(
            ("outcome", "resource", outcome),
            ("result", "resource", survivor),
            ops.audit_part(audit_id),
        )

    return fhir_response(200, await run_in_threadpool(run_write, engine_of(request), run))


@router.post("/Patient/$unmerge")
async def unmerge(request: Request) -> Response:
    params = parameters(await read_body(request))
    reference = value(params, "audit-event")
    ref_text = reference.get("reference", "") if isinstance(reference, dict) else ""
    if not ref_text.startswith("AuditEvent/"):
        raise BadRequest("audit-event must reference the merge's AuditEvent", code="required")

    def run(unit: Unit) -> dict[str, Any]:
        done = merging.undo_merge(ops.index_of(unit), unit.writer, ref_text.split("/", 1)[1])
        outcome = info_outcome(
            f"merge undone: Patient/{done['source']} is in use again; "
            f"{done['moved_back']} resources moved back"
        )
        return result(("outcome", "resource", outcome), ops.audit_part(done["audit"]))

    return fhir_response(200, await run_in_threadpool(run_write, engine_of(request), run))


@router.post("/Patient/$link")
async def link(request: Request) -> Response:
    body = await read_body(request)
    answer = await run_in_threadpool(run_write, engine_of(request), lambda u: ops.link(u, body))
    return fhir_response(200, answer)


@router.post("/Patient/$unlink")
async def unlink(request: Request) -> Response:
    body = await read_body(request)
    answer = await run_in_threadpool(run_write, engine_of(request), lambda u: ops.unlink(u, body))
    return fhir_response(200, answer)
