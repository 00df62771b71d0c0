"""Hypothesis against intake: whatever arrives, an ACK goes back and the bytes are kept."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.feeds.config import demo_community
from adapters.hl7v2.parse import parse
from hub.queue.intake import receive
from hub.store.schema import inbox

HEADER = "MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261021100000||ORU^R01^ORU_R01|{cid}|P|2.5.1"
SEGMENTS = st.sampled_from(
    [
        "PID|1||ZY1^^^XRMYY^MR||张^三||19600315|M",
        "PID|1||",
        "ORC|RE|XR1^XRMYY|L1^XJYZX",
        "OBR|1|XR1^XRMYY|L1^XJYZX|CBC^血常规^L|||20261021080000",
        "OBR|1|||",
        "OBX|1|NM|WBC^白细胞计数^L||11.2|10*9/L^^UCUM|3.5-9.5|H|||F",
        "OBX|1|NM|WBC^^L||abc|||||F",
        "OBX|1|ST|NOTE^^L||\\T\\ \\X41\\ \\.br\\||||||F",
        "OBX|1|ZZ|X||1",
        "NTE|1||备注",
        "PV1|1|I|NK^12^01||||||||||||||||V1^^^XRMYY",
        "DG1|1||I10^高血压^ICD10|||A",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.lists(st.one_of(SEGMENTS, st.text(max_size=40)), max_size=8),
    noise=st.binary(max_size=20),
    cid=st.text(alphabet="ABC123", min_size=1, max_size=6),
)
def test_any_message_is_answered_and_kept(
    engine: sa.Engine, clean_db: None, body: list[str], noise: bytes, cid: str
) -> None:
    raw = ("\r".join([HEADER.format(cid=cid), *body]) + "\r").encode("utf-8") + noise
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(inbox)).scalar_one()
    receipt = receive(engine, raw, demo_community(), transport="test")
    assert receipt.ack is not None
    ack = parse(receipt.ack)
    msa = ack.first("MSA")
    assert msa is not None and msa.value(1) in ("AA", "AE", "AR")
    if msa.value(1) != "AA":
        assert ack.first("ERR") is not None
    with engine.connect() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(inbox)).scalar_one()
    # Kept, unless it was a resend of bytes already kept under this control id.
    assert after == before + 1 or receipt.status == "duplicate"


def test_log_lines_name_the_place_not_the_data() -> None:
    from adapters.logsafe import describe

    try:
        raise ValueError("PID-5 张三 330521196003150012")
    except ValueError as exc:
        text = describe(exc)
    assert text.startswith("ValueError at ") and "test_intake_fuzz.py" in text
    assert "张三" not in text and "3305" not in text
