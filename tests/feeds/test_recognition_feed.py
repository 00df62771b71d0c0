"""Orders that arrive by HL7 feed are checked for recognisable results after the fact."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.feeds.service import FeedService
from hub.queue.worker import drain
from tests.feeds.helpers import ack_code, send_all
from tests.services.identity.test_patient_index import post
from tests.services.recognition.test_recognize import CBC, report


def orm(cid: str, mrn: str, placer: str) -> bytes:
    return (
        "MSH|^~\\&|HIS|QSWSY|YGT_HUB|YGT|20261022090000||ORM^O01^ORM_O01|"
        f"{cid}|P|2.5||||||UNICODE UTF-8\r"
        f"PID|1||{mrn}^^^QSWSY^MR||李^娜||19751002|F\r"
        f"ORC|NW|{placer}^QSWSY|||||||20261022090000\r"
        f"OBR|1|{placer}^QSWSY||XCG^血常规^L|||20261022090000\r"
    ).encode()


def test_a_township_order_repeating_a_recognisable_result_is_counted(
    feeds: FeedService, engine: sa.Engine, client: TestClient
) -> None:
    record = post(client, {
        "resourceType": "Patient",
        "identifier": [{"system": "https://ygt.example.org/fhir/sid/QSWSY/mrn", "value": "QS9"}],
    })  # fmt: skip
    report(client, record["id"], CBC, "2026-10-20T09:00:00+08:00")
    [ack] = send_all(feeds.port or 0, [orm("R1", "QS9", "QS-ORD-1")])
    assert ack_code(ack) == "AA"
    assert drain(engine) == {"applied": 1}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT orderer, item, recognisable, decision, source FROM recognition_checks")
        ).all()
    assert [tuple(r) for r in rows] == [("QSWSY", CBC, True, "reordered", "order")]
    figures = client.get("/fhir/$recognition-report", params={"month": "2026-10"}).json()
    assert any(g["name"] == "group" for g in figures["parameter"])
