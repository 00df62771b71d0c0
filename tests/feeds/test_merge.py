"""ADT^A40 over the feed: a merge applies; its swapped echo neither undoes nor loops it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.feeds.service import FeedService
from hub.queue.worker import drain
from hub.services.audit import DCM
from tests.feeds.helpers import ack_code, inbox_rows, send_all

MRN = demo_community().members["XRMYY"].system("mrn")
HEADER = "MSH|^~\\&|HIS|XRMYY|YGT_HUB|YGT|20261022090000||{type}|{cid}|P|2.5||||||UNICODE UTF-8\r"


def admit(cid: str, mrn: str, name: str) -> bytes:
    return (
        HEADER.format(type="ADT^A04^ADT_A01", cid=cid)
        + f"EVN|A04|20261022090000\rPID|1||{mrn}^^^XRMYY^MR||{name}||19800101|F\r"
        + f"PV1|1|O|||||||||||||||||V-{cid}\r"
    ).encode()


def merge(cid: str, survivor: str, retired: str) -> bytes:
    return (
        HEADER.format(type="ADT^A40^ADT_A39", cid=cid)
        + f"EVN|A40|20261022100000\rPID|1||{survivor}^^^XRMYY^MR||刘^芳||19800101|F\r"
        + f"MRG|{retired}^^^XRMYY^MR\r"
    ).encode()


def patient(client: TestClient, mrn: str) -> dict[str, Any]:
    [entry] = client.get("/fhir/Patient", params={"identifier": f"{MRN}|{mrn}"}).json()["entry"]
    return entry["resource"]  # type: ignore[no-any-return]


def member_links(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's links between member records (the index's refer link left out)."""
    return [link for link in record.get("link", []) if link["type"] != "refer"]


def index_link(record: dict[str, Any]) -> str:
    [refer] = [link for link in record["link"] if link["type"] == "refer"]
    return str(refer["other"]["reference"])


def test_merge_and_its_swapped_echo(
    feeds: FeedService, engine: sa.Engine, client: TestClient
) -> None:
    port = feeds.port or 0
    acks = send_all(port, [admit("M1", "XR-OLD", "刘^芳"), admit("M2", "XR-NEW", "刘^芳")])
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    drain(engine)
    old, new = patient(client, "XR-OLD"), patient(client, "XR-NEW")

    [ack] = send_all(port, [merge("M3", survivor="XR-NEW", retired="XR-OLD")])
    assert ack_code(ack) == "AA"
    assert drain(engine) == {"applied": 1}
    retired, survivor = patient(client, "XR-OLD"), patient(client, "XR-NEW")
    assert retired["id"] == old["id"] and survivor["id"] == new["id"]  # nothing deleted
    assert retired["active"] is False
    assert member_links(retired) == [
        {"other": {"reference": f"Patient/{new['id']}"}, "type": "replaced-by"}
    ]
    assert survivor["active"] is True
    assert member_links(survivor) == [
        {"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}
    ]
    # Both records belong to one person in the patient index.
    assert index_link(retired) == index_link(survivor)

    # The sender echoes the merge with the identifiers swapped: acknowledged, kept, not applied.
    [ack] = send_all(port, [merge("M4", survivor="XR-OLD", retired="XR-NEW")])
    assert ack_code(ack) == "AA"
    assert drain(engine) == {"skipped": 1}
    [echo] = [r for r in inbox_rows(engine) if r.control_id == "M4"]
    assert echo.status == "skipped" and "swapped" in echo.error
    assert patient(client, "XR-OLD")["meta"] == retired["meta"]
    assert patient(client, "XR-NEW")["meta"] == survivor["meta"]

    # The same merge again (a new control id) converges: one link each way, no loop.
    [ack] = send_all(port, [merge("M5", survivor="XR-NEW", retired="XR-OLD")])
    assert drain(engine) == {"applied": 1}
    assert len(member_links(patient(client, "XR-NEW"))) == 1
    assert patient(client, "XR-OLD")["active"] is False


def test_a40_moves_what_referred_to_the_retired_record(
    feeds: FeedService, engine: sa.Engine, client: TestClient
) -> None:
    port = feeds.port or 0
    send_all(port, [admit("R1", "XR-A", "刘^芳"), admit("R2", "XR-B", "刘^芳")])
    drain(engine)
    retired = patient(client, "XR-B")
    visits = client.get("/fhir/Encounter", params={"subject": f"Patient/{retired['id']}"}).json()
    [visit] = [e["resource"]["id"] for e in visits["entry"]]
    send_all(port, [merge("R3", survivor="XR-A", retired="XR-B")])
    assert drain(engine) == {"applied": 1}
    survivor = patient(client, "XR-A")
    moved = client.get(f"/fhir/Encounter/{visit}").json()
    assert moved["subject"]["reference"] == f"Patient/{survivor['id']}"
    # The patient index's own record (type Patient Record); reads of the patient have theirs.
    record = {"entity": f"Patient/{retired['id']}", "type": f"{DCM}|110110"}
    audits = client.get("/fhir/AuditEvent", params=record).json()
    assert [e["resource"]["subtype"][0]["code"] for e in audits["entry"]] == ["merge"]


def link_message(cid: str, event: str, first: str, second: str) -> bytes:
    structure = "ADT_A24" if event == "A24" else "ADT_A37"
    return (
        HEADER.format(type=f"ADT^{event}^{structure}", cid=cid)
        + f"EVN|{event}|20261022100000\r"
        + f"PID|1||{first}^^^XRMYY^MR||陈^晨||19800315|M\r"
        + f"PID|2||{second}^^^XRMYY^MR||陈^晨||19800315|M\r"
    ).encode()


def test_a37_unlinks_and_a24_links_two_records(
    feeds: FeedService, engine: sa.Engine, client: TestClient
) -> None:
    port = feeds.port or 0
    [ack] = send_all(port, [link_message("L1", "A24", "XR-C1", "XR-C2")])
    assert ack_code(ack) == "AA"
    assert drain(engine) == {"applied": 1}
    one, two = patient(client, "XR-C1"), patient(client, "XR-C2")
    assert index_link(one) == index_link(two)
    [ack] = send_all(port, [link_message("L2", "A37", "XR-C1", "XR-C2")])
    assert ack_code(ack) == "AA"
    assert drain(engine) == {"applied": 1}
    one, two = patient(client, "XR-C1"), patient(client, "XR-C2")
    assert index_link(one) != index_link(two)
    subtypes = {
        e["resource"]["subtype"][0]["code"]
        for e in client.get(
            "/fhir/AuditEvent", params={"entity": f"Patient/{one['id']}", "type": f"{DCM}|110110"}
        ).json()["entry"]
    }
    assert subtypes == {"link", "unlink"}
    # One PID only: refused with a clear answer, kept for replay.
    bad = HEADER.format(type="ADT^A37^ADT_A37", cid="L3") + "EVN|A37\rPID|1||XR-C1^^^XRMYY^MR\r"
    [ack] = send_all(port, [bad.encode()])
    assert ack_code(ack) in ("AE", "AR") and b"ERR|" in ack
