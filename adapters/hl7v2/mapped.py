"""The result of mapping one HL7 v2 message, and the context the segment mappers share.

``Context`` collects the transaction Bundle's entries.  Its fullUrls are uuid5 of the message
control id and the entry's index, so mapping the same message twice gives the same JSON; the
resources themselves are found by identifier (conditional PUT, or POST with ifNoneExist), never
by ids derived from content, so resends, corrections and late arrivals converge.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from adapters.feeds.config import Community, Member
from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.ack import ErrorDetail
from adapters.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
    HL7ParseError,
)
from adapters.hl7v2.parse import Message, Segment

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ygt.example.org/fhir/hl7v2-mapping")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def uuid5_text(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without building a UUID object (RFC 4122 §4.3:
    SHA-1 of namespace and name, version and variant bits set): a lab message names nine
    entries, and the UUID class's checks cost more than the hash."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class MappingError(HL7ParseError):
    """The message was read but cannot be mapped; ``reject`` True → AR, False → AE."""

    def __init__(self, message: str, *, reject: bool = False, **where: Any) -> None:
        # ``where``: segment, sequence, field_no and code, as HL7ParseError takes them; a
        # mapping problem defaults to "required field missing" rather than a parse error.
        where.setdefault("code", REQUIRED_FIELD_MISSING)
        super().__init__(message, **where)
        self.reject = reject


@dataclass
class Mapped:
    bundle: dict[str, Any]  # FHIR R4 Bundle, type "transaction"
    patient_key: str | None  # "system|value" of the message's patient; None when none
    warnings: list[ErrorDetail]  # severity "W"
    unmapped_codes: list[str]  # "member|local code" without a standard mapping


@dataclass
class Context:
    message: Message
    community: Community
    sender: Member
    source_ref: str
    received_at: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[ErrorDetail] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    # Conditional key ("Practitioner?identifier=...") → fullUrl: one entry per resource.
    _by_key: dict[str, str] = field(default_factory=dict)
    _count: int = 0

    # -- locations in the message, errors and warnings --

    def seq(self, seg: Segment) -> int:
        """The segment's 1-based position in the message (what ERR-2 reports)."""
        for i, s in enumerate(self.message.segments, start=1):
            if s is seg:
                return i
        return 1

    def error(
        self, seg: Segment, field_no: int | None, text: str, code: str = DATA_TYPE_ERROR
    ) -> MappingError:
        where = f"{seg.name}-{field_no}" if field_no else seg.name
        return MappingError(
            f"{where}: {text}",
            segment=seg.name,
            sequence=self.seq(seg),
            field_no=field_no,
            code=code,
        )

    def warn(self, seg: Segment, field_no: int | None, text: str, code: str) -> None:
        self.warnings.append(
            ErrorDetail(
                text=text,
                code=code,
                segment=seg.name,
                sequence=self.seq(seg),
                field_no=field_no,
                severity="W",
            )
        )

    # -- typed field access that reports where a value is wrong --

    def ts(self, seg: Segment, n: int, *, instant: bool = False) -> str | None:
        try:
            return dt.ts_to_fhir(seg.value(n), self.community.tz, instant=instant)
        except ValueError as exc:
            raise self.error(seg, n, str(exc)) from exc

    def date(self, seg: Segment, n: int) -> str | None:
        try:
            return dt.ts_to_date(seg.value(n), self.community.tz)
        except ValueError as exc:
            raise self.error(seg, n, str(exc)) from exc

    def cwe(self, seg: Segment, n: int, rep: int = 0) -> dict[str, Any] | None:
        return dt.cwe(seg, n, self.sender.local_code_system, rep)

    def test_code(self, seg: Segment, n: int) -> dict[str, Any] | None:
        """A test or observation code: the local coding kept, the standard one added.

        A local code without a standard mapping is recorded (and warned about), never refused:
        results must not be lost for want of a ConceptMap row.
        """
        concept = self.cwe(seg, n)
        if concept is None:
            return None
        codings = concept.get("coding", [])
        local = self.sender.local_code_system
        if any(c.get("system") == "http://loinc.org" for c in codings):
            return concept
        for coding in codings:
            if coding.get("system") != local:
                continue
            standard = self.community.standard_coding(self.sender.code, coding["code"])
            if standard is not None:
                codings.append(standard.as_fhir())
                return concept
        first_local = next((c["code"] for c in codings if c.get("system") == local), None)
        if first_local is not None:
            key = f"{self.sender.code}|{first_local}"
            if key not in self.unmapped:
                self.unmapped.append(key)
                self.warn(
                    seg,
                    n,
                    f"local code {first_local!r} of {self.sender.code} has no standard mapping",
                    TABLE_VALUE_NOT_FOUND,
                )
        return concept

    # -- entries --

    def full_url(self) -> str:
        """A new entry's fullUrl: uuid5 of the control id and the entry's index (pure)."""
        self._count += 1
        name = f"{self.message.control_id}#{self._count}"
        return f"urn:uuid:{uuid5_text(name)}"

    def add(
        self, resource: dict[str, Any], request: dict[str, str], full_url: str | None = None
    ) -> str:
        url = full_url or self.full_url()
        self.entries.append({"fullUrl": url, "resource": resource, "request": request})
        return url

    def put(
        self, resource: dict[str, Any], system: str, value: str, full_url: str | None = None
    ) -> str:
        """Conditional update by identifier: creates or replaces the one matching resource."""
        rtype = resource["resourceType"]
        key = f"{rtype}?{dt.identifier_query(system, value)}"
        if key in self._by_key:
            return self._by_key[key]
        url = self.add(resource, {"method": "PUT", "url": key}, full_url)
        self._by_key[key] = url
        return url

    def post_if_none(self, resource: dict[str, Any], system: str, value: str) -> str:
        """Conditional create: never overwrites what a richer message already wrote."""
        rtype = resource["resourceType"]
        query = dt.identifier_query(system, value)
        key = f"{rtype}?{query}"
        if key in self._by_key:
            return self._by_key[key]
        url = self.add(resource, {"method": "POST", "url": rtype, "ifNoneExist": query})
        self._by_key[key] = url
        return url

    def write(self, resource: dict[str, Any], system: str, value: str, *, update: bool) -> str:
        return (
            self.put(resource, system, value)
            if update
            else self.post_if_none(resource, system, value)
        )
