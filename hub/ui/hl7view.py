"""A stored message laid out for people: its text, one row per segment, fields numbered.

Pure and forgiving: the message may be the very one the parser refused, so nothing here
raises; what cannot be decoded is shown with replacement characters, and a message that is
not HL7 v2 at all (a SQL feed's rows are stored as JSON) is shown as text with no segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from adapters.hl7v2.errors import CharsetError
from adapters.hl7v2.parse import split_segments
from adapters.hl7v2.text import CHARSETS, decode_message

_SEGMENT = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# Where an error names a place: "OBX-5", "PID-3.1", "segment OBX field 5" (the ERR texts).
_PLACE = re.compile(r"\b([A-Z][A-Z0-9]{2})-(\d{1,3})\b")


@dataclass
class Field:
    number: int
    value: str
    flagged: bool = False


@dataclass
class SegmentRow:
    index: int
    name: str
    fields: list[Field] = field(default_factory=list)
    flagged: bool = False


@dataclass
class Laid:
    text: str
    charset: str
    segments: list[SegmentRow]


def decode(raw: bytes, default_charset: str) -> tuple[str, str]:
    """Text and the codec used: MSH-18, else the member's default, else UTF-8 with
    replacements (a message refused for its bytes must still be shown)."""
    codec = CHARSETS.get(default_charset.upper(), default_charset.lower())
    try:
        return decode_message(raw, codec)
    except (CharsetError, LookupError, ValueError):
        return raw.decode("utf-8", errors="replace"), "utf-8 (replaced)"


def places(error: str | None) -> set[tuple[str, int]]:
    """The segment-field places an error text names, to flag them in the layout."""
    return {(m.group(1), int(m.group(2))) for m in _PLACE.finditer(error or "")}


def lay_out(raw: bytes, default_charset: str, error: str | None = None) -> Laid:
    text, charset = decode(raw, default_charset)
    stripped = text.lstrip("\ufeff\x00 \t\r\n")
    if not stripped.startswith("MSH") or len(stripped) < 4:
        return Laid(_pretty_if_json(text), charset, [])
    separator = stripped[3]
    flagged = places(error)
    rows: list[SegmentRow] = []
    for index, line in enumerate(split_segments(stripped), start=1):
        name = line[:3]
        if not _SEGMENT.match(name):
            rows.append(SegmentRow(index, "?", [Field(0, line)], flagged=True))
            continue
        parts = line.split(separator)
        # MSH-1 is the separator itself, so MSH-2 is the first part after it.
        values = [separator, *parts[1:]] if name == "MSH" else parts[1:]
        row = SegmentRow(index, name)
        for number, value in enumerate(values, start=1):
            mark = (name, number) in flagged
            if value or mark:
                row.fields.append(Field(number, value, mark))
            row.flagged = row.flagged or mark
        rows.append(row)
    return Laid(text, charset, rows)


def _pretty_if_json(text: str) -> str:
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text
