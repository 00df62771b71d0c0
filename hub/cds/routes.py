"""CDS Hooks (https://cds-hooks.org, 2.0): the recognition question while the clinician orders.

``GET /cds-services`` lists the services; ``order-select`` and ``order-sign`` take the draft
orders (a Bundle of ServiceRequests in ``context.draftOrders``) and answer with one card per
order that has a recognisable result, suggesting to drop it.  The same judgement as
``ServiceRequest/$recognize``; no check is recorded here (the order, if placed, is checked when
it arrives, and the decision is taken there), but the call is audited like a FHIR read: its
cards tell of the patient's results.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from hub.auth.audit import record_disclosure
from hub.fhir.errors import FhirError
from hub.fhir.interactions import Unit
from hub.fhir.routes import engine_of, read_body, run_read
from hub.services.recognition.catalogue import load_catalogue
from hub.services.recognition.recognize import Answer, recognise

router = APIRouter(prefix="/cds-services")
HOOKS = {
    "recognition-order-select": ("order-select", "互认提醒: 选择医嘱时"),
    "recognition-order-sign": ("order-sign", "互认提醒: 签署医嘱时"),
}


@router.get("")
async def discovery() -> dict[str, Any]:
    return {
        "services": [
            {
                "hook": hook,
                "id": service_id,
                "title": title,
                "description": "Earlier results of the patient that this order would repeat and "
                "that must be recognised (检查检验结果互认), across the community's members.",
                "usageRequirements": "context.draftOrders holds the ServiceRequests",
            }
            for service_id, (hook, title) in HOOKS.items()
        ]
    }


def _error(status: int, text: str) -> Response:
    return JSONResponse({"error": text}, status_code=status)


def _card(order_id: str | None, answer: Answer) -> dict[str, Any]:
    assert answer.item is not None
    best = answer.reports[0]
    card: dict[str, Any] = {
        "summary": f"{answer.item.display}: 已有可互认结果 ({best.effective:%Y-%m-%d})"[:140],
        "indicator": "warning",
        "detail": (
            f"{len(answer.reports)} 份可互认报告; 最新 {best.effective:%Y-%m-%d %H:%M}, "
            f"有效至 {best.valid_until:%Y-%m-%d}. 如仍需检查, 请注明重复检查理由."
        ),
        "source": {"label": "县域医共体 检查检验结果互认"},
        "selectionBehavior": "at-most-one",
        "overrideReasons": [
            {
                "code": code,
                "system": "https://ygt.example.org/fhir/CodeSystem/repeat-reason",
                "display": display,
            }
            for code, display in (
                ("condition-changed", "病情变化"),
                ("emergency", "急诊急救"),
                ("fast-changing", "结果变化快"),
                ("decisive", "诊疗意义重大"),
                ("patient-request", "患者要求"),
                ("forensic", "司法鉴定"),
                ("other", "其他"),
            )
        ],
    }
    if order_id:
        card["suggestions"] = [
            {
                "label": "互认已有结果, 不再开立此医嘱",
                "isRecommended": True,
                "actions": [
                    {
                        "type": "delete",
                        "description": "drop the order",
                        "resourceId": [f"ServiceRequest/{order_id}"],
                    }
                ],
            }
        ]
    return card


@router.post("/{service_id}")
async def call(request: Request, service_id: str) -> Response:
    if service_id not in HOOKS:
        return _error(404, f"no CDS service {service_id!r}")
    try:
        body = await read_body(request, ("application/json", "application/fhir+json"))
    except FhirError as exc:  # an unreadable body: CDS Hooks answers 400 with plain JSON
        return _error(400, str(exc))
    context = body.get("context") if isinstance(body, dict) else None
    if not isinstance(context, dict) or not context.get("patientId"):
        return _error(400, "context.patientId is required")
    if body.get("hook") not in (None, HOOKS[service_id][0]):
        return _error(400, f"this service answers {HOOKS[service_id][0]}, not {body.get('hook')}")
    drafts = [
        e.get("resource")
        for e in (context.get("draftOrders") or {}).get("entry") or []
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "ServiceRequest"
    ]  # fmt: skip
    community = request.app.state.community
    patient = str(context["patientId"])

    disclosed: list[str] = []

    def run(unit: Unit) -> dict[str, Any]:
        cards = []
        for order in drafts:
            codings = (order.get("code") or {}).get("coding") or []
            if not codings:
                continue
            answers = recognise(
                unit.conn,
                patient_ids=[patient],
                codings=codings[:1],
                at=datetime.now(community.tz),
                catalogue=load_catalogue(),
                community=community,
            )
            if answers and answers[0].recognisable:
                cards.append(_card(order.get("id"), answers[0]))
                disclosed.extend(f"DiagnosticReport/{c.report_id}" for c in answers[0].reports)
        return {"cards": cards}

    answer = await run_in_threadpool(run_read, engine_of(request), run)
    recorded = await record_disclosure(
        request, f"cds-hooks/{service_id}", patients=[f"Patient/{patient}"],
        resources=list(dict.fromkeys(disclosed)),
    )  # fmt: skip
    if not recorded:
        return _error(500, "the call could not be recorded in the audit trail; no cards given")
    return JSONResponse(answer)
