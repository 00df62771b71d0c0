"""HL7 v2 data types → FHIR data types (TS/DTM, XPN, XAD, XTN, CWE, NM), per the V2-to-FHIR
guide's datatype maps.  Pure functions over decoded strings and ``Segment`` fields; errors are
raised as ``ValueError`` and turned into MappingError (with segment and field) by the caller.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from adapters.hl7v2.parse import Segment, unescape

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?([+-]\d{4})?$")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_DIVISION = re.compile(r"^\d{6}(\d{6})?$")
# What quote(..., safe="|:/") leaves as it is: unreserved characters and the safe ones.
_URL_PLAIN = re.compile(r"[A-Za-z0-9_.~|:/-]*")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 端木 西门 南宫"
    " 独孤 百里 呼延".split()
)
DIVISION_EXT = "https://ygt.example.org/fhir/StructureDefinition/division-code"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
# CWE-3 name-of-coding-system → FHIR system (HL7 table 0396 names seen in the field).
CODE_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "UCUM": "http://unitsofmeasure.org",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
}


# -- times -------------------------------------------------------------------------------


def _offset(text: str | None, tz: timezone) -> str:
    if not text:
        delta = tz.utcoffset(None) or timedelta(0)
        minutes = int(delta.total_seconds() // 60)
        sign = "-" if minutes < 0 else "+"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    hours, mins = int(text[1:3]), int(text[3:5])
    if hours > 14 or mins > 59:
        raise ValueError(f"time zone {text!r} is out of range")
    return f"{text[0]}{text[1:3]}:{text[3:5]}"


def ts_to_fhir(text: str, tz: timezone, *, instant: bool = False) -> str | None:
    """TS/DTM ``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`` → FHIR dateTime (or instant).

    Keeps the precision FHIR allows: a date stays a date; a time gets seconds (FHIR requires
    them) and the sender's offset, else the community's (+08:00).  An instant needs a time, so
    a date-only value becomes midnight local time.
    """
    text = text.strip()
    if not text:
        return None
    m = _TS.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an HL7 date/time")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    datetime(  # checks the calendar (Feb 30, hour 25 ...)
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0) if second != "60" else 59,
    )
    if int(year) < 1:
        raise ValueError(f"{text!r}: year 0000 is not a date")
    if hour is None and not instant:
        return "-".join(p for p in (year, month, day) if p)
    time = f"{hour or '00'}:{minute or '00'}:{second or '00'}{frac or ''}"
    return f"{year}-{month or '01'}-{day or '01'}T{time}{_offset(zone, tz)}"


def ts_to_date(text: str, tz: timezone) -> str | None:
    """TS → FHIR date (birthDate): the date part only."""
    value = ts_to_fhir(text, tz)
    return value[:10] if value else None


# -- names -------------------------------------------------------------------------------

_NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "A": "nickname", "N": "nickname"}


def is_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def split_chinese_name(full: str) -> tuple[str, str]:
    """(family, given) of a Chinese full name; compound surnames (欧阳 ...) stay whole."""
    full = "".join(full.split())
    if len(full) >= 2 and full[:2] in COMPOUND_SURNAMES:
        return full[:2], full[2:]
    return full[:1], full[1:]


def xpn(seg: Segment, n: int, rep: int = 0, offset: int = 0) -> dict[str, Any] | None:
    """XPN → HumanName; a Chinese full name in XPN.1 alone is split into family and given.

    ``offset`` 1 reads the name inside an XCN (XCN.2 family, XCN.3 given ...).
    """

    def part(i: int) -> str:
        return seg.value(n, i + offset, rep=rep).strip()

    family = part(1)
    given = [g for g in (part(2), part(3)) if g]
    if not family and not given:
        return None
    name: dict[str, Any] = {}
    use = None if offset else _NAME_USE.get(part(7))
    if use:
        name["use"] = use
    if not given and is_cjk(family):
        family, first = split_chinese_name(family)
        given = [first] if first else []
    cjk = is_cjk(family + "".join(given))
    if family:
        name["family"] = "".join(family.split()) if cjk else family
    if given:
        name["given"] = given
    name["text"] = (
        name.get("family", "") + "".join(given) if cjk else " ".join([*given, family]).strip()
    )
    if prefix := part(5):
        name["prefix"] = [prefix]
    if suffix := part(4):
        name["suffix"] = [suffix]
    return name


def xpn_all(seg: Segment, n: int) -> list[dict[str, Any]]:
    names = (xpn(seg, n, rep) for rep in range(len(seg.repetitions(n))))
    return [name for name in names if name]


# -- addresses and telecom -----------------------------------------------------------------

_ADDRESS_USE = {"H": "home", "O": "work", "B": "work", "C": "temp", "BA": "billing"}


def xad(seg: Segment, n: int, rep: int = 0) -> dict[str, Any] | None:
    parts = {i: seg.value(n, i, rep=rep).strip() for i in range(1, 13)}
    if not any(parts.values()):
        return None
    address: dict[str, Any] = {}
    if use := _ADDRESS_USE.get(parts[7]):
        address["use"] = use
    lines = [p for p in (parts[1], parts[2]) if p]
    if lines:
        address["line"] = lines
    for key, i in (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6), ("district", 9)):
        if parts[i]:
            address[key] = parts[i]
    # 行政区划代码: county/parish (XAD.9) or census tract (XAD.10) as 6 or 12 digits.
    division = next((parts[i] for i in (9, 10) if _DIVISION.match(parts[i])), None)
    if division:
        address["extension"] = [{"url": DIVISION_EXT, "valueCode": division}]
    text = "".join(parts[i] for i in (4, 3, 9, 1, 2) if parts[i] and not parts[i].isdigit())
    if text and is_cjk(text):
        address["text"] = text  # Chinese order: province, city, district, street
    return address


def xad_all(seg: Segment, n: int) -> list[dict[str, Any]]:
    found = (xad(seg, n, rep) for rep in range(len(seg.repetitions(n))))
    return [a for a in found if a]


_TELECOM_USE = {"PRN": "home", "ORN": "home", "WPN": "work", "PRS": "mobile", "EMR": "home"}
_TELECOM_SYSTEM = {"FX": "fax", "BP": "pager", "Internet": "email", "X.400": "email"}


def xtn(
    seg: Segment, n: int, rep: int = 0, default_use: str | None = None
) -> dict[str, Any] | None:
    value = seg.value(n, 1, rep=rep).strip() or seg.value(n, 12, rep=rep).strip()
    email = seg.value(n, 4, rep=rep).strip()
    if not value and not email:
        local = seg.value(n, 7, rep=rep).strip()
        area = seg.value(n, 6, rep=rep).strip()
        value = f"{area}-{local}" if area and local else local
    equipment = seg.value(n, 3, rep=rep)
    system = "email" if email and not value else _TELECOM_SYSTEM.get(equipment, "phone")
    if seg.value(n, 2, rep=rep) == "NET":
        system = "email"
    value = email if system == "email" and email else value
    if not value:
        return None
    point: dict[str, Any] = {"system": system, "value": value}
    use = "mobile" if equipment == "CP" else _TELECOM_USE.get(seg.value(n, 2, rep=rep))
    if use or default_use:
        point["use"] = use or default_use
    return point


def xtn_all(seg: Segment, n: int, default_use: str | None = None) -> list[dict[str, Any]]:
    found = (xtn(seg, n, rep, default_use) for rep in range(len(seg.repetitions(n))))
    return [p for p in found if p]


# -- codes -------------------------------------------------------------------------------


def code_system(name: str, local_system: str) -> str | None:
    """CWE-3 → a FHIR system URI; local/empty names → the sender's local code system."""
    key = name.strip().upper()
    if key in CODE_SYSTEMS:
        return CODE_SYSTEMS[key]
    if re.match(r"^HL7\d{4}$", key):
        return f"{V2}{key[3:]}"
    if key in ("", "L", "LOCAL") or key.startswith("99"):
        return local_system
    return None  # an unknown external system: keep code and display, claim no system


