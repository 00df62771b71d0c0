"""The SQL middle-table feed against a real database view: no row twice, none skipped."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from adapters.sqlview.config import SqlFeed, load_sql_feeds
from hub.queue.replay import replay_messages
from hub.queue.sql_intake import poll_once, watermark
from hub.queue.worker import drain
from tests.feeds.helpers import inbox_rows

COMMUNITY = demo_community()
LOINC = "http://loinc.org"
VIEW = """CREATE TABLE v_lis_result (
    row_id INTEGER PRIMARY KEY, patient_no TEXT, id_card TEXT, patient_name TEXT, sex TEXT,
    birth_date TEXT, report_no TEXT, item_code TEXT, item_name TEXT, result_value TEXT,
    unit TEXT, ref_range TEXT, abnormal_flag TEXT, result_status TEXT, sample_time TEXT,
    report_time TEXT)"""


def row(row_id: int, report: str, code: str, value: str, **extra: str) -> dict[str, Any]:
    base = {
        "row_id": row_id, "patient_no": "HX000321", "id_card": "330521198507160026",
        "patient_name": "欧阳娜娜", "sex": "2", "birth_date": "1985-07-16", "report_no": report,
        "item_code": code, "item_name": {"GLU": "葡萄糖", "WBC": "白细胞"}.get(code, code),
        "result_value": value, "unit": "mmol/L", "ref_range": "3.9-6.1", "abnormal_flag": "",
        "result_status": "已审核", "sample_time": "2026-10-12 07:30:00",
        "report_time": "2026-10-12 10:05:00",
    }  # fmt: skip
    return {**base, **extra}


@pytest.fixture
def source(tmp_path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'hxwsy-lis.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text(VIEW))
    return engine


@pytest.fixture
def feed() -> SqlFeed:
    [configured] = load_sql_feeds()
    return dataclasses.replace(configured, url="sqlite://", batch=4)


def insert(source: sa.Engine, *rows: dict[str, Any]) -> None:
    table = sa.Table("v_lis_result", sa.MetaData(), autoload_with=source)
    with source.begin() as conn:
        conn.execute(table.insert(), list(rows))


def observations(client: TestClient, code: str) -> list[dict[str, Any]]:
    bundle = client.get("/fhir/Observation", params={"code": code, "_count": 50}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_rows_become_reports_once(
    source: sa.Engine, feed: SqlFeed, engine: sa.Engine, client: TestClient
) -> None:
    insert(
        source,
        row(1, "HX-R1", "GLU", "7.8", abnormal_flag="H"),
        row(2, "HX-R2", "GLU", "5.1"),
        row(3, "HX-R3", "GLU", "5.3"),
        row(4, "HX-R3", "WBC", "6.0", unit="10*9/L", ref_range="3.5-9.5"),
        row(5, "HX-R3", "HCT", "0.41", unit="1", ref_range=""),
    )
    # Batch of 4 would cut HX-R3 in two: the poll stops before it.
    assert poll_once(engine, source, feed, COMMUNITY) == 2
    assert watermark(engine, feed) == 2
    assert poll_once(engine, source, feed, COMMUNITY) == 1
    assert watermark(engine, feed) == 5
    assert poll_once(engine, source, feed, COMMUNITY) == 0  # nothing read twice
    assert drain(engine) == {"applied": 3}

    glucose = observations(client, f"{LOINC}|2345-7")
    assert sorted(o["valueQuantity"]["value"] for o in glucose) == [5.1, 5.3, 7.8]
    high = next(o for o in glucose if o["valueQuantity"]["value"] == 7.8)
    assert high["interpretation"][0]["coding"][0]["code"] == "H"
    assert high["effectiveDateTime"] == "2026-10-12T07:30:00+08:00"
    [patient] = client.get("/fhir/Patient").json()["entry"]
    assert patient["resource"]["gender"] == "female"
    mrn = COMMUNITY.members["HXWSY"].system("mrn")
    assert patient["resource"]["identifier"][0] == {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        },
        "system": mrn,
        "value": "HX000321",
    }
    reports = client.get("/fhir/DiagnosticReport", params={"_count": 50}).json()["entry"]
    assert len(reports) == 3
    assert max(len(r["resource"]["result"]) for r in reports) == 3

    # The vendor corrects HX-R1 (new rows): the same report and observation, a new version.
    insert(source, row(6, "HX-R1", "GLU", "6.8", result_status="已更正"))
    assert poll_once(engine, source, feed, COMMUNITY) == 1
    assert drain(engine) == {"applied": 1}
    glucose = observations(client, f"{LOINC}|2345-7")
    assert sorted(o["valueQuantity"]["value"] for o in glucose) == [5.1, 5.3, 6.8]
    corrected = next(o for o in glucose if o["valueQuantity"]["value"] == 6.8)
    assert corrected["status"] == "corrected" and corrected["meta"]["versionId"] == "2"


def test_a_bad_report_is_kept_and_does_not_hold_up_the_feed(
    source: sa.Engine, feed: SqlFeed, engine: sa.Engine, client: TestClient
) -> None:
    insert(source, row(1, "HX-B1", "GLU", ""), row(2, "HX-B2", "GLU", "5.0"))
    assert poll_once(engine, source, feed, COMMUNITY) == 2
    statuses = {r.control_id.split(":")[1]: r.status for r in inbox_rows(engine)}
    assert statuses == {"HX-B1": "rejected", "HX-B2": "pending"}
    assert drain(engine) == {"applied": 1}
    [bad] = [r for r in inbox_rows(engine) if r.status == "rejected"]
    assert "result_value" in bad.error
    # Replay maps the kept rows again (still empty: still rejected, nothing applied twice).
    assert replay_messages(engine, COMMUNITY, [bad.id]) == {"still rejected": 1}
    assert len(observations(client, f"{LOINC}|2345-7")) == 1


def test_after_a_restart_the_watermark_holds(
    source: sa.Engine, feed: SqlFeed, engine: sa.Engine, clean_db: None
) -> None:
    insert(source, row(1, "HX-S1", "GLU", "5.5"))
    assert poll_once(engine, source, feed, COMMUNITY) == 1
    fresh = dataclasses.replace(feed)  # a new process: only the store remembers
    insert(source, row(2, "HX-S2", "GLU", "5.6"))
    assert poll_once(engine, source, fresh, COMMUNITY) == 1
    assert [r.control_id.split(":")[1] for r in inbox_rows(engine)] == ["HX-S1", "HX-S2"]
