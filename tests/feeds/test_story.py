"""A stay told by the feeds, checked through FHIR search at every step, over real sockets.

Admission (A01) → transfer (A02) → lab result (ORU, enhanced-mode commit ACK) → the lab's
correction (same report and observations, new versions) → discharge (A03).  Then resends:
the same bytes again are acknowledged and not applied twice; the same control id with other
content is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.feeds.bootstrap import load_community_resources
from hub.feeds.service import FeedService
from hub.queue.worker import drain
from tests.feeds.helpers import ack_code, inbox_rows, send_all

MESSAGES = Path(__file__).with_name("messages")
COMMUNITY = demo_community()
MRN = f"{COMMUNITY.members['XRMYY'].system('mrn')}|ZY0099123"
VISIT = f"{COMMUNITY.members['XRMYY'].system('visit')}|V20261020001"
LOINC = "http://loinc.org"


def feed(service: FeedService, engine: sa.Engine, name: str) -> str:
    [answer] = send_all(service.port or 0, [(MESSAGES / name).read_bytes()])
    assert drain(engine).get("failed", 0) == 0, [r.error for r in inbox_rows(engine)]
    return ack_code(answer)


def search(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    res = client.get(f"/fhir/{path}", params=params)
    assert res.status_code == 200, res.text
    return [e["resource"] for e in res.json().get("entry", [])]


def the_encounter(client: TestClient) -> dict[str, Any]:
    [encounter] = search(client, "Encounter", identifier=VISIT)
    return encounter


def test_a_stay_through_the_feeds(
    feeds: FeedService, engine: sa.Engine, client: TestClient
) -> None:
    load_community_resources(engine, COMMUNITY)

    # 1. Admission: the patient, the encounter in progress, its ward and admitting diagnosis.
    assert feed(feeds, engine, "story-1-a01.hl7") == "AA"
    [patient] = search(client, "Patient", identifier=MRN)
    assert patient["name"][0]["family"] == "张" and patient["name"][0]["given"] == ["三"]
    assert search(client, "Patient", identifier="330521196003150012")[0]["id"] == patient["id"]
    assert patient["generalPractitioner"][0]["reference"] == "Organization/QSWSY"
    encounter = the_encounter(client)
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    conditions = search(client, "Condition", encounter=f"Encounter/{encounter['id']}")
    assert [c["code"]["coding"][0]["code"] for c in conditions] == ["I10"]

    # 2. Transfer: the same encounter, a new version at the new ward.
    assert feed(feeds, engine, "story-2-a02.hl7") == "AA"
    moved = the_encounter(client)
    assert moved["id"] == encounter["id"]
    assert int(moved["meta"]["versionId"]) > int(encounter["meta"]["versionId"])
    assert moved["location"] != encounter["location"]

    # 3. The lab centre's result, filed under the lead hospital's MRN, linked to the stay.
    assert feed(feeds, engine, "story-3-oru.hl7") == "CA"  # enhanced mode: commit ACK
    [report] = search(client, "DiagnosticReport", patient=f"Patient/{patient['id']}")
    assert any(c.get("code") == "58410-2" for c in report["code"]["coding"])
    assert report["status"] == "final"
    assert report["encounter"]["reference"] == f"Encounter/{encounter['id']}"
    found = search(
        client, "DiagnosticReport", patient=f"Patient/{patient['id']}", code=f"{LOINC}|58410-2"
    )
    assert [r["id"] for r in found] == [report["id"]]
    wbc = search(client, "Observation", patient=f"Patient/{patient['id']}", code=f"{LOINC}|6690-2")
    assert len(wbc) == 1 and wbc[0]["valueQuantity"]["value"] == 11.2
    assert wbc[0]["interpretation"][0]["coding"][0]["code"] == "H"
    before = len(search(client, "Observation", patient=f"Patient/{patient['id']}", _count=50))

    # 4. The correction: same report and observations, new versions, no duplicates.
    assert feed(feeds, engine, "story-4-oru-corrected.hl7") == "CA"
    [corrected] = search(client, "DiagnosticReport", patient=f"Patient/{patient['id']}")
    assert corrected["id"] == report["id"] and corrected["status"] == "corrected"
    after = search(client, "Observation", patient=f"Patient/{patient['id']}", _count=50)
    assert len(after) == before
    [wbc2] = [o for o in after if o["id"] == wbc[0]["id"]]
    assert wbc2["valueQuantity"]["value"] == 9.1 and wbc2["status"] == "corrected"
    assert int(wbc2["meta"]["versionId"]) == 2
    assert "复核后更正" in wbc2["note"][0]["text"]

    # 5. Discharge: finished, with its end time and the discharge diagnosis.
    assert feed(feeds, engine, "story-5-a03.hl7") == "AA"
    done = the_encounter(client)
    assert done["status"] == "finished"
    assert done["period"]["end"].startswith("2026-10-25T10:00:00")
    codes = {
        c["code"]["coding"][0]["code"]
        for c in search(client, "Condition", encounter=f"Encounter/{encounter['id']}")
    }
    assert codes == {"I10", "E11.9"}
    assert len(search(client, "Patient", _count=50)) == 1
    assert len(search(client, "Encounter", _count=50)) == 1

    # Every accepted message left exactly one Provenance pointing at it.
    provenances = search(client, "Provenance", _count=50)
    assert len(provenances) == 5
    # Resend of the same bytes: acknowledged, not stored or applied again.
    assert feed(feeds, engine, "story-3-oru.hl7") == "CA"
    assert len(search(client, "Provenance", _count=50)) == 5
    # The same control id with other content: refused with AE (CE in enhanced mode).
    other = (MESSAGES / "story-3-oru.hl7").read_bytes().replace(b"11.2", b"12.0")
    [answer] = send_all(feeds.port or 0, [other])
    assert ack_code(answer) == "CE"
    assert len(search(client, "Provenance", _count=50)) == 5
    statuses = [r.status for r in inbox_rows(engine)]
    assert statuses.count("applied") == 5 and statuses.count("rejected") == 1
