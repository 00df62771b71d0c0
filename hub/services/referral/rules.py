"""The referral rules, read from profiles/referral/rules.json.

Data, not code: the referral category, the directions and which member kinds they join, the
green-channel priorities, due hours, the Task states and their legal transitions (and which
need a reason), what the admission and discharge of a referred patient do, and what the hub
adds as supporting information.  The file is checked when read; a bad one raises ValueError
naming what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from adapters.feeds.config import profiles_dir
from hub.fhir.validation import REQUEST_STATUS, TASK_STATUS

PRIORITIES = ("routine", "urgent", "asap", "stat")  # FHIR request-priority
# The FHIR value sets the hub validates against (hub.fhir.validation).
TASK_STATES = TASK_STATUS
REQUEST_STATES = REQUEST_STATUS
TASK_ELEMENTS = frozenset({"statusReason", "businessStatus", "note", "output"})


def default_rules_path() -> Path:
    return profiles_dir() / "referral" / "rules.json"


@dataclass(frozen=True)
class Direction:
    code: str
    display: str
    from_kinds: frozenset[str]
    to_kinds: frozenset[str]


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    requires: tuple[str, ...] = ()  # Task elements the new version must carry


@dataclass(frozen=True)
class EventMove:
    """What an ADT event of a referred patient does to the referral's Task."""

    encounter_statuses: frozenset[str]
    move_from: frozenset[str]
    to: str
    directions: frozenset[str] | None = None  # None: every direction
    link_while: frozenset[str] = frozenset()  # admission only: states that link the Encounter
    # Admission only: an Encounter that began longer than this before the referral was made
    # is an earlier stay, not the referral's (the paperwork of an emergency may come late).
    lead_hours: float = 0.0


@dataclass(frozen=True)
class ReferralRules:
    category: dict[str, str]
    direction_system: str
    directions: dict[str, Direction]
    default_priority: str
    green_priorities: frozenset[str]
    green_directions: frozenset[str]
    due_hours: dict[str, dict[str, float]]
    initial: str
    transitions: dict[tuple[str, str], Transition]
    request_status: dict[str, str]  # Task state → ServiceRequest.status
    cancel_on_request: frozenset[str]  # ServiceRequest statuses that cancel the Task
    cancel_to: str
    admission: EventMove
    discharge: EventMove
    lookback_days: int
    max_results: int
    result_statuses: frozenset[str]
    discharge_document: frozenset[str]  # directions that carry the discharge document
    stay_classes: frozenset[str]  # Encounter.class codes of a stay with a discharge document

    @property
    def states(self) -> frozenset[str]:
        return frozenset({self.initial, *(s for pair in self.transitions for s in pair)})

    @property
    def terminal(self) -> frozenset[str]:
        """States with no way out."""
        return self.states - {source for source, _ in self.transitions}

    def allowed_from(self, state: str) -> list[str]:
        return sorted(target for source, target in self.transitions if source == state)

    def due_hours_for(self, direction: str, priority: str) -> float:
        return self.due_hours[direction][priority]

    def is_green(self, direction: str, priority: str) -> bool:
        return direction in self.green_directions and priority in self.green_priorities


def _need(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or not value:
        raise ValueError(f"{where}.{key}: expected a non-empty {kind.__name__}")
    return value


def _strings(raw: Any, where: str, allowed: frozenset[str] | None = None) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise ValueError(f"{where}: expected a list of strings")
    if allowed is not None and (unknown := set(raw) - allowed):
        raise ValueError(f"{where}: unknown {sorted(unknown)}")
    return frozenset(raw)


def _transitions(raw: Any) -> dict[tuple[str, str], Transition]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("transitions: expected a non-empty list")
    out: dict[tuple[str, str], Transition] = {}
    for i, item in enumerate(raw):
        where = f"transitions[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object")
        source, target = item.get("from"), item.get("to")
        for name, state in (("from", source), ("to", target)):
            if state not in TASK_STATES:
                raise ValueError(f"{where}.{name}: {state!r} is not a FHIR Task status")
        if source == target:
            raise ValueError(f"{where}: a transition must change the state")
        requires = tuple(
            sorted(_strings(item.get("requires", []), f"{where}.requires", TASK_ELEMENTS))
        )
        out[(source, target)] = Transition(source, target, requires)
    return out


def _move(raw: Any, where: str, directions: frozenset[str], admission: bool) -> EventMove:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object")
    to = raw.get("to")
    if to not in TASK_STATES:
        raise ValueError(f"{where}.to: {to!r} is not a FHIR Task status")
    which = raw.get("directions")
    lead = raw.get("startsAtMostHoursBeforeReferral", 0) if admission else 0
    if not isinstance(lead, int | float) or isinstance(lead, bool) or lead < 0:
        raise ValueError(f"{where}.startsAtMostHoursBeforeReferral: expected a number ≥ 0")
    return EventMove(
        encounter_statuses=_strings(raw.get("encounterStatuses"), f"{where}.encounterStatuses"),
        move_from=_strings(raw.get("moveFrom", []), f"{where}.moveFrom", TASK_STATES),
        to=to,
        directions=None if which is None else _strings(which, f"{where}.directions", directions),
        link_while=(
            _strings(raw.get("linkWhile", []), f"{where}.linkWhile", TASK_STATES)
            if admission
            else frozenset()
        ),
        lead_hours=float(lead),
    )


