"""The HL7 v2 parser on the shared corpus, on Chinese text and on broken input."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.hl7v2.errors import HL7ParseError
from adapters.hl7v2.parse import Delimiters, parse, unescape

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "hl7v2"
# Files that hold several messages or only a fragment: split or refused by design.
NOT_SINGLE_MESSAGES = {"OML_O21_messages.txt", "uuencoded_escaped.txt", "uuencoded_unescaped.txt"}
# Broken upstream (the corpus README says so): MSH-2 has a doubled escape character.
BROKEN_UPSTREAM = {"sample_unix.hl7", "sample_win.hl7"}


def _well_formed() -> list[Path]:
    if not CORPUS.exists():
        return []
    files = [
        p
        for p in CORPUS.rglob("*")
        if p.is_file()
        and p.suffix not in (".md", ".json")
        and "BadInputs" not in p.parts
        and p.name not in NOT_SINGLE_MESSAGES | BROKEN_UPSTREAM
    ]
    return sorted(files)


def _bad_inputs() -> list[Path]:
    root = CORPUS / "nHapi" / "BadInputs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize("path", _well_formed(), ids=lambda p: p.name)
def test_corpus_messages_parse(path: Path) -> None:
    message = parse(path.read_bytes())
    code, _event, _ = message.message_type
    assert code
    assert message.control_id
    assert message.msh.name == "MSH"
    assert all(len(seg.name) == 3 for seg in message.segments)


@pytest.mark.parametrize("path", _bad_inputs(), ids=lambda p: "/".join(p.parts[-2:]))
def test_fuzzer_inputs_never_crash(path: Path) -> None:
    try:
        message = parse(path.read_bytes())
    except HL7ParseError as exc:
        assert exc.segment and exc.code
    else:
        assert message.message_type[0]


def test_gb18030_message_with_chinese_name() -> None:
    text = (
        "MSH|^~\\&|HIS|QSWSY|YGT_HUB|YGT|20261003083000+0800||ADT^A01^ADT_A01|Q0001|P|2.4"
        "||||||GB 18030-2000\r"
        "PID|1||QS-004512^^^QSWSY^MR||王^小明||19800101|M\r"
    )
    message = parse(text.encode("gb18030"))
    assert message.charset == "gb18030"
    pid = message.first("PID")
    assert pid is not None
    assert pid.value(5, 1) == "王"
    assert pid.value(5, 2) == "小明"
    assert pid.value(3, 4) == "QSWSY"


def test_wrong_charset_is_refused_on_msh18() -> None:
    text = (
        "MSH|^~\\&|HIS|QSWSY|YGT_HUB|YGT|20261003||ADT^A01|Q2|P|2.4||||||UNICODE UTF-8\r"
        "PID|1||X||王^小明\r"
    )
    with pytest.raises(HL7ParseError) as info:
        parse(text.encode("gb18030"))
    assert info.value.field_no == 18


def test_feed_default_charset_applies_when_msh18_is_empty() -> None:
    text = "MSH|^~\\&|HIS|QSWSY|YGT_HUB|YGT|20261003||ADT^A01|Q3|P|2.3.1\rPID|1||X||李^四\r"
    message = parse(text.encode("gb18030"), default_charset="gb18030")
    assert message.first("PID").value(5, 1) == "李"  # type: ignore[union-attr]


def test_escape_sequences() -> None:
    d = Delimiters()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f", d) == "a|b^c&d~e\\f"
    assert unescape(r"line1\.br\line2", d) == "line1\nline2"
    assert unescape("\\XE4B8AD\\", d) == "中"
    assert unescape(r"\H\bold\N\ text", d) == "bold text"


def test_custom_delimiters_and_line_endings() -> None:
    raw = b"MSH#!@$%#HIS#XRMYY#HUB#YGT#2026##ORU!R01#C9#P#2.5\nOBX#1#NM#718-7!Hgb!LN##135#g/L\n\n"
    message = parse(raw)
    obx = message.first("OBX")
    assert obx is not None
    assert obx.value(3, 1) == "718-7"
    assert obx.value(5) == "135"
    assert message.message_type[:2] == ("ORU", "R01")


@pytest.mark.parametrize(
    ("raw", "field_no"),
    [
        (b"MSH|^~\\&|A|B|C|D|2026||||P|2.5\r", 9),
        (b"MSH|^~\\&|A|B|C|D|2026||ADT^A01||P|2.5\r", 10),
        (b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|\r", 12),
    ],
)
def test_missing_header_fields_name_the_field(raw: bytes, field_no: int) -> None:
    with pytest.raises(HL7ParseError) as info:
        parse(raw)
    assert info.value.field_no == field_no
    assert info.value.code == "101"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_parse_or_refuse(raw: bytes) -> None:
    with contextlib.suppress(HL7ParseError):
        parse(b"MSH|^~\\&|" + raw)
