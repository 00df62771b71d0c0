"""Errors met while reading an HL7 v2 message, with what the ACK's ERR segment reports."""

from __future__ import annotations

# HL7 table 0357 (message error condition codes) used in ERR-3.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
UNKNOWN_KEY_IDENTIFIER = "204"
DUPLICATE_KEY_IDENTIFIER = "205"
APPLICATION_INTERNAL_ERROR = "207"


class HL7ParseError(ValueError):
    """The message cannot be read; the location is what ERR-2 reports."""

    def __init__(
        self,
        message: str,
        *,
        segment: str = "MSH",
        sequence: int = 1,
        field_no: int | None = None,
        code: str = SEGMENT_SEQUENCE_ERROR,
    ) -> None:
        super().__init__(message)
        self.segment = segment
        self.sequence = sequence
        self.field_no = field_no
        self.code = code


class CharsetError(HL7ParseError):
    """The bytes are not in the character set MSH-18 (or the feed's default) names."""

    def __init__(self, message: str) -> None:
        super().__init__(message, segment="MSH", field_no=18, code=DATA_TYPE_ERROR)
