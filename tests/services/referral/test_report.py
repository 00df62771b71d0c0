"""$referral-report on a known set of referrals, made through the API with their real times
(authoredOn, Task.lastModified): counts per member, side and direction, outcomes in the month
they happened, the median time to accept and the month's edges in +08:00."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.services.referral.conftest import (
    TZ,
    fhir_time,
    move,
    now,
    patient,
    refer,
    referral,
    resident,
    task_of,
)


def _month_start() -> datetime:
    """The first of the month before last, midnight in +08:00: safely in the past."""
    first = now().replace(day=1, hour=0, minute=0, second=0)
    back = (first - timedelta(days=1)).replace(day=1)
    return (back - timedelta(days=1)).replace(day=1).astimezone(TZ)


def _steps(client: TestClient, request_id: str, *steps: tuple[str, datetime, dict]) -> None:
    task = task_of(client, request_id)
    for status, at, extra in steps:
        task = move(client, task, status, lastModified=fhir_time(at), **extra)


def _parts(parameter: dict[str, Any]) -> dict[str, Any]:
    """A report part as a dict: numbers as they are, nested parts as dicts."""
    out: dict[str, Any] = {}
    for part in parameter.get("part", []):
        if "part" in part:
            out[part["name"]] = _parts(part)
        else:
            out[part["name"]] = next(v for k, v in part.items() if k.startswith("value"))
    return out


def _figures(referrals: int = 0, green: int = 0, median: float | None = None, **outcomes: int):  # type: ignore[no-untyped-def]
    expected: dict[str, Any] = {"referrals": referrals, "greenChannel": green}
    for outcome in ("accepted", "rejected", "cancelled", "completed"):
        expected[outcome] = outcomes.get(outcome, 0)
    if median is not None:
        expected["medianMinutesToAccept"] = median
    return expected


def test_the_months_figures(client: TestClient) -> None:
    start = _month_start()
    month = start.strftime("%Y-%m")
    t = lambda days, hours=0, minutes=0: start + timedelta(days=days, hours=hours, minutes=minutes)  # noqa: E731
    qs = patient(client, "QSWSY", "QS-1", resident("19800101", "001"))
    bs = patient(client, "BSWSY", "BS-1", resident("19750606", "002"), name=[{"text": "李娟"}])
    xr = patient(client, "XRMYY", "XR-1", resident("19400303", "003"), name=[{"text": "王大爷"}])
    none: dict[str, Any] = {}
    # 1. Green channel up, accepted after 30 minutes, admitted and completed in the month.
    r1 = refer(client, referral(qs, "QSWSY", "XRMYY", priority="asap", authored=t(4, 8)))
    _steps(
        client,
        r1["id"],
        ("received", t(4, 8, 10), none),
        ("accepted", t(4, 8, 30), none),
        ("in-progress", t(4, 9), none),
        ("completed", t(9, 10), none),
    )
    # 2. Routine up, accepted after four hours, still in hospital at the month's end.
    r2 = refer(client, referral(qs, "QSWSY", "XRMYY", authored=t(5, 9)))
    _steps(client, r2["id"], ("received", t(5, 10), none), ("accepted", t(5, 13), none))
    # 3. Up from another centre, rejected with a reason.
    r3 = refer(client, referral(bs, "BSWSY", "XRMYY", authored=t(6, 9)))
    _steps(
        client,
        r3["id"],
        ("received", t(6, 10), none),
        ("rejected", t(6, 12), {"statusReason": {"text": "床位已满"}}),
    )
    # 4. Down, cancelled by the hospital before the centre saw it.
    r4 = refer(client, referral(xr, "XRMYY", "QSWSY", authored=t(7, 9)))
    _steps(client, r4["id"], ("cancelled", t(7, 11), none))
    # 5. Made at 23:00 on the last day of the month before, accepted 90 minutes later: the
    #    referral counts in that month, its acceptance in this one.
    r5 = refer(client, referral(qs, "QSWSY", "XRMYY", priority="urgent", authored=t(0, -1)))
    _steps(client, r5["id"], ("received", t(0, -0.5), none), ("accepted", t(0, 0, 30), none))
    # 6. Made at midnight on the first of the next month: not this month's.
    nxt = (start + timedelta(days=32)).replace(day=1)
    refer(client, referral(qs, "QSWSY", "XRMYY", authored=nxt))

    answer = client.get("/fhir/$referral-report", params={"month": month})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["resourceType"] == "Parameters"
    assert body["parameter"][0] == {"name": "month", "valueString": month}
    groups = {
        g["member"]: g for g in (_parts(p) for p in body["parameter"] if p["name"] == "group")
    }
    assert set(groups) == {"QSWSY", "BSWSY", "XRMYY"}
    assert groups["QSWSY"]["sent"] == {
        "up": _figures(2, 1, 90.0, accepted=3, completed=1),  # r1, r2 made; r1, r2, r5 accepted
        "down": _figures(),
    }
    assert groups["QSWSY"]["received"] == {"up": _figures(), "down": _figures(1, cancelled=1)}
    assert groups["BSWSY"]["sent"]["up"] == _figures(1, rejected=1)
    assert groups["XRMYY"]["received"]["up"] == _figures(
        3, 1, 90.0, accepted=3, rejected=1, completed=1
    )
    assert groups["XRMYY"]["sent"]["down"] == _figures(1, cancelled=1)
    total = _parts(next(p for p in body["parameter"] if p["name"] == "total"))
    assert total == {
        "up": _figures(3, 1, 90.0, accepted=3, rejected=1, completed=1),
        "down": _figures(1, cancelled=1),
    }
    # One member: its own group, and the total of the referrals it took part in.
    one = client.get("/fhir/$referral-report", params={"month": month, "member": "QSWSY"}).json()
    assert [_parts(p)["member"] for p in one["parameter"] if p["name"] == "group"] == ["QSWSY"]
    total = _parts(next(p for p in one["parameter"] if p["name"] == "total"))
    assert total["up"] == _figures(2, 1, 90.0, accepted=3, completed=1)
    # The month before holds r5's request; the next month r6.
    before = (start - timedelta(days=1)).strftime("%Y-%m")
    earlier = client.get("/fhir/$referral-report", params={"month": before}).json()
    assert _parts(earlier["parameter"][-1])["up"] == _figures(1, 1)
    later = client.get("/fhir/$referral-report", params={"month": nxt.strftime("%Y-%m")}).json()
    assert _parts(later["parameter"][-1])["up"] == _figures(1)


def test_report_parameters_are_checked(client: TestClient) -> None:
    for params in ({}, {"month": "2026-13"}, {"month": "2026-1"}):
        answer = client.get("/fhir/$referral-report", params=params)
        assert answer.status_code == 400
        assert answer.json()["resourceType"] == "OperationOutcome"
    answer = client.get("/fhir/$referral-report", params={"month": "2026-10", "member": "NOPE"})
    assert answer.status_code == 400 and "NOPE" in answer.text
    empty = client.get("/fhir/$referral-report", params={"month": "2026-10"}).json()
    assert [p["name"] for p in empty["parameter"]] == ["month", "total"]


def test_the_capability_statement_and_the_definition_tell_it(
    client: TestClient, engine: Any
) -> None:
    from adapters.feeds.config import demo_community
    from hub.feeds.bootstrap import load_community_resources

    rest = client.get("/fhir/metadata").json()["rest"][0]
    ops = {o["name"]: o for o in rest["operation"]}
    definition = "https://ygt.example.org/fhir/OperationDefinition/referral-report"
    assert ops["referral-report"]["definition"] == definition
    task = next(r for r in rest["resource"] if r["type"] == "Task")
    assert "3457005" in task["documentation"] and "statusReason" in task["documentation"]
    load_community_resources(engine, demo_community())
    served = client.get("/fhir/OperationDefinition/referral-report").json()
    assert served["url"] == definition and served["system"] is True
    direction = client.get("/fhir/CodeSystem/referral-direction").json()
    assert [c["code"] for c in direction["concept"]] == ["up", "down"]
