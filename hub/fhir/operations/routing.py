"""GET /fhir/$routing-report?month=YYYY-MM[&member=CODE]: the month's order-routing figures.

Parameters out (see profiles/routing/OperationDefinition-routing-report.json): ``month``, one
``group`` per ordering member, one ``centre`` per member that received orders, and ``total``;
each with routed, resulted, delivered, failed, cancelled and, when there were results,
``medianTurnaroundMinutes`` (ordered → first result).  The counting is in
hub.services.routing.figures.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from hub.fhir.interactions import Unit
from hub.fhir.operations.parameters import month_and_member
from hub.fhir.responses import fhir_response
from hub.fhir.routes import engine_of, run_read
from hub.services.routing.figures import Figures, monthly

router = APIRouter()


def _figures(name: str, f: Figures) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "member", "valueString": f.member},
        {"name": "routed", "valueInteger": f.routed},
        {"name": "resulted", "valueInteger": f.resulted},
        {"name": "delivered", "valueInteger": f.delivered},
        {"name": "failed", "valueInteger": f.failed},
        {"name": "cancelled", "valueInteger": f.cancelled},
    ]
    median = f.median_turnaround_minutes
    if median is not None:
        parts.append({"name": "medianTurnaroundMinutes", "valueDecimal": round(median, 1)})
    return {"name": name, "part": parts}


@router.get("/$routing-report")
async def routing_report(request: Request) -> Response:
    month, member = month_and_member(request)

    def run(unit: Unit) -> dict[str, Any]:
        report = monthly(unit.conn, month, member)
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "month", "valueString": month},
                *(_figures("group", f) for f in report.orderers),
                *(_figures("centre", f) for f in report.centres),
                _figures("total", report.total),
            ],
        }

    return fhir_response(200, await run_in_threadpool(run_read, engine_of(request), run))
