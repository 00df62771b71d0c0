"""Resident ID numbers: check character, 15 → 18, region, birth date; single errors caught."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.feeds.resident_id import (
    ResidentIdError,
    check_character,
    from_15,
    normalise,
    parse_resident_id,
)

VALID = "11010519491231002X"  # the example printed in GB 11643


def test_the_standards_example() -> None:
    rid = parse_resident_id(VALID)
    assert rid.birth_date == date(1949, 12, 31) and rid.sex == "female"
    assert rid.region == "110105" and not rid.converted_from_15
    assert parse_resident_id(VALID.lower()).value == VALID  # x accepted, normalised to X


def test_legacy_15_digits_become_the_same_18() -> None:
    legacy = "110105491231002"
    assert from_15(legacy) == VALID
    rid = parse_resident_id(legacy)
    assert rid.value == VALID and rid.converted_from_15
    assert normalise(legacy) == normalise(VALID) == VALID


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("11010519491231002", "format"),
        ("1101051949123100ZX", "format"),
        ("110105194912310021", "check-digit"),
        (f"99010519491231002{check_character('99010519491231002')}", "region"),
        (f"11010519491331002{check_character('11010519491331002')}", "birth-date"),
        (f"11010518991231002{check_character('11010518991231002')}", "birth-date"),
        (f"11010521991231002{check_character('11010521991231002')}", "birth-date"),
    ],
)
def test_what_is_refused_and_why(text: str, reason: str) -> None:
    with pytest.raises(ResidentIdError) as err:
        parse_resident_id(text, today=date(2026, 11, 23))
    assert err.value.reason == reason
    assert normalise(text) is None


@given(
    region=st.sampled_from(["330521", "330522", "110105", "440305"]),
    born=st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 1, 1)),
    seq=st.integers(0, 999),
    position=st.integers(0, 16),
    delta=st.integers(1, 9),
)
def test_any_single_digit_error_is_caught(
    region: str, born: date, seq: int, position: int, delta: int
) -> None:
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    valid = body + check_character(body)
    assert parse_resident_id(valid).value == valid
    wrong = valid[:position] + str((int(valid[position]) + delta) % 10) + valid[position + 1 :]
    # MOD 11-2 catches every single-digit error: the number is never used to link.
    assert normalise(wrong) is None
