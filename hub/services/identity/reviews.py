"""Review Tasks: a probable match the office decides on.

The linker suggests; a person at the office completes the Task with ``businessStatus``
``same-person`` (the records are linked) or ``different-person`` (they are kept apart for
good).  Completing the Task through the FHIR API is the whole interface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.search.values import format_instant
from hub.services.identity import index_store as store
from hub.services.identity.model import PATIENT_INDEX, ref
from hub.store.repository import Writer, now_micros

if TYPE_CHECKING:
    from hub.services.identity.linker import PatientIndex, _Review

REVIEW = {
    "system": PATIENT_INDEX,
    "code": "review-link",
    "display": "确认是否同一患者 review a link",
}


def review_task(
    record: str, candidate: str, score: float, reasons: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "proposal",
        "priority": "routine",
        "code": {"coding": [REVIEW], "text": "确认是否同一患者"},
        "description": (
            f"Patient/{record} may be the same person as Patient/{candidate} "
            f"(score {score:.2f}: {', '.join(reasons) or 'demographics'})"
        ),
        "focus": ref(record),
        "for": ref(record),
        "authoredOn": format_instant(now_micros()),
        "input": [
            {"type": {"text": "candidate"}, "valueReference": ref(candidate)},
            {"type": {"text": "score"}, "valueDecimal": round(score, 4)},
        ],
    }


def create_review_tasks(index: PatientIndex, writer: Writer, reviews: list[_Review]) -> None:
    for review in reviews:
        if store.open_review(index.conn, review.patient_id, review.candidate_id):
            continue
        task = review_task(
            review.patient_id, review.candidate_id, review.match.score, review.match.reasons
        )
        stored = writer.create(task, observe=False)
        store.add_review(
            index.conn, review.patient_id, review.candidate_id, stored.res_id, review.match.score
        )


def _verdict(task: dict[str, Any]) -> str | None:
    for coding in (task.get("businessStatus") or {}).get("coding") or []:
        if coding.get("code") in ("same-person", "different-person"):
            return str(coding["code"])
    return None


def on_task_write(index: PatientIndex, writer: Writer, task: dict[str, Any], res_id: str) -> None:
    """A review Task completed by the office: act on its verdict, once."""
    if task.get("status") != "completed":
        return
    verdict = _verdict(task)
    if verdict is None:
        return
    review = store.review_by_task(index.conn, res_id)
    if review is None or review.status != "open":
        return
    from hub.services.identity.merge import link

    if verdict == "same-person":
        link(index, writer, review.patient_id, review.candidate_id)
        store.close_review(index.conn, res_id, "linked")
    else:
        store.add_distinct(index.conn, [(review.patient_id, review.candidate_id)], "review")
        store.close_review(index.conn, res_id, "distinct")
