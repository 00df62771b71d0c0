"""Describe an exception for the logs without its message: messages can carry clinical text.

``TypeError at hub/queue/worker.py:88 (via fhir/transaction.py:97)`` says where to look; the
data that caused it stays in the inbox, where the office can see it with the right access.
"""

from __future__ import annotations

import traceback
from pathlib import Path


def describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    places = [f"{'/'.join(Path(f.filename).parts[-2:])}:{f.lineno}" for f in frames[-2:]]
    return f"{type(exc).__name__} at {places[-1]}" + (
        f" (via {places[0]})" if len(places) > 1 else ""
    )
