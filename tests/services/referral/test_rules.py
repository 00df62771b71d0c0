"""The referral rules file and the pure state machine: transitions, reasons, due times,
directions, step times and what admission and discharge do."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from hub.fhir.errors import Unprocessable
from hub.services.referral import workflow
from hub.services.referral.rules import default_rules_path, load_rules, parse_rules

RULES = load_rules()
RAW: dict[str, Any] = json.loads(default_rules_path().read_text(encoding="utf-8"))
HOUR = workflow.HOUR_US


def test_the_shipped_rules() -> None:
    assert RULES.initial == "requested"
    assert RULES.terminal == {"rejected", "cancelled", "completed"}
    assert RULES.allowed_from("received") == ["accepted", "cancelled", "rejected"]
    assert RULES.transitions[("received", "rejected")].requires == ("statusReason",)
    assert RULES.is_green("up", "asap") and RULES.is_green("up", "urgent")
    assert not RULES.is_green("up", "routine") and not RULES.is_green("down", "asap")
    assert RULES.lookback_days == 90


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("requested", "received"),
        ("received", "accepted"),
        ("accepted", "in-progress"),
        ("in-progress", "completed"),
        ("requested", "cancelled"),
        ("received", "cancelled"),
        ("accepted", "cancelled"),
    ],
)
def test_legal_steps(current: str, new: str) -> None:
    step = workflow.check_transition(RULES, current, {"status": new}, "t1")
    assert step is not None and (step.source, step.target) == (current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("requested", "accepted"),  # not received first
        ("requested", "completed"),
        ("received", "in-progress"),
        ("accepted", "rejected"),
        ("in-progress", "cancelled"),
        ("rejected", "accepted"),  # final states stay final
        ("completed", "in-progress"),
        ("cancelled", "requested"),
        ("received", "on-hold"),  # a Task status the rules do not use
    ],
)
def test_illegal_steps_name_both_states(current: str, new: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        workflow.check_transition(RULES, current, {"status": new}, "t1")
    text = caught.value.issues[0].diagnostics
    assert f"from {current} to {new}" in text
    assert caught.value.status == 422
    assert caught.value.issues[0].expression == ["Task.status"]


def test_unchanged_state_is_no_step() -> None:
    assert workflow.check_transition(RULES, "accepted", {"status": "accepted"}, "t1") is None


def test_rejection_needs_a_reason() -> None:
    with pytest.raises(Unprocessable) as caught:
        workflow.check_transition(RULES, "received", {"status": "rejected"}, "t1")
    assert caught.value.issues[0].expression == ["Task.statusReason"]
    reason = {"text": "床位已满 no bed"}
    task = {"status": "rejected", "statusReason": reason}
    assert workflow.check_transition(RULES, "received", task, "t1") is not None


def test_due_times_come_from_the_rules() -> None:
    assert workflow.due_at(RULES, 0, "up", "asap") == 2 * HOUR
    assert workflow.due_at(RULES, 0, "up", "routine") == 72 * HOUR
    assert workflow.due_at(RULES, 0, "down", "urgent") == 24 * HOUR
    changed = copy.deepcopy(RAW)
    changed["dueHours"]["up"]["asap"] = 0.5
    assert workflow.due_at(parse_rules(changed), 0, "up", "asap") == HOUR // 2


def test_directions_from_the_members_kinds() -> None:
    assert workflow.direction_of(RULES, None, "township-centre", "lead-hospital") == "up"
    assert workflow.direction_of(RULES, None, "lead-hospital", "community-centre") == "down"
    assert workflow.direction_of(RULES, "up", "township-centre", "hospital") == "up"
    # Two hospitals: the sender must say which way; once said, it stands.
    with pytest.raises(Unprocessable):
        workflow.direction_of(RULES, None, "hospital", "lead-hospital")
    assert workflow.direction_of(RULES, "down", "hospital", "lead-hospital") == "down"
    with pytest.raises(Unprocessable, match="goes up, not down"):
        workflow.direction_of(RULES, "down", "township-centre", "lead-hospital")
    with pytest.raises(Unprocessable, match="sideways"):
        workflow.direction_of(RULES, "sideways", "township-centre", "lead-hospital")


def test_step_times() -> None:
    now = 1_000 * HOUR
    assert workflow.event_time(None, 10, now) == now
    assert workflow.event_time(now - HOUR, now - 2 * HOUR, now) == now - HOUR  # a late feed
    assert workflow.event_time(now - 3 * HOUR, now - 2 * HOUR, now) == now  # before the last
    assert workflow.event_time(now + 60_000_000, 0, now) == now  # a clock a minute ahead
    assert workflow.event_time(now + 24 * HOUR, 0, now) == now  # the future is not believed


def test_admission_and_discharge_moves() -> None:
    assert workflow.event_move(RULES.admission, "accepted", "up") == "in-progress"
    assert workflow.event_move(RULES.admission, "accepted", "down") == "in-progress"
    assert workflow.event_move(RULES.admission, "received", "up") is None
    assert workflow.event_move(RULES.discharge, "in-progress", "up") == "completed"
    assert workflow.event_move(RULES.discharge, "in-progress", "down") is None


def _broken(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["transitions"].append({"from": "received", "to": "done"}), "Task status"),
        (lambda d: d["transitions"].append({"from": "accepted", "to": "accepted"}), "change"),
        (lambda d: d["dueHours"]["up"].pop("stat"), "dueHours.up.stat"),
        (lambda d: d["dueHours"]["down"].update(routine=-1), "dueHours.down.routine"),
        (lambda d: d["admission"].update(moveFrom=["received"]), "not a transition"),
        (lambda d: d["greenChannel"].update(directions=["sideways"]), "greenChannel"),
        (lambda d: d["supportingInfo"].update(resultsLookbackDays="90"), "resultsLookbackDays"),
        (lambda d: d["transitions"][3].update(requires=["reasonCode"]), "requires"),
        (lambda d: d.update(initial="draft"), "initial"),
    ],
)
def test_a_bad_rules_file_says_what_is_wrong(change: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_rules(_broken(change))


def test_rules_reload_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RAW), encoding="utf-8")
    assert load_rules(path).lookback_days == 90
    changed = copy.deepcopy(RAW)
    changed["supportingInfo"]["resultsLookbackDays"] = 30
    path.write_text(json.dumps(changed), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_rules(path).lookback_days == 30
