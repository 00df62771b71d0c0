"""Split a file or HTTP body into single HL7 v2 messages.

Accepts MLLP-framed blocks, FHS/BHS batches (their header and trailer segments are dropped),
and plain concatenations with CR, LF or blank lines between messages: every segment line that
starts with ``MSH`` followed by a non-alphanumeric separator starts a new message.  Bytes only;
the text is decoded per message, since each may name its own character set in MSH-18.
"""

from __future__ import annotations

import re

_FRAME = re.compile(rb"\x0b(.*?)\x1c\r?", re.S)
_BATCH_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")
_LINE = re.compile(rb"\r\n|\n\r|\r|\n")


def split_messages(data: bytes) -> list[bytes]:
    if b"\x0b" in data:
        return [m for m in _FRAME.findall(data) if m.strip()]
    messages: list[list[bytes]] = []
    for line in _LINE.split(data):
        if not line.strip():
            continue
        head = line.lstrip(b"\xef\xbb\xbf")[:4]
        if head[:3] in _BATCH_SEGMENTS:
            continue
        if head[:3] == b"MSH" and len(head) == 4 and not head[3:4].isalnum():
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            messages.append([line])  # junk before the first MSH: kept, it will be refused
    return [b"\r".join(parts) + b"\r" for parts in messages]
