"""Value normalisers shared by index extraction and query parsing (pure functions).

Both sides must agree exactly on how a string is folded and how a partial date becomes a range,
so they live here and nowhere else.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from hub.store.schema import MAX_TIME, MIN_TIME

# The community's local time: FHIR dates without an offset are read in it.
DEFAULT_TZ = timezone(timedelta(hours=8))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WS = re.compile(r"\s+")
_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class DateFormatError(ValueError):
    """A date, dateTime or instant that is not valid FHIR."""


# Both are pure and see the same few values again and again (codes' displays, a report's
# dates repeated on each of its results): cached, they cost a dict lookup on the write path.
@lru_cache(maxsize=65_536)
def normalize_string(value: str) -> str:
    """Fold a string for FHIR's default string matching: case- and accent-insensitive.

    NFKD splits accents off Latin letters (and maps full-width forms, common in Chinese input,
    to their ASCII equivalents); combining marks are dropped; whitespace collapses.
    """
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WS.sub(" ", stripped).strip().casefold()


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch for an aware datetime."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def format_instant(micros: int) -> str:
    """FHIR instant text (UTC, millisecond precision is what clients expect)."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second_text(seconds)}{fraction // 1000:03d}Z"


@lru_cache(maxsize=64)
def _second_text(seconds: int) -> str:
    # A transaction stamps all its resources in the same second: format it once.
    return from_micros(seconds * 1_000_000).strftime("%Y-%m-%dT%H:%M:%S.")


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.year * 12 + (moment.month - 1) + months
    return moment.replace(year=total // 12, month=total % 12 + 1)


@lru_cache(maxsize=65_536)
def date_range(text: str, default_tz: timezone = DEFAULT_TZ) -> tuple[int, int]:
    """The implied range ``[lo, hi)`` of a FHIR date/dateTime/instant, in µs since epoch UTC.

    ``2026`` covers the whole year, ``2026-10-03`` the whole day, ``2026-10-03T08:30`` the whole
    minute; seconds with a fraction cover the precision written.  Values without an offset are
    read in ``default_tz`` (the community's +08:00).  Impossible dates raise DateFormatError.
    """
    match = _DATE_RE.match(text.strip())
    if not match:
        raise DateFormatError(f"not a FHIR date: {text!r}")
    parts = match.groupdict()
    tz: timezone = default_tz
    if parts["tz"]:
        if parts["tz"] == "Z":
            tz = UTC
        else:
            sign = 1 if parts["tz"][0] == "+" else -1
            hours, minutes = int(parts["tz"][1:3]), int(parts["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        start = datetime(
            int(parts["y"]),
            int(parts["m"] or 1),
            int(parts["d"] or 1),
            int(parts["H"] or 0),
            int(parts["M"] or 0),
            int(parts["S"] or 0),
            int((parts["f"] or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError as exc:
        raise DateFormatError(f"impossible date: {text!r}") from exc
    if parts["f"]:
        width = timedelta(microseconds=10 ** max(0, 6 - len(parts["f"])))
        end = start + width
    elif parts["S"]:
        end = start + timedelta(seconds=1)
    elif parts["M"]:
        end = start + timedelta(minutes=1)
    elif parts["H"]:
        end = start + timedelta(hours=1)
    elif parts["d"]:
        end = start + timedelta(days=1)
    elif parts["m"]:
        end = _add_months(start, 1)
    else:
        end = start.replace(year=start.year + 1)
    return to_micros(start), to_micros(end)


def period_range(period: dict[str, str], default_tz: timezone = DEFAULT_TZ) -> tuple[int, int]:
    """The range of a FHIR Period; a missing end is open (ongoing), a missing start too."""
    lo = date_range(period["start"], default_tz)[0] if period.get("start") else MIN_TIME
    hi = date_range(period["end"], default_tz)[1] if period.get("end") else MAX_TIME
    return lo, hi


def decimal_precision_range(text: str) -> tuple[float, float]:
    """The implicit range of a decimal search value: ``100`` means [99.5, 100.5).

    FHIR: "the precision of the search value determines the range".
    """
    stripped = text.strip()
    value = float(stripped)
    mantissa = stripped.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(stripped.lower().split("e")[1]) if "e" in stripped.lower() else 0
    half = 0.5 * 10 ** (exponent - decimals)
    return value - half, value + half
