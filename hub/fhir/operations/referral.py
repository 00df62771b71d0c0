"""GET /fhir/$referral-report?month=YYYY-MM[&member=CODE]: two-way referral figures (绩效考核).

Out (profiles/referral/OperationDefinition-referral-report.json): ``month``; a ``group`` per
member with a ``sent`` and a ``received`` part, each with one part per direction (``up``,
``down``): referrals, greenChannel, accepted, rejected, cancelled, completed and, when any
was accepted, medianMinutesToAccept; a ``total`` with one part per direction, each referral
counted once.  The referrals themselves are plain FHIR (ServiceRequest and Task, see
hub.services.referral); this is only the counting.
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
from hub.services.referral.figures import Counts, Report, monthly
from hub.services.referral.rules import load_rules

router = APIRouter()


def _counts(name: str, counts: Counts) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "referrals", "valueInteger": counts.referrals},
        {"name": "greenChannel", "valueInteger": counts.green_channel},
        *({"name": outcome, "valueInteger": n} for outcome, n in counts.outcomes.items()),
    ]
    median = counts.median_minutes_to_accept
    if median is not None:
        parts.append({"name": "medianMinutesToAccept", "valueDecimal": round(median, 1)})
    return {"name": name, "part": parts}


def _by_direction(name: str, sides: dict[str, Counts]) -> dict[str, Any]:
    return {"name": name, "part": [_counts(d, c) for d, c in sides.items()]}


def render(report: Report) -> dict[str, Any]:
    groups = [
        {
            "name": "group",
            "part": [
                {"name": "member", "valueString": f.member},
                _by_direction("sent", f.sent),
                _by_direction("received", f.received),
            ],
        }
        for f in report.members
    ]
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "month", "valueString": report.month},
            *groups,
            {"name": "total", "part": [_counts(d, c) for d, c in report.total.items()]},
        ],
    }


@router.get("/$referral-report")
async def referral_report(request: Request) -> Response:
    month, member = month_and_member(request)
    community = request.app.state.community
    directions = list(load_rules().directions)

    def run(unit: Unit) -> dict[str, Any]:
        return render(monthly(unit.conn, month, community.tz, directions, member))

    return fhir_response(200, await run_in_threadpool(run_read, engine_of(request), run))
