"""Random OBX-5 values: text never breaks the mapper; numbers map or fail as MappingError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.feeds.config import demo_community
from adapters.hl7v2.datatypes import ts_to_fhir
from adapters.hl7v2.mapped import Mapped, MappingError
from adapters.hl7v2.messages import map_message
from adapters.hl7v2.parse import parse_text
from hub.fhir.validation import validate_resource

_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x1c\x0b"),
    max_size=80,
)


def _oru(value_type: str, value: str, reference_range: str = "") -> Mapped:
    # Text inside a field cannot hold a raw field separator: a sender escapes it (\F\), else
    # "|||" would shift OBX-11 into OBX-14 and the test would be about another field.
    value, reference_range = (t.replace("|", "\\F\\") for t in (value, reference_range))
    text = "\r".join(
        [
            "MSH|^~\\&|LIS|XJYZX|YGT_HUB|YGT|20261002103000||ORU^R01^ORU_R01|F1|P|2.5.1",
            "PID|1||XR0001^^^XRMYY^MR||张三",
            "OBR|1|P1^XRMYY|F1^XJYZX|CBC^血常规^L|||20261002080000||||||||||||||||||F",
            f"OBX|1|{value_type}|WBC^白细胞计数^L||{value}|10*9/L^^UCUM|{reference_range}||||F",
        ]
    )
    return map_message(
        parse_text(text + "\r"),
        demo_community(),
        source_ref="inbox/fuzz",
        received_at="2026-10-02T10:30:00+08:00",
    )


@settings(max_examples=150, deadline=None)
@given(_TEXT)
def test_any_text_in_st_maps(value: str) -> None:
    mapped = _oru("ST", value)
    for entry in mapped.bundle["entry"]:
        validate_resource(entry["resource"])


@settings(max_examples=150, deadline=None)
@given(st.one_of(_TEXT, st.from_regex(r"\A[<>]?=?-?\d{0,4}(\.\d{0,3})?\Z")))
def test_any_nm_maps_or_is_a_mapping_error(value: str) -> None:
    try:
        mapped = _oru("NM", value)
    except MappingError as exc:
        assert (exc.segment, exc.field_no, exc.code) == ("OBX", 5, "102")
        return
    for entry in mapped.bundle["entry"]:
        validate_resource(entry["resource"])


@settings(max_examples=100, deadline=None)
@given(_TEXT, _TEXT)
def test_any_sn_and_range_map_or_are_mapping_errors(value: str, reference_range: str) -> None:
    try:
        mapped = _oru("SN", value, reference_range)
    except MappingError as exc:
        assert exc.code in ("102", "101")
        return
    for entry in mapped.bundle["entry"]:
        validate_resource(entry["resource"])


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A\d{4,14}(\.\d{1,4})?([+-]\d{4})?\Z"))
def test_timestamps_convert_or_raise_value_error(text: str) -> None:
    from datetime import timedelta, timezone

    try:
        value = ts_to_fhir(text, timezone(timedelta(hours=8)))
    except ValueError:
        return
    assert value is not None and value[:4] == text[:4]
