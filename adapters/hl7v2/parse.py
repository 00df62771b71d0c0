"""HL7 v2 text → segments and fields: a fast, strict, pure parser.

hl7apy's full ``parse_message`` validates structure against the standard and takes ~20 ms for
an ORU; the hub needs microseconds on its hot path, so this parser only splits text by the
message's own delimiters and decodes escapes lazily, on access.  Meaning (which field is what)
belongs to the mappers.  Errors carry the segment, field and HL7 table 0357 code that the ACK's
ERR segment reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from adapters.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    HL7ParseError,
)
from adapters.hl7v2.text import decode_message

_FORMATTING = (".sp", ".in", ".ti", ".fi", ".nf", ".ce", ".sk")
_SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_LINE_BREAKS = re.compile(r"\r\n|\n\r|\r|\n")


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


@dataclass
class Segment:
    name: str
    # fields[n] is field n (HL7 numbering); for MSH fields[1] is the field separator itself.
    fields: list[str]
    delimiters: Delimiters = field(repr=False, default_factory=Delimiters)

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[str]:
        raw = self.raw(n)
        if not raw:
            return []
        if self.name == "MSH" and n <= 2:
            return [raw]
        return raw.split(self.delimiters.repetition)

    def components(self, n: int, rep: int = 0) -> list[str]:
        reps = self.repetitions(n)
        if rep >= len(reps):
            return []
        return reps[rep].split(self.delimiters.component)

    def value(self, n: int, component: int = 1, sub: int = 1, rep: int = 0) -> str:
        """One decoded leaf value (1-based component and subcomponent), '' when absent."""
        # The mappers read ~200 leaves a message (the hottest function of the intake): each
        # level is split only when its delimiter occurs (most fields hold one plain value).
        fields = self.fields
        raw = fields[n] if n < len(fields) else ""
        if not raw:
            return ""
        if n <= 2 and self.name == "MSH":
            return raw
        d = self.delimiters
        for separator, at in (
            (d.repetition, rep),
            (d.component, component - 1),
            (d.subcomponent, sub - 1),
        ):
            if separator in raw:
                parts = raw.split(separator)
                if at >= len(parts):
                    return ""
                raw = parts[at]
            elif at != 0:
                return ""
        return unescape(raw, d) if d.escape and d.escape in raw else raw


@dataclass
class Message:
    segments: list[Segment]
    delimiters: Delimiters
    charset: str

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [seg for seg in self.segments if seg.name == name]

    # Read once: the mappers ask for these a dozen times a message.
    @cached_property
    def message_type(self) -> tuple[str, str, str]:
        """(MSH-9.1 code, MSH-9.2 trigger event, MSH-9.3 structure)."""
        msh = self.msh
        return (msh.value(9, 1), msh.value(9, 2), msh.value(9, 3))

    @cached_property
    def control_id(self) -> str:
        return self.msh.value(10)

    @cached_property
    def version(self) -> str:
        return self.msh.value(12, 1)


def _escape_table(d: Delimiters) -> dict[str, str]:
    return {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        "P": d.truncation,
        ".br": "\n",
        "H": "",  # start/end highlighting: no meaning in FHIR text
        "N": "",
    }


def unescape(text: str, d: Delimiters) -> str:
    """Decode HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ \\.br\\ ...)."""
    esc = d.escape
    if not esc or esc not in text:
        return text
    table = _escape_table(d)
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        end = text.find(esc, i + 1) if ch == esc else -1
        if ch != esc or end == -1:
            out.append(ch)
            i += 1
            continue
        code = text[i + 1 : end]
        if code in table:
            out.append(table[code])
        elif code[:1] == "X" and len(code) > 1 and len(code) % 2 == 1:
            try:
                out.append(bytes.fromhex(code[1:]).decode("utf-8", errors="replace"))
            except ValueError:
                out.append(text[i : end + 1])
        elif code[:1] in ("C", "M", "Z") or code.startswith(_FORMATTING):
            # Character-set switches and formatting commands: dropped (the text stays readable).
            out.append("\n" if code.startswith(".sp") else "")
        else:
            out.append(text[i : end + 1])
        i = end + 1
    return "".join(out)


def _delimiters(msh_line: str) -> Delimiters:
    if len(msh_line) < 8 or not msh_line.startswith("MSH"):
        raise HL7ParseError("the message does not start with an MSH segment", field_no=None)
    fs = msh_line[3]
    if fs.isalnum() or fs in " \r\n":
        raise HL7ParseError("MSH-1 (field separator) is not a usable character", field_no=1)
    end = msh_line.find(fs, 4)
    enc = msh_line[4:end] if end != -1 else msh_line[4:]
    if len(enc) < 4 or len(set(enc + fs)) != len(enc) + 1 or any(c.isalnum() for c in enc):
        raise HL7ParseError(
            f"MSH-2 (encoding characters) {enc!r} is not valid", field_no=2, code=DATA_TYPE_ERROR
        )
    return Delimiters(fs, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) > 4 else "")


def split_segments(text: str) -> list[str]:
    """Segment lines: CR, LF or CRLF endings; blank lines and trailing whitespace ignored."""
    return [line.rstrip() for line in _LINE_BREAKS.split(text) if line.strip()]


def parse_text(text: str, charset: str = "utf-8") -> Message:
    text = text.lstrip("\ufeff\x00 \t\r\n")
    lines = split_segments(text)
    if not lines:
        raise HL7ParseError("the message is empty")
    delimiters = _delimiters(lines[0])
    segments: list[Segment] = []
    for index, line in enumerate(lines, start=1):
        name = line[:3]
        if not _SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != delimiters.field):
            raise HL7ParseError(
                f"line {index} is not a segment: {line[:12]!r}",
                segment=name if _SEGMENT_NAME.match(name) else "MSH",
                sequence=index,
            )
        if name == "MSH":
            if index != 1:
                # A second MSH means two messages were sent as one.
                raise HL7ParseError("a second MSH segment inside one message", sequence=index)
            parts = line.split(delimiters.field)
            fields = ["MSH", delimiters.field, *parts[1:]]
        else:
            fields = line.split(delimiters.field)
        segments.append(Segment(name, fields, delimiters))
    message = Message(segments, delimiters, charset)
    _check_header(message)
    return message


def _check_header(message: Message) -> None:
    code, event, _ = message.message_type
    if not code:
        raise HL7ParseError(
            "MSH-9 (message type) is empty", field_no=9, code=REQUIRED_FIELD_MISSING
        )
    if not message.control_id:
        raise HL7ParseError(
            "MSH-10 (message control id) is empty", field_no=10, code=REQUIRED_FIELD_MISSING
        )
    if not message.version:
        raise HL7ParseError(
            "MSH-12 (version id) is empty", field_no=12, code=REQUIRED_FIELD_MISSING
        )
    del event


def parse(raw: bytes, default_charset: str = "utf-8") -> Message:
    """Bytes as received → Message; the character set comes from MSH-18 or the feed default."""
    text, charset = decode_message(raw, default_charset)
    return parse_text(text, charset)


def parse_header(raw: bytes, charset: str = "utf-8") -> Message | None:
    """The MSH segment alone, as a message: enough to answer a message whose body cannot be
    read (or to acknowledge a stored one); None when not even MSH can be read."""
    start = raw.find(b"MSH")
    if start == -1:
        return None
    ends = [p for p in (raw.find(b"\r", start), raw.find(b"\n", start)) if p != -1]
    try:
        return parse(raw[start : min(ends)] if ends else raw[start:], charset)
    except HL7ParseError:
        return None
