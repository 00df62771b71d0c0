"""A mapped resource that is not valid FHIR is answered AE at intake, not AA then failed later.

The worker then trusts the intake's check (the Bundle is tagged) and does not run the R4
models again; a Bundle without the tag (a row written by an older hub) is still checked.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa

from adapters.feeds.config import demo_community
from hub.feeds.service import FeedService
from hub.queue.intake import inbox_row, read_and_map
from hub.queue.mapped_check import is_validated
from hub.queue.worker import drain
from hub.store.schema import inbox
from tests.feeds.helpers import ack_of, inbox_rows, send_all
from tests.store_counts import live_count

HEADER = "MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261023083000+0800||ORU^R01^ORU_R01|{cid}|P|2.5.1"


def _oru(cid: str, obx_code: str) -> bytes:
    return (
        f"{HEADER.format(cid=cid)}\r"
        "PID|1||MV0001^^^XRMYY^MR||王^芳||19800101|F\r"
        "OBR|1|MV-P1^XRMYY|MV-F1^XJYZX|CBC^血常规^L|||20261023080000"
        "|||||||||||||||20261023083000|||F\r"
        f"OBX|1|NM|{obx_code}^白细胞计数^L||6.1|10*9/L|3.5-9.5|N|||F\r"
    ).encode()


def test_a_resource_fhir_refuses_is_answered_ae_naming_its_segment_and_kept(
    feeds: FeedService, engine: sa.Engine
) -> None:
    # A local code with two spaces inside: FHIR's code type takes single spaces only.
    [answer] = send_all(feeds.port or 0, [_oru("MV1", "W  BC")])
    ack = ack_of(answer)
    assert ack.first("MSA").value(1) == "AE"  # type: ignore[union-attr]
    err = ack.first("ERR")
    assert err is not None
    assert (err.value(2, 1), err.value(2, 2), err.value(3, 1)) == ("OBX", "1", "102")
    [row] = inbox_rows(engine)
    assert row.status == "rejected" and row.bundle is None
    assert "Observation.code.coding[0].code" in row.error
    assert row.raw == _oru("MV1", "W  BC")
    assert drain(engine) == {}
    assert live_count(engine, "Observation") == 0


def test_an_accepted_bundle_is_tagged_and_applied(feeds: FeedService, engine: sa.Engine) -> None:
    [answer] = send_all(feeds.port or 0, [_oru("MV2", "WBC")])
    assert ack_of(answer).first("MSA").value(1) == "AA"  # type: ignore[union-attr]
    [row] = inbox_rows(engine)
    assert is_validated(orjson.loads(row.bundle))
    assert drain(engine) == {"applied": 1}
    assert live_count(engine, "Observation") == 1


def test_an_untagged_bundle_is_still_validated_by_the_worker(
    engine: sa.Engine, clean_db: None
) -> None:
    community = demo_community()
    good = _oru("MV3", "WBC")
    message, mapped = read_and_map(good, community, "XJYZX")
    bundle = mapped.bundle
    bundle.pop("meta")  # as an older hub stored it
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Observation":
            entry["resource"]["code"]["coding"][0]["code"] = "W  BC"
    mapped.bundle = bundle
    row = inbox_row(
        good,
        transport="test",
        peer=None,
        sender="XJYZX",
        application="LIS",
        control_id=message.control_id,
        message_type="ORU^R01^ORU_R01",
        mapped=mapped,
    )
    with engine.begin() as conn:
        conn.execute(sa.insert(inbox), row)
    assert drain(engine) == {"failed": 1}
    [stored] = inbox_rows(engine)
    assert "resource.code.coding[0].code" in stored.error
    assert live_count(engine, "Observation") == 0
