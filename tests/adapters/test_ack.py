"""ACKs as the sender's version expects them, readable by hl7apy."""

from __future__ import annotations

from hl7apy.parser import parse_message

from adapters.hl7v2.ack import ErrorDetail, build_ack, minimal_ack
from adapters.hl7v2.parse import parse

ORU_25 = (
    "MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261003083000+0800||ORU^R01^ORU_R01|L0001|P|2.5"
    "||||||UNICODE UTF-8\r"
    "PID|1||ZY0099123^^^XRMYY^MR||张^三\r"
    "OBX|1|NM|718-7^血红蛋白^LN||abc|g/L\r"
)
ADT_231 = "MSH|^~\\&|HIS|QSWSY|YGT_HUB|YGT|20261003||ADT^A01|Q0001|P|2.3.1\rPID|1||QS-004512\r"


def test_error_ack_v25_has_err_2_3_4() -> None:
    message = parse(ORU_25.encode())
    error = ErrorDetail(
        "OBX-5 'abc' is not numeric | for NM", code="102", segment="OBX", sequence=3, field_no=5
    )
    ack = build_ack(message, "AE", errors=[error], control_id="A1")
    parsed = parse_message(ack, find_groups=False)
    assert parsed.msh.msh_9.to_er7() == "ACK^R01^ACK"
    assert parsed.msh.msh_5.to_er7() == "LIS"  # answered to the sender
    assert parsed.msh.msh_18.to_er7() == "UNICODE UTF-8"
    assert parsed.msa.msa_1.to_er7() == "AE"
    assert parsed.msa.msa_2.to_er7() == "L0001"
    err = ack.split("\r")[2].split("|")
    assert err[2] == "OBX^3^5"
    assert err[3].startswith("102^") and err[3].endswith("^HL70357")
    assert err[4] == "E"
    assert "\\F\\" in err[3]  # the field separator in the text is escaped


def test_error_ack_v231_uses_err_1() -> None:
    message = parse(ADT_231.encode())
    ack = build_ack(
        message,
        "AR",
        errors=[ErrorDetail("unknown sender", code="204", segment="MSH", field_no=4)],
        control_id="A2",
    )
    err = ack.split("\r")[2].split("|")
    assert err[1].startswith("MSH^1^4^204&unknown sender&HL70357")
    assert parse_message(ack, find_groups=False).msa.msa_1.to_er7() == "AR"


def test_accept_ack_and_minimal_ack() -> None:
    ok = build_ack(parse(ADT_231.encode()), "AA", control_id="A3")
    assert ok.split("\r")[1] == "MSA|AA|Q0001|"
    broken = minimal_ack("AR", "no MSH segment", control_id="A4")
    assert parse_message(broken, find_groups=False).msa.msa_1.to_er7() == "AR"