def cwe_codings(seg: Segment, n: int, local_system: str, rep: int = 0) -> list[dict[str, str]]:
    out = []
    for first in (1, 4):  # identifier and alternate identifier triplets
        code = seg.value(n, first, rep=rep).strip()
        if not code:
            continue
        coding: dict[str, str] = {}
        system = code_system(seg.value(n, first + 2, rep=rep), local_system)
        if system:
            coding["system"] = system
        coding["code"] = code
        if display := seg.value(n, first + 1, rep=rep).strip():
            coding["display"] = display
        out.append(coding)
    return out


def cwe(seg: Segment, n: int, local_system: str, rep: int = 0) -> dict[str, Any] | None:
    """CWE/CE → CodeableConcept (text from CWE.9 original text, else the first display)."""
    codings = cwe_codings(seg, n, local_system, rep)
    text = seg.value(n, 9, rep=rep).strip() or seg.value(n, 2, rep=rep).strip()
    return _concept(codings, text)


def cwe_in_component(
    seg: Segment, n: int, component: int, local_system: str, rep: int = 0
) -> dict[str, Any] | None:
    """A CWE/CE held in one component's subcomponents (SPS.1 specimen source, SPS.4 body
    site: ``BLD&全血&HL70070^^^LA&左臂&HL70163``) → CodeableConcept, like ``cwe``."""

    def part(i: int) -> str:
        return seg.value(n, component, sub=i, rep=rep).strip()

    codings = []
    for first in (1, 4):
        if not (code := part(first)):
            continue
        coding: dict[str, str] = {}
        if system := code_system(part(first + 2), local_system):
            coding["system"] = system
        coding["code"] = code
        if display := part(first + 1):
            coding["display"] = display
        codings.append(coding)
    return _concept(codings, part(9) or part(2))


def _concept(codings: list[dict[str, str]], text: str) -> dict[str, Any] | None:
    """A CodeableConcept of the codings and text found, or None when there is neither."""
    if not codings and not text:
        return None
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    if text:
        concept["text"] = text
    return concept


def coded(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


# -- numbers -----------------------------------------------------------------------------


def decimal(text: str) -> int | float:
    """NM → a JSON number keeping its digits; ValueError when not a number."""
    text = text.strip()
    if not _NUMBER.match(text):
        raise ValueError(f"{text!r} is not a number")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a number") from exc
    if value == value.to_integral_value() and "." not in text:
        return int(value)
    return float(value)


# -- conditional request URLs ------------------------------------------------------------


def search_escape(value: str) -> str:
    """FHIR search escaping of a token's code: \\ , | $ are escaped with a backslash."""
    for ch in ("\\", ",", "|", "$"):
        value = value.replace(ch, "\\" + ch)
    return value


def identifier_query(system: str, value: str) -> str:
    """``identifier=<system>|<value>``, escaped for FHIR search and URL-encoded."""
    token = f"{system}|{search_escape(value)}"
    if _URL_PLAIN.fullmatch(token):  # nothing to encode (most): quote() would return it as is
        return "identifier=" + token
    return "identifier=" + quote(token, safe="|:/")


def cx_value(seg: Segment, n: int, rep: int = 0) -> str:
    return seg.value(n, 1, rep=rep).strip()


def raw_unescaped(seg: Segment, n: int) -> list[str]:
    """Every repetition of a text field, escapes decoded (ST/TX/FT repetitions)."""
    return [unescape(r, seg.delimiters) for r in seg.repetitions(n)]