def parse_rules(data: Any) -> ReferralRules:
    if not isinstance(data, dict):
        raise ValueError("the rules must be a JSON object")
    category = _need(data, "category", dict, "rules")
    if not category.get("system") or not category.get("code"):
        raise ValueError("rules.category: needs system and code")
    directions: dict[str, Direction] = {}
    for code, raw in _need(data, "directions", dict, "rules").items():
        where = f"directions.{code}"
        directions[code] = Direction(
            code,
            str(raw.get("display") or code),
            _strings(raw.get("fromKinds"), f"{where}.fromKinds"),
            _strings(raw.get("toKinds"), f"{where}.toKinds"),
        )
    codes = frozenset(directions)
    default_priority = data.get("defaultPriority", "routine")
    if default_priority not in PRIORITIES:
        raise ValueError(f"defaultPriority: {default_priority!r} is not a request priority")
    green = _need(data, "greenChannel", dict, "rules")
    due: dict[str, dict[str, float]] = {}
    raw_due = _need(data, "dueHours", dict, "rules")
    for code in directions:
        hours = raw_due.get(code)
        if not isinstance(hours, dict):
            raise ValueError(f"dueHours.{code}: missing")
        for priority in PRIORITIES:
            value = hours.get(priority)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"dueHours.{code}.{priority}: expected a positive number")
        due[code] = {p: float(hours[p]) for p in PRIORITIES}
    transitions = _transitions(data.get("transitions"))
    initial = data.get("initial", "requested")
    states = {initial, *(s for pair in transitions for s in pair)}
    if not any(source == initial for source, _ in transitions):
        raise ValueError(f"initial: no transition leaves {initial!r}")
    request_status = _need(data, "requestStatus", dict, "rules")
    for state, status in request_status.items():
        if state not in states or status not in REQUEST_STATES:
            raise ValueError(f"requestStatus.{state}: {status!r} for an unknown state or status")
    cancel = _need(data, "cancelledByRequest", dict, "rules")
    cancel_to = cancel.get("to")
    if cancel_to not in states:
        raise ValueError(f"cancelledByRequest.to: {cancel_to!r} is not a referral state")
    admission = _move(data.get("admission"), "admission", codes, admission=True)
    discharge = _move(data.get("discharge"), "discharge", codes, admission=False)
    # An event moves a Task only along a transition a person could make too: the ADT feed
    # never opens a way round the state machine.
    for name, move in (("admission", admission), ("discharge", discharge)):
        for source in move.move_from:
            if (source, move.to) not in transitions:
                raise ValueError(f"{name}: {source} → {move.to} is not a transition")
    supporting = _need(data, "supportingInfo", dict, "rules")
    document = _need(supporting, "dischargeDocument", dict, "supportingInfo")
    lookback = supporting.get("resultsLookbackDays")
    most = supporting.get("maxResults")
    for name, number in (("resultsLookbackDays", lookback), ("maxResults", most)):
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ValueError(f"supportingInfo.{name}: expected a whole number ≥ 0")
    assert isinstance(lookback, int) and isinstance(most, int)
    return ReferralRules(
        category={k: str(v) for k, v in category.items()},
        direction_system=_need(data, "directionSystem", str, "rules"),
        directions=directions,
        default_priority=default_priority,
        green_priorities=_strings(
            green.get("priorities"), "greenChannel.priorities", frozenset(PRIORITIES)
        ),
        green_directions=_strings(green.get("directions"), "greenChannel.directions", codes),
        due_hours=due,
        initial=initial,
        transitions=transitions,
        request_status={str(k): str(v) for k, v in request_status.items()},
        cancel_on_request=_strings(
            cancel.get("requestStatuses"), "cancelledByRequest.requestStatuses", REQUEST_STATES
        ),
        cancel_to=cancel_to,
        admission=admission,
        discharge=discharge,
        lookback_days=lookback,
        max_results=most,
        result_statuses=_strings(supporting.get("resultStatuses"), "supportingInfo.resultStatuses"),
        discharge_document=_strings(
            document.get("directions"), "supportingInfo.dischargeDocument.directions", codes
        ),
        stay_classes=_strings(
            document.get("encounterClasses"), "supportingInfo.dischargeDocument.encounterClasses"
        ),
    )


def read_rules(path: Path) -> ReferralRules:
    return parse_rules(json.loads(path.read_text(encoding="utf-8")))


@lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> ReferralRules:
    return read_rules(Path(path))


def load_rules(path: Path | None = None) -> ReferralRules:
    """The rules in force; read again when the file changes (the office edits it)."""
    where = path or default_rules_path()
    return _cached(str(where), where.stat().st_mtime_ns)
