"""Interpreter settings for a long-running hub process.

Validating FHIR resources allocates many small objects per resource; with Python's default
collector thresholds (a young-generation pass every 700 allocations) cyclic garbage
collection took ~15-25% of the CPU of ingest and of applying feed messages, walking the same
long-lived objects (model classes, caches, the element memo) again and again.  Almost all of
the hub's garbage is freed by reference counting anyway, so collections can be rare; objects
alive after start-up are frozen out of the collector's view.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Call once start-up is done (imports, app and pools built)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
