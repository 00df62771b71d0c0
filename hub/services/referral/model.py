"""What a referral looks like in FHIR: recognising one, its Task, references and times."""

from __future__ import annotations

from datetime import timezone
from typing import Any

from hub.search.values import DateFormatError, date_range, from_micros
from hub.services.referral.rules import ReferralRules

# FHIR task-code: the Task asks its owner to fulfil the focal request (the referral).
TASK_CODE = {
    "system": "http://hl7.org/fhir/CodeSystem/task-code",
    "code": "fulfill",
    "display": "Fulfill the focal request",
}


def codings(concepts: Any) -> list[dict[str, Any]]:
    return [
        c
        for concept in concepts or []
        if isinstance(concept, dict)
        for c in concept.get("coding") or []
        if isinstance(c, dict)
    ]


def is_referral(request: dict[str, Any], rules: ReferralRules) -> bool:
    wanted = (rules.category["system"], rules.category["code"])
    return any((c.get("system"), c.get("code")) == wanted for c in codings(request.get("category")))


def stated_direction(request: dict[str, Any], rules: ReferralRules) -> str | None:
    """The direction coding the sender put in ServiceRequest.category, if any."""
    for c in codings(request.get("category")):
        if c.get("system") == rules.direction_system:
            return str(c.get("code"))
    return None


def with_direction(request: dict[str, Any], rules: ReferralRules, direction: str) -> dict:
    """The request with its direction as a category coding (added when the hub inferred it)."""
    if stated_direction(request, rules) is not None:
        return request
    coding = {
        "system": rules.direction_system,
        "code": direction,
        "display": rules.directions[direction].display,
    }
    return {**request, "category": [*(request.get("category") or []), {"coding": [coding]}]}


def ref_id(reference: Any, res_type: str) -> str | None:
    """``Type/id`` → id, for a literal reference to ``res_type``."""
    text = reference.get("reference") if isinstance(reference, dict) else None
    if isinstance(text, str) and text.startswith(f"{res_type}/"):
        rest = text[len(res_type) + 1 :]
        return rest.split("/", 1)[0] or None
    return None


def instant(micros: int, tz: timezone) -> str:
    """A FHIR dateTime in the community's zone, to the second."""
    return from_micros(micros).astimezone(tz).isoformat(timespec="seconds")


def moment(text: Any, tz: timezone) -> int | None:
    """The start of a FHIR date/dateTime in µs, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return date_range(text, tz)[0]
    except DateFormatError:
        return None


def with_based_on(encounter: dict[str, Any], request_id: str) -> dict[str, Any]:
    """The Encounter with ``basedOn`` naming the referral (R4 Encounter.basedOn:
    Reference(ServiceRequest), "the request this encounter satisfies (e.g. incoming
    referral)"), kept beside whatever the sender put there."""
    reference = f"ServiceRequest/{request_id}"
    present = encounter.get("basedOn") or []
    if any(isinstance(r, dict) and r.get("reference") == reference for r in present):
        return encounter
    return {**encounter, "basedOn": [*present, {"reference": reference}]}


def build_task(
    rules: ReferralRules,
    *,
    request_id: str,
    subject: dict[str, Any],
    requester: str,
    performer: str,
    direction: str,
    priority: str,
    requested_at: int,
    due_at: int,
    tz: timezone,
    names: dict[str, str],
) -> dict[str, Any]:
    """The Task that carries a referral's state, owned by the receiving organisation."""
    focus = {"reference": f"ServiceRequest/{request_id}"}
    label = rules.directions[direction].display
    green = " (绿色通道)" if rules.is_green(direction, priority) else ""
    return {
        "resourceType": "Task",
        "basedOn": [focus],
        "status": rules.initial,
        "intent": "order",
        "priority": priority,
        "code": {"coding": [TASK_CODE]},
        "description": (
            f"{label}{green}: {names.get(requester, requester)} → {names.get(performer, performer)}"
        ),
        "focus": focus,
        "for": {k: v for k, v in subject.items() if k in ("reference", "display")},
        "authoredOn": instant(requested_at, tz),
        "lastModified": instant(requested_at, tz),
        "requester": {"reference": f"Organization/{requester}"},
        "owner": {"reference": f"Organization/{performer}"},
        "restriction": {"period": {"start": instant(requested_at, tz), "end": instant(due_at, tz)}},
    }
