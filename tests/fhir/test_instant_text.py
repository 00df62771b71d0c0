"""meta.lastUpdated text: UTC, millisecond precision, the same however it is computed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hub.search.values import date_range, format_instant

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.integers(min_value=-62_135_596_800_000_000 + 1, max_value=253_402_300_799_999_999))
def test_an_instant_is_written_as_utc_with_milliseconds(micros: int) -> None:
    moment = EPOCH + timedelta(microseconds=micros)
    text = format_instant(micros)
    assert text == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_the_text_reads_back_as_the_millisecond_it_names() -> None:
    micros = 1_785_000_123_456_789
    lo, hi = date_range(format_instant(micros))
    assert lo == micros - micros % 1000 and hi == lo + 1000
