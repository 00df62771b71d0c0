"""HL7 v2 acknowledgements: MSA with AA/AE/AR (or CA/CE/CR in enhanced mode) and ERR.

ERR is written the way the message's own version expects: ERR-1 (error code and location) for
v2.3.1 and v2.4 receivers, ERR-2/3/4 (location, HL7 table 0357 code, severity) from v2.5 on.
Built by hand rather than with hl7apy because it runs for every message on the hot path; the
tests check the result with hl7apy's parser.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from adapters.hl7v2.parse import Delimiters, Message
from adapters.hl7v2.text import msh_fields

_CST = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class ErrorDetail:
    text: str
    code: str = "207"  # HL7 table 0357; 207 = application internal error
    segment: str = ""
    sequence: int = 1
    field_no: int | None = None
    severity: str = "E"  # E error, W warning, I information


def _escape(value: str, d: Delimiters) -> str:
    # Escape the escape character first so the others are not doubled.
    out = value.replace(d.escape, f"{d.escape}E{d.escape}")
    for char, code in (
        (d.field, "F"),
        (d.component, "S"),
        (d.subcomponent, "T"),
        (d.repetition, "R"),
    ):
        out = out.replace(char, f"{d.escape}{code}{d.escape}")
    return out.replace("\r", " ").replace("\n", " ")


def _older_than_25(version: str) -> bool:
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) < (2, 5)
    except ValueError:
        return False


def build_ack(
    message: Message,
    code: str,
    *,
    errors: list[ErrorDetail] | None = None,
    control_id: str,
    now: datetime | None = None,
    sending_app: str = "YGT_HUB",
    sending_facility: str = "YGT",
) -> str:
    """The ACK for ``message`` with acknowledgment code AA/AE/AR/CA/CE/CR, as text."""
    d = message.delimiters
    fs, cs = d.field, d.component
    msh = message.msh
    stamp = (now or datetime.now(_CST)).strftime("%Y%m%d%H%M%S%z")
    _, event, _ = message.message_type
    version = message.version or "2.5"
    header = [
        "MSH",
        d.encoding_characters,
        sending_app,
        sending_facility,
        msh.raw(3),
        msh.raw(4),
        stamp,
        "",
        f"ACK{cs}{event}{cs}ACK" if event else "ACK",
        control_id,
        msh.raw(11) or "P",
        msh.raw(12) or version,
    ]
    charset = msh.raw(18)
    if charset:
        header += [""] * 5 + [charset]
    lines = [fs.join(header)]
    first_text = _escape(errors[0].text, d)[:80] if errors else ""
    lines.append(fs.join(["MSA", code, message.control_id, first_text]))
    for err in errors or []:
        lines.append(_err_segment(err, d, old=_older_than_25(version)))
    return "\r".join(lines) + "\r"


def _err_segment(err: ErrorDetail, d: Delimiters, *, old: bool) -> str:
    fs, cs, ss = d.field, d.component, d.subcomponent
    location = cs.join([err.segment, str(err.sequence), str(err.field_no or "")])
    text = _escape(err.text, d)
    if old:
        # ERR-1 (ELD): segment^sequence^field^code&text&HL70357
        return fs.join(["ERR", f"{location}{cs}{err.code}{ss}{text}{ss}HL70357"])
    return fs.join(
        ["ERR", "", location, cs.join([err.code, text, "HL70357"]), err.severity, "", "", "", text]
    )


def minimal_ack(code: str, text: str, *, control_id: str, ref_control_id: str = "") -> str:
    """An ACK for input too broken to read an MSH from: default delimiters, v2.5."""
    stamp = datetime.now(_CST).strftime("%Y%m%d%H%M%S%z")
    d = Delimiters()
    safe = _escape(text, d)[:200]
    return (
        f"MSH|^~\\&|YGT_HUB|YGT|||{stamp}||ACK|{control_id}|P|2.5\r"
        f"MSA|{code}|{ref_control_id}|{safe[:80]}\r"
        f"ERR||MSH^1^|100^{safe}^HL70357|E||||{safe}\r"
    )


def minimal_ack_for(raw: bytes, code: str, text: str) -> bytes:
    """``minimal_ack`` answering whatever control id can be read from the raw bytes' MSH."""
    header = msh_fields(raw)
    ref = header[9] if len(header) >= 10 else ""
    return minimal_ack(code, text, control_id=uuid.uuid4().hex[:20], ref_control_id=ref).encode()
