"""POST /fhir/ServiceRequest/$recognize: which ordered items have a result to recognise.

Parameters in (see profiles/recognition/OperationDefinition-recognize.json): ``patient`` or
``patientIdentifier``, ``code`` (repeating; standard or a member's local code), ``orderer``,
``at`` (default now), ``emergency``.  Parameters out: one ``item`` per code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hub.fhir.errors import BadRequest
from hub.fhir.interactions import Unit
from hub.fhir.operations.parameters import month_and_member, parameters, value, values
from hub.fhir.responses import fhir_response
from hub.fhir.routes import engine_of, read_body, run_read, run_write
from hub.search.values import DateFormatError, date_range, from_micros
from hub.services.identity import lookup
from hub.services.identity.model import patient_id
from hub.services.recognition.catalogue import load_catalogue
from hub.services.recognition.decisions import REPEAT_REASON, record_checks
from hub.services.recognition.figures import Figures, monthly, total
from hub.services.recognition.recognize import Answer, reason_coding, recognise

router = APIRouter()


def _at(raw: Any, community: Any) -> datetime:
    if raw is None:
        return datetime.now(community.tz)
    try:
        return from_micros(date_range(str(raw), community.tz)[0]).astimezone(community.tz)
    except DateFormatError as exc:
        raise BadRequest(f"at: {exc}", code="value") from exc


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _item(answer: Answer, issue: str | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "code", "valueCoding": answer.coding},
        {"name": "recognisable", "valueBoolean": answer.recognisable},
    ]
    if answer.item is not None:
        parts.append({"name": "catalogueItem", "valueCoding": {
            "system": "https://ygt.example.org/fhir/CodeSystem/recognition-catalogue",
            "code": answer.item.code, "display": answer.item.display}})  # fmt: skip
    for candidate in answer.reports:
        parts.append(
            {"name": "report",
             "valueReference": {"reference": f"DiagnosticReport/{candidate.report_id}"}}
        )  # fmt: skip
    if answer.reports:
        best = answer.reports[0]
        if best.performer:
            parts.append({"name": "performer", "valueReference": {"reference": best.performer}})
        parts.append({"name": "effective", "valueDateTime": _instant(best.effective)})
        parts.append({"name": "validUntil", "valueDateTime": _instant(best.valid_until)})
        parts += [
            {"name": "observation", "valueReference": {"reference": f"Observation/{o}"}}
            for o in best.observations
            if o
        ]
    parts.append({"name": "reason", "valueCoding": reason_coding(answer.reason)})
    if issue:
        # Where the decision goes: the orderer updates this DetectedIssue (see README).
        parts.append({"name": "issue", "valueReference": {"reference": f"DetectedIssue/{issue}"}})
    return {"name": "item", "part": parts}


@router.post("/ServiceRequest/$recognize")
async def recognize(request: Request) -> Response:
    params = parameters(await read_body(request))
    community = request.app.state.community
    codings = values(params, "code")
    if not codings or not all(isinstance(c, dict) for c in codings):
        raise BadRequest("$recognize needs at least one 'code' (a Coding)", code="required")
    reference = value(params, "patient")
    identifier = value(params, "patientIdentifier")
    if reference is None and not isinstance(identifier, dict):
        raise BadRequest("give 'patient' (a Reference) or 'patientIdentifier'", code="required")
    at = _at(value(params, "at"), community)
    orderer = value(params, "orderer")
    orderer_ref = orderer.get("reference") if isinstance(orderer, dict) else None
    emergency = value(params, "emergency") is True

    def run(unit: Unit) -> dict[str, Any]:
        certain = True
        if reference is not None:
            found = patient_id(reference)
            if found is None:
                raise BadRequest("'patient' must reference a Patient", code="value")
            ids = [found]
        else:
            ids = lookup.patients_with_identifier(
                unit.conn, identifier.get("system", ""), identifier.get("value", "")
            )
            persons = {lookup.person_of(unit.conn, r) for r in ids}
            certain = len(persons) == 1  # one number, two persons: not certain who is meant
        answers = recognise(
            unit.conn,
            patient_ids=ids,
            codings=codings,
            at=at,
            catalogue=load_catalogue(),
            community=community,
            identity_certain=certain,
        )
        issues: list[str | None] = [None] * len(answers)
        if ids and unit.conn.dialect.name == "postgresql":
            # The check log is the office's statistics, not a patient's data: its commit need
            # not wait for the disk (a crash loses at most the last few checks' records).
            unit.conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        if ids:
            issues = record_checks(
                unit.writer, answers, patient=ids[0], orderer=orderer_ref, at=at,
                emergency=emergency,
            )  # fmt: skip
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "at", "valueDateTime": _instant(at)},
                *(_item(a, i) for a, i in zip(answers, issues, strict=True)),
            ],
        }

    return fhir_response(200, await run_in_threadpool(run_write, engine_of(request), run))


def _figures(name: str, f: Figures) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "member", "valueString": f.member},
        {"name": "checked", "valueInteger": f.checked},
        {"name": "recognisable", "valueInteger": f.recognisable},
        {"name": "accepted", "valueInteger": f.accepted},
        {"name": "reordered", "valueInteger": f.reordered},
        {"name": "pending", "valueInteger": f.pending},
        {"name": "recognitionRate", "valueDecimal": round(f.rate, 4)},
        {"name": "savedYuan", "valueDecimal": round(f.saved_yuan, 2)},
    ]
    parts += [
        {"name": "repeated", "part": [
            {"name": "reason", "valueCoding": {"system": REPEAT_REASON, "code": reason}},
            {"name": "count", "valueInteger": n}]}
        for reason, n in sorted(f.repeated_by_reason.items())
    ]  # fmt: skip
    return {"name": name, "part": parts}


@router.get("/$recognition-report")
async def recognition_report(request: Request) -> Response:
    month, member = month_and_member(request)

    def run(unit: Unit) -> dict[str, Any]:
        found = monthly(unit.conn, month, member)
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "month", "valueString": month},
                *(_figures("group", f) for f in found),
                _figures("total", total(found)),
            ],
        }

    return fhir_response(200, await run_in_threadpool(run_read, engine_of(request), run))
