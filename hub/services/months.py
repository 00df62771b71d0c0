"""Months as the community's figures and feedback name them: ``YYYY-MM``."""

from __future__ import annotations

import re

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_month(month: str) -> str:
    if not MONTH.match(month):
        raise ValueError(f"month must be YYYY-MM, not {month!r}")
    return month
