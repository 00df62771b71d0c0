"""What the matcher compares, read once from a FHIR R4 Patient (a pure function of its JSON).

Only identifiers that pass their check become exact keys: a resident ID that fails GB 11643,
or any identifier the feeds flagged with the identifier-invalid extension, is kept aside in
``invalid_ids`` (a typo is still a hint, never a key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from adapters.feeds.resident_id import ResidentIdError, parse_resident_id
from hub.services.identity.names import is_hanzi, name_key, pinyin_forms
from hub.services.identity.rules import MatchRules

INVALID_IDENTIFIER = "https://ygt.example.org/fhir/StructureDefinition/identifier-invalid"
DIVISION_CODE = "https://ygt.example.org/fhir/StructureDefinition/division-code"
RESIDENT_ID = "resident-id"
PASSPORT = "passport"

_CARD_NOISE = re.compile(r"[\s\-]+")
_NOT_DIGIT = re.compile(r"\D+")
_SPACES = re.compile(r"\s+")
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DIVISION = re.compile(r"^\d{6}(\d{6})?$")
_COUNTRY = re.compile(r"^[A-Z]{3}$")
_NAME_USES = ("official", "usual", None)


@dataclass(frozen=True)
class Features:
    keys: dict[str, str] = field(default_factory=dict)  # kind → normalised valid value
    invalid_ids: tuple[str, ...] = ()
    name: str | None = None
    pinyin: frozenset[str] = frozenset()
    name_key: str | None = None
    gender: str | None = None
    birth_date: str | None = None  # YYYY-MM-DD, only a full date
    phones: frozenset[str] = frozenset()
    address: str | None = None
    division: str | None = None  # 6-digit county-level division code
    id_birth_date: str | None = None  # from a valid resident ID
    id_gender: str | None = None


@lru_cache(maxsize=65536)
def _resident_id(value: str, today: date) -> tuple[str, str, str] | None:
    # ``today`` is part of the key because an ID dated in the future becomes valid later.
    try:
        rid = parse_resident_id(value, today=today)
    except ResidentIdError:
        return None
    return rid.value, rid.birth_date.isoformat(), rid.sex


def _is_full_date(text: str) -> bool:
    if not _FULL_DATE.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _clean(value: str) -> str:
    return _CARD_NOISE.sub("", value).upper()


def _identifiers(
    identifiers: list[dict[str, Any]], rules: MatchRules
) -> tuple[dict[str, str], tuple[str, ...], str | None, str | None]:
    keys: dict[str, str] = {}
    invalid: list[str] = []
    id_birth = id_sex = None
    today = date.today()
    for ident in identifiers:
        value = ident.get("value")
        if not isinstance(value, str) or not value.strip():
            continue
        if any(ext.get("url") == INVALID_IDENTIFIER for ext in ident.get("extension") or ()):
            invalid.append(_clean(value))
            continue
        rule = rules.key_rule(ident.get("system") or "")
        if rule is None:
            continue
        if rule.kind == RESIDENT_ID or rule.check == "gb11643":
            parsed = _resident_id(_clean(value), today)
            if parsed is None:
                invalid.append(_clean(value))
                continue
            if rule.kind not in keys:  # a second, different number on one record is ignored
                keys[rule.kind], id_birth, id_sex = parsed
        elif rule.kind == PASSPORT:
            country = (ident.get("system") or "")[len(rule.system_prefix or "") :].strip("/")
            number = _clean(value)
            if _COUNTRY.match(country.upper()) and number:
                keys.setdefault(PASSPORT, f"{country.upper()}:{number}")
        elif number := _clean(value):
            keys.setdefault(rule.kind, number)
    return keys, tuple(invalid), id_birth, id_sex


def _pick_name(names: list[dict[str, Any]]) -> dict[str, Any] | None:
    for use in _NAME_USES:
        for name in names:
            if name.get("use") == use:
                return name
    return names[0] if names else None


def name_text(name: dict[str, Any]) -> str | None:
    """Hanzi family+given without spaces; Latin ``family given``; else the name's text."""
    family = name.get("family") or ""
    given = [g for g in name.get("given") or () if isinstance(g, str)]
    parts = [family, *given] if isinstance(family, str) else given
    joined = "".join(parts)
    if joined.strip():
        if is_hanzi(joined):
            return _SPACES.sub("", joined)
        return " ".join(" ".join(parts).split())
    text = name.get("text")
    if isinstance(text, str) and text.strip():
        return _SPACES.sub("", text) if is_hanzi(text) else " ".join(text.split())
    return None


def phone_digits(value: str) -> str | None:
    """Digits only; +86 / 0086 (and a bare 86 before an 11-digit mobile) removed."""
    digits = _NOT_DIGIT.sub("", value)
    international = False
    if digits.startswith("0086"):
        digits, international = digits[4:], True
    elif value.lstrip().startswith("+86"):
        digits, international = digits[2:], True
    elif len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    is_mobile = len(digits) == 11 and digits.startswith("1")
    if international and not is_mobile and not digits.startswith("0"):
        digits = "0" + digits  # +86 572 8012345 is dialled 0572 8012345 at home
    return digits if len(digits) >= 7 else None


def _address(addresses: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    if not addresses:
        return None, None
    first = addresses[0]
    division = None
    for ext in first.get("extension") or ():
        if ext.get("url") == DIVISION_CODE:
            code = ext.get("valueCode") or ext.get("valueString") or ""
            if _DIVISION.match(code):
                division = code[:6]
    district = first.get("district") or ""
    if division is None and _DIVISION.match(district):
        division = district[:6]
    text = first.get("text")
    if not (isinstance(text, str) and text.strip()):
        # Chinese order (province, city, district, street), as the feeds write ``text``.
        lines = [ln for ln in first.get("line") or () if isinstance(ln, str)]
        district = "" if district.isdigit() else district
        parts = [first.get("state") or "", first.get("city") or "", district, *lines]
        text = "".join(parts) if is_hanzi("".join(parts)) else " ".join(p for p in parts if p)
    text = text.strip() if isinstance(text, str) else ""
    return text or None, division


def features(patient: dict[str, Any], rules: MatchRules) -> Features:
    keys, invalid, id_birth, id_sex = _identifiers(patient.get("identifier") or [], rules)
    picked = _pick_name(patient.get("name") or [])
    name = name_text(picked) if picked else None
    gender = patient.get("gender")
    birth = patient.get("birthDate")
    phones = frozenset(
        p
        for point in patient.get("telecom") or ()
        if point.get("system") in ("phone", "sms") and isinstance(point.get("value"), str)
        if (p := phone_digits(point["value"]))
    )
    address, division = _address(patient.get("address") or [])
    return Features(
        keys=keys,
        invalid_ids=invalid,
        name=name,
        pinyin=pinyin_forms(name) if name else frozenset(),
        name_key=name_key(name) if name else None,
        gender=gender if gender in ("male", "female", "other") else None,
        birth_date=birth if isinstance(birth, str) and _is_full_date(birth) else None,
        phones=phones,
        address=address,
        division=division,
        id_birth_date=id_birth,
        id_gender=id_sex,
    )
