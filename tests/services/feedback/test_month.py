"""A county month end to end: ADT and ORU over MLLP → the month's feedback documents."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from adapters.feeds.config import demo_community
from hub.services.feedback.model import ADDRESSEE_EXT, composition_id, package_id
from hub.services.feedback.run import FeedbackBusy, run_month
from hub.store import leases
from hub.store.repository import read_many
from hub.store.schema import feedback_documents, resource_history
from tests.services.feedback.conftest import HGB_OK, MONTH, SUN, ZHANG, ZHAO, Feed
from tests.services.feedback.messages import Person, Stay, adt, oru

COMMUNITY = demo_community()


def _docs(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.encounter_id: r for r in conn.execute(sa.select(feedback_documents))}


def _encounter_id(engine: sa.Engine, visit: str) -> str:
    with engine.connect() as conn:
        for row in conn.execute(
            sa.text("SELECT res_id, content FROM resources WHERE res_type = 'Encounter'")
        ):
            if visit in row.content:
                return str(row.res_id)
    raise AssertionError(visit)


def _read(engine: sa.Engine, res_type: str, res_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return read_many(conn, res_type, [res_id])[res_id]


def _versions(engine: sa.Engine, res_type: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(resource_history.c.res_type == res_type)
            ).scalar_one()
        )


def _section(comp: dict[str, Any], code: str) -> dict[str, Any]:
    return next(s for s in comp["section"] if s["code"]["coding"][0]["code"] == code)


def test_one_document_per_stay_discharged_in_the_month(engine: sa.Engine, month: Any) -> None:
    summary = run_month(engine, COMMUNITY, MONTH, trigger="test")
    docs = _docs(engine)
    visits = {v: _encounter_id(engine, month[v].visit) for v in month}
    expected = {"zhang", "li1", "li2", "wang", "zhao", "sun", "zhou"}
    assert {e for e in docs} == {visits[v] for v in expected}
    assert summary.new == 7 and summary.stays == 7 and summary.amended == 0
    assert visits["wu"] not in docs  # discharged at 00:00 on 1 November
    addressees = {v: docs[visits[v]].addressee for v in expected}
    assert addressees == {
        "zhang": "QSWSY", "li1": "BSWSY", "li2": "BSWSY", "wang": "HXWSY", "zhao": None,
        "sun": "BSWSY", "zhou": "QSWSY",
    }  # fmt: skip
    assert docs[visits["sun"]].addressed_by == "catchment"
    assert summary.unaddressed == [visits["zhao"]]
    november = run_month(engine, COMMUNITY, "2026-11", trigger="test")
    assert november.new == 1 and _docs(engine)[visits["wu"]].month == "2026-11"


def test_the_document_has_every_section_and_stands_alone(engine: sa.Engine, month: Any) -> None:
    run_month(engine, COMMUNITY, MONTH, trigger="test")
    enc = _encounter_id(engine, "V-ZHANG")
    bundle = _read(engine, "Bundle", composition_id(enc))
    Bundle.parse_obj(bundle)  # valid FHIR R4(B)
    assert bundle["type"] == "document"
    comp = bundle["entry"][0]["resource"]
    assert comp["resourceType"] == "Composition" and comp["status"] == "final"
    assert comp["type"]["coding"][0] == {
        "system": "http://loinc.org", "code": "18842-5", "display": "Discharge summary"
    }  # fmt: skip
    assert comp["author"][0]["reference"] == "Organization/XRMYY"
    assert comp["attester"][0]["party"]["reference"] == "Organization/XRMYY"
    assert comp["custodian"]["reference"] == "Organization/YGT"
    assert comp["identifier"]["value"] == enc
    assert comp["extension"][0] == {
        "url": ADDRESSEE_EXT, "valueReference": {"reference": "Organization/QSWSY"}
    }  # fmt: skip
    full_urls = {e["fullUrl"].split("/fhir/")[1] for e in bundle["entry"]}
    referenced = {e["reference"] for s in comp["section"] for e in s.get("entry", [])} | {
        comp["subject"]["reference"],
        comp["encounter"]["reference"],
        comp["custodian"]["reference"],
    }
    assert referenced <= full_urls  # every reference resolves inside the document
    admission = _section(comp, "46241-6")
    discharge = _section(comp, "11535-2")
    assert "不稳定型心绞痛" in admission["text"]["div"]
    assert "急性前壁心肌梗死" in discharge["text"]["div"] and "高血压" in discharge["text"]["div"]
    assert len(discharge["entry"]) == 2 and len(admission["entry"]) == 1
    assert "经皮冠状动脉腔内成形术" in _section(comp, "47519-4")["text"]["div"]
    results = _section(comp, "30954-2")
    # The lab centre's results under its own record of the person count; the one before
    # admission does not.  The abnormal report comes first.
    reports = [
        next(e["resource"] for e in bundle["entry"] if e["fullUrl"].endswith(r["reference"]))
        for r in results["entry"]
    ]
    assert len(reports) == 2
    assert reports[0]["effectiveDateTime"].startswith("2026-10-02")
    assert "白细胞计数" in results["text"]["div"] and "15.2" in results["text"]["div"]
    assert "医嘱离院" in _section(comp, "discharge-disposition")["text"]["div"]
    assert _section(comp, "8653-8")["emptyReason"]["coding"][0]["code"] == "unavailable"
    assert comp["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')


def test_a_death_is_told_and_needs_no_follow_up(engine: sa.Engine, month: Any) -> None:
    run_month(engine, COMMUNITY, MONTH, trigger="test")
    comp = _read(engine, "Composition", composition_id(_encounter_id(engine, "V-WANG")))
    assert "死亡" in _section(comp, "discharge-disposition")["text"]["div"]
    advice = _section(comp, "8653-8")
    assert "死亡" in advice["text"]["div"] and "entry" not in advice


def test_rerun_changes_nothing_and_a_corrected_result_amends(
    engine: sa.Engine, month: Any, feed: Feed
) -> None:
    run_month(engine, COMMUNITY, MONTH, trigger="test")
    before = (
        _versions(engine, "Composition"),
        _versions(engine, "Bundle"),
        _versions(engine, "List"),
    )
    again = run_month(engine, COMMUNITY, MONTH, trigger="test")
    assert again.unchanged == 7 and again.new == again.amended == again.packages_written == 0
    after = (
        _versions(engine, "Composition"),
        _versions(engine, "Bundle"),
        _versions(engine, "List"),
    )
    assert after == before
    # The lab corrects the stay's white cell count after the run.
    corrected = ("WBC", "白细胞计数", "9.1", "10*9/L", "3.5-9.5", "N")
    feed(oru(ZHANG, "V-ZHANG", "ORD-Z3", "20261002093000", [corrected, HGB_OK], status="C"))
    third = run_month(engine, COMMUNITY, MONTH, trigger="test")
    assert third.amended == 1 and third.unchanged == 6
    enc = _encounter_id(engine, "V-ZHANG")
    comp = _read(engine, "Composition", composition_id(enc))
    assert comp["status"] == "amended" and comp["meta"]["versionId"] == "2"
    assert comp["relatesTo"][0]["targetReference"]["reference"].endswith("/_history/1")
    div = _section(comp, "30954-2")["text"]["div"]
    assert "15.2" not in div and "血常规（已更正）" in div
    package = _read(engine, "List", package_id("QSWSY", MONTH))
    flags = {e["item"]["reference"]: e["flag"]["coding"][0]["code"] for e in package["entry"]}
    assert flags[f"Composition/{composition_id(enc)}"] == "amended"
    assert sorted(flags.values()) == ["amended", "new"]  # 张三's amended, 周午夜's as it was
    assert "更正 1 份" in package["note"][0]["text"]


def test_packages_per_centre_and_the_office_list(engine: sa.Engine, month: Any) -> None:
    run_month(engine, COMMUNITY, MONTH, trigger="test")
    bswsy = _read(engine, "List", package_id("BSWSY", MONTH))
    assert len(bswsy["entry"]) == 3  # 李娟 twice, 孙梅
    assert bswsy["code"]["coding"][0]["code"] == "monthly-package"
    office = _read(engine, "List", f"fbu-{MONTH}")
    assert [e["item"]["reference"] for e in office["entry"]] == [
        f"Encounter/{_encounter_id(engine, 'V-ZHAO')}"
    ]


def test_a_stay_whose_centre_changed_moves_between_packages(
    engine: sa.Engine, month: Any, feed: Feed
) -> None:
    run_month(engine, COMMUNITY, MONTH, trigger="test")
    # 赵 signs with 东桥镇卫生院 (PD1 on an A08): next run files it there.
    zhao = Person(**{**ZHAO.__dict__, "gp": "DQWSY"})
    feed(adt("A08", zhao, month["zhao"], "20261101090000"))
    summary = run_month(engine, COMMUNITY, MONTH, trigger="test")
    assert summary.unaddressed == []
    package = _read(engine, "List", package_id("DQWSY", MONTH))
    assert [e["flag"]["coding"][0]["code"] for e in package["entry"]] == ["amended"]
    office = _read(engine, "List", f"fbu-{MONTH}")
    assert "entry" not in office


def test_a_cancelled_discharge_withdraws_the_document(
    engine: sa.Engine, month: Any, feed: Feed
) -> None:
    run_month(engine, COMMUNITY, MONTH, trigger="test")
    # A13: the discharge of 孙梅 was entered by mistake; she is still in hospital.
    sun = month["sun"]
    feed(adt("A13", SUN, Stay(sun.visit, sun.admitted), "20261101090000"))
    summary = run_month(engine, COMMUNITY, MONTH, trigger="test")
    assert summary.withdrawn == 1 and summary.stays == 6
    comp = _read(engine, "Composition", composition_id(_encounter_id(engine, "V-SUN")))
    assert comp["status"] == "entered-in-error"
    package = _read(engine, "List", package_id("BSWSY", MONTH))
    withdrawn = [e for e in package["entry"] if e.get("deleted")]
    assert [e["flag"]["coding"][0]["code"] for e in withdrawn] == ["withdrawn"]
    assert run_month(engine, COMMUNITY, MONTH, trigger="test").packages_written == 0


def test_only_one_runner_at_a_time(engine: sa.Engine, month: Any) -> None:
    assert leases.acquire(engine, "monthly-feedback", "someone-else", 60)
    with pytest.raises(FeedbackBusy):
        run_month(engine, COMMUNITY, MONTH, trigger="test")
    leases.release(engine, "monthly-feedback", "someone-else")
    assert run_month(engine, COMMUNITY, MONTH, trigger="test").new == 7


def test_one_centre_only(engine: sa.Engine, month: Any) -> None:
    summary = run_month(engine, COMMUNITY, MONTH, org="QSWSY", trigger="test")
    assert summary.stays == 2 and summary.new == 2
    assert {r.addressee for r in _docs(engine).values()} == {"QSWSY"}
    with engine.connect() as conn:
        assert read_many(conn, "List", [package_id("BSWSY", MONTH)]) == {}


def test_document_json_is_what_is_served(engine: sa.Engine, month: Any) -> None:
    run_month(engine, COMMUNITY, MONTH, trigger="test")
    enc = _encounter_id(engine, "V-SUN")
    bundle = _read(engine, "Bundle", composition_id(enc))
    assert orjson.loads(orjson.dumps(bundle))["entry"][0]["resource"]["id"] == composition_id(enc)


def test_the_schedule_runs_the_previous_month_once_across_processes(
    engine: sa.Engine, month: Any
) -> None:
    from datetime import datetime, time

    from hub.services.feedback.schedule import FeedbackScheduler, due_month

    tz = COMMUNITY.tz
    assert due_month(datetime(2026, 11, 1, 1, 59, tzinfo=tz), 1, time(2)) == "2026-09"
    assert due_month(datetime(2026, 11, 1, 2, 0, tzinfo=tz), 1, time(2)) == "2026-10"
    assert due_month(datetime(2027, 1, 15, tzinfo=tz), 1, time(2)) == "2026-12"
    # 18:00 UTC on 31 October is 02:00 on 1 November in the community: the run is due.
    clock = lambda: datetime.fromisoformat("2026-10-31T18:00:00+00:00")  # noqa: E731
    one = FeedbackScheduler(engine, COMMUNITY, clock=clock)
    other = FeedbackScheduler(engine, COMMUNITY, clock=clock)
    summary = one.tick()
    assert summary is not None and summary.month == MONTH and summary.new == 7
    assert other.tick() is None and one.tick() is None  # done: nobody runs it again
    # While one process holds the lease, another's tick does nothing and raises nothing.
    assert leases.acquire(engine, "monthly-feedback", one.holder, 60)
    late = FeedbackScheduler(engine, COMMUNITY, clock=lambda: datetime(2026, 12, 1, 3, tzinfo=tz))
    assert late.tick() is None
    leases.release(engine, "monthly-feedback", one.holder)
    assert late.tick().month == "2026-11"  # type: ignore[union-attr]


def test_one_stay_filed_ahead_of_the_month(engine: sa.Engine, month: Any) -> None:
    from hub.services.feedback.run import file_stay

    enc, staying = _encounter_id(engine, "V-WANG"), _encounter_id(engine, "V-LI-3")
    with engine.begin() as conn:
        assert file_stay(conn, COMMUNITY, enc) == composition_id(enc)
        assert file_stay(conn, COMMUNITY, staying) is None  # still in hospital
    assert _docs(engine)[enc].month == MONTH
    summary = run_month(engine, COMMUNITY, MONTH, trigger="test")
    assert summary.unchanged == 1 and summary.new == 6
