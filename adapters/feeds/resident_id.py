"""居民身份证号 (GB 11643): check, normalise and read a resident ID number.

18 characters: a 6-digit administrative division code, the birth date (YYYYMMDD), a 3-digit
sequence (odd for men, even for women) and an ISO 7064 MOD 11-2 check character (0-9 or X).
Legacy 15-digit numbers (2-digit year, no check character) are converted to 18.  A number that
fails any check is never used to link records; the caller flags it instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_FORM = re.compile(r"^(\d{17}[\dX]|\d{15})$")
# Province-level codes of GB/T 2260 (the first two digits of every division code).
PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 "
    "65 71 81 82".split()
)


class ResidentIdError(ValueError):
    """Why a number is not a usable resident ID: ``reason`` is format, check-digit, region
    or birth-date."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True)
class ResidentId:
    value: str  # the 18-character form
    region: str  # 6-digit administrative division code
    birth_date: date
    sex: str  # "male" or "female", from the sequence number
    converted_from_15: bool = False


def check_character(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def from_15(legacy: str) -> str:
    """A 15-digit legacy number in its 18-character form (born in the 1900s, as all were)."""
    body = legacy[:6] + "19" + legacy[6:]
    return body + check_character(body)


def parse_resident_id(text: str, *, today: date | None = None) -> ResidentId:
    """The number read and checked; ResidentIdError says what is wrong with it."""
    value = text.strip().replace(" ", "").upper()
    if not _FORM.match(value):
        raise ResidentIdError("format", "not 18 characters (17 digits and 0-9/X) or 15 digits")
    converted = len(value) == 15
    if converted:
        value = from_15(value)
    elif check_character(value[:17]) != value[17]:
        raise ResidentIdError("check-digit", "the check character does not match (MOD 11-2)")
    if value[:2] not in PROVINCES:
        raise ResidentIdError("region", f"{value[:2]} is not a province-level division code")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError as exc:
        raise ResidentIdError("birth-date", "the birth date inside is not a date") from exc
    if born < date(1900, 1, 1) or born > (today or date.today()):
        raise ResidentIdError("birth-date", "the birth date inside is out of range")
    sex = "male" if int(value[16]) % 2 else "female"
    return ResidentId(value, value[:6], born, sex, converted)


def normalise(text: str) -> str | None:
    """The 18-character form of a valid number, else None (never link on an invalid one)."""
    try:
        return parse_resident_id(text).value
    except ResidentIdError:
        return None
