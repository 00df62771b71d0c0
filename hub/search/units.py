"""UCUM canonical units for quantity search: compare 5.4 mmol/L with 5400 umol/L.

Only the units clinical labs send (mass, volume, amount of substance, time and their
concentrations) with metric prefixes; anything else is compared by its own code.
"""

from __future__ import annotations

from functools import cache

_PREFIXES = {
    "": 1.0,
    "k": 1e3,
    "d": 1e-1,
    "c": 1e-2,
    "m": 1e-3,
    "u": 1e-6,
    "n": 1e-9,
    "p": 1e-12,
    "f": 1e-15,
}
_BASES = {"g": "g", "L": "L", "l": "L", "mol": "mol", "eq": "eq", "U": "U", "s": "s"}
_TIMES = {"min": 60.0, "h": 3600.0, "d": 86400.0, "wk": 604800.0}


@cache
def _simple(unit: str) -> tuple[float, str] | None:
    if unit in _TIMES:
        return _TIMES[unit], "s"
    for base in sorted(_BASES, key=len, reverse=True):
        if unit.endswith(base):
            prefix = unit[: -len(base)]
            if prefix in _PREFIXES:
                return _PREFIXES[prefix], _BASES[base]
    return None


@cache
def _factor(code: str) -> tuple[float, str] | None:
    if "/" in code:
        num, _, den = code.partition("/")
        top, bottom = _simple(num), _simple(den)
        if top is None or bottom is None:
            return None
        return top[0] / bottom[0], f"{top[1]}/{bottom[1]}"
    return _simple(code)


def canonical(value: float, code: str | None) -> tuple[float, str] | None:
    """(value in the base unit, base unit code), or None when the unit is not convertible."""
    if not code:
        return None
    found = _factor(code)
    if found is None:
        return None
    factor, base = found
    return value * factor, base
