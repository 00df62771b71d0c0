"""The referral state machine and its timing, as pure functions of the rules.

No I/O here: the observer asks these what a write means and records the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.fhir.errors import Unprocessable
from hub.services.referral.rules import EventMove, ReferralRules, Transition

HOUR_US = 3_600_000_000
# A client's clock may run a little ahead of the hub's; more than this is not believed.
CLOCK_SLACK_US = 5 * 60 * 1_000_000


@dataclass(frozen=True)
class Move:
    """A step the hub makes a referral's Task take (an admission, a revoked request)."""

    task_id: str
    to: str  # the Task's state after; the same state only adds ``output``
    at: int | None = None  # when it happened, if known
    output: dict[str, Any] | None = None  # a Task.output to add (the admission)


def check_transition(
    rules: ReferralRules, current: str, task: dict[str, Any], task_id: str
) -> Transition | None:
    """The transition a new version of a referral Task makes (None: its state is unchanged),
    or Unprocessable naming the states when the rules do not allow it."""
    new = task.get("status")
    if new == current:
        return None
    step = rules.transitions.get((current, str(new)))
    if step is None:
        allowed = rules.allowed_from(current)
        onward = (
            f"from {current} it may go to {', '.join(allowed)}"
            if allowed
            else (f"{current} is final")
        )
        raise Unprocessable(
            f"Task/{task_id}: a referral may not go from {current} to {new}; {onward}",
            code="business-rule",
            expression=["Task.status"],
        )
    for element in step.requires:
        if not task.get(element):
            raise Unprocessable(
                f"Task/{task_id}: going from {current} to {new} needs Task.{element} "
                "(why, for the referring side)",
                code="required",
                expression=[f"Task.{element}"],
            )
    return step


def infer_direction(rules: ReferralRules, from_kind: str, to_kind: str) -> str | None:
    """The one direction whose member kinds fit the two organisations, else None."""
    fits = [
        d.code
        for d in rules.directions.values()
        if from_kind in d.from_kinds and to_kind in d.to_kinds
    ]
    return fits[0] if len(fits) == 1 else None


def direction_of(rules: ReferralRules, stated: str | None, from_kind: str, to_kind: str) -> str:
    """The referral's direction: as stated when it agrees with the members' kinds (or they
    say nothing), inferred from the kinds when not stated; Unprocessable otherwise."""
    inferred = infer_direction(rules, from_kind, to_kind)
    if stated is None:
        if inferred is None:
            raise Unprocessable(
                f"cannot tell whether a referral from a {from_kind} to a {to_kind} goes up or "
                f"down; add a category coding from {rules.direction_system}",
                code="required",
                expression=["ServiceRequest.category"],
            )
        return inferred
    if stated not in rules.directions:
        raise Unprocessable(
            f"direction {stated!r} is not one of {', '.join(sorted(rules.directions))}",
            code="code-invalid",
            expression=["ServiceRequest.category"],
        )
    if inferred is not None and inferred != stated:
        raise Unprocessable(
            f"a referral from a {from_kind} to a {to_kind} goes {inferred}, not {stated}",
            code="business-rule",
            expression=["ServiceRequest.category"],
        )
    return stated


def priority_of(rules: ReferralRules, request: dict[str, Any]) -> str:
    return str(request.get("priority") or rules.default_priority)


def due_at(rules: ReferralRules, requested_at: int, direction: str, priority: str) -> int:
    return requested_at + int(rules.due_hours_for(direction, priority) * HOUR_US)


def event_time(claimed: int | None, previous: int, now: int) -> int:
    """When a step happened: the time the writer gives (Task.lastModified, the admission
    time) when it is after the previous step and not in the future, else now.  So a late
    feed or a backfill keeps its real times, and no step is dated before the one it follows."""
    if claimed is not None and previous < claimed <= now + CLOCK_SLACK_US:
        return min(claimed, now)
    return max(now, previous)


def event_move(move: EventMove, state: str, direction: str) -> str | None:
    """The state an admission or discharge moves a referral in ``state`` to, if any."""
    if move.directions is not None and direction not in move.directions:
        return None
    return move.to if state in move.move_from else None
