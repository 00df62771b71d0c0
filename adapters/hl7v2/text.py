"""Bytes → text for HL7 v2: the character set named in MSH-18, else the feed's default.

Chinese vendors send UTF-8 or GB18030/GBK; MSH-18 says which when it is filled.  MSH is ASCII in
every one of these encodings, so it can be read before the body is decoded.
"""

from __future__ import annotations

from adapters.hl7v2.errors import CharsetError

# HL7 table 0211 names → Python codecs.  GB 18030 is a superset of GBK and GB2312.
CHARSETS: dict[str, str] = {
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UTF-8": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "CNS 11643-1992": "big5",
    "BIG-5": "big5",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-16": "utf-16",
}


def msh_fields(raw: bytes) -> list[str]:
    """The MSH segment's fields from the raw bytes, before decoding (MSH is ASCII).

    ``fields[n - 1]`` is MSH-n for n >= 2 (``fields[0]`` is "MSH"); [] when there is no MSH.
    Non-ASCII bytes are replaced: this is for routing (sender, control id), not for content.
    """
    start = raw.find(b"MSH")
    if start == -1 or len(raw) < start + 5:
        return []
    end = len(raw)
    for terminator in (b"\r", b"\n"):
        pos = raw.find(terminator, start)
        if pos != -1:
            end = min(end, pos)
    line = raw[start:end]
    sep = line[3:4]
    if not sep:  # "MSH" and a line end: no field separator, so no fields (found by fuzzing)
        return []
    return [f.decode("ascii", errors="replace") for f in line.split(sep)]


def _msh18(raw: bytes) -> str:
    fields = msh_fields(raw)
    # fields[0] is "MSH", fields[1] the encoding characters (MSH-2), so MSH-n is fields[n-1].
    if len(fields) < 18:
        return ""
    return fields[17].split("~")[0].strip()


def decode_message(raw: bytes, default_charset: str = "utf-8") -> tuple[str, str]:
    """Decode a message; returns (text, python codec used).

    A BOM wins over everything (it cannot lie); then MSH-18; then the feed's default.  Bytes
    that do not decode are an error (AR with ERR), never silently replaced: a replaced
    character in a patient's name is worse than a refused message.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        return _decode(raw[3:], "utf-8", "BOM"), "utf-8"
    named = _msh18(raw)
    codec = default_charset
    if named:
        codec = CHARSETS.get(named.upper(), "")
        if not codec:
            raise CharsetError(f"MSH-18 character set {named!r} is not supported")
    if codec == "ascii":
        # Many senders say ASCII and send UTF-8; UTF-8 is a superset, so accept it.
        codec = "utf-8"
    return _decode(raw, codec, named or "the feed default"), codec


def _decode(raw: bytes, codec: str, source: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise CharsetError(
            f"the message is not valid {codec} (from {source}) at byte {exc.start}"
        ) from exc
    except LookupError as exc:
        raise CharsetError(f"unknown character set {codec!r}") from exc
