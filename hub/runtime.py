"""Interpreter settings for a long-running hub process.

Validating FHIR resources allocates many small objects per resource; with Python's default
collector thresholds (a young-generation pass every 700 allocations) cyclic garbage
collection took ~15-25% of the CPU of ingest and of applying feed messages, walking the same
long-lived objects (model classes, caches, the element memo) again and again.  Almost all of
the hub's garbage is freed by reference counting anyway, so collections can be rare; objects
alive after start-up are frozen out of the collector's view.

A feed worker holds a whole group of messages (up to 100 Bundles, ~60,000 objects) alive
while it applies them as one transaction, so at 50,000 its young generation was collected
about once every two groups, each pass walking the group in hand: ~3% of the worker's CPU
(gc.callbacks timing, tests.bench.apply_cpu's workload).  A process whose work comes in such
groups and answers nobody while it works takes a higher threshold; what a group leaves
behind is freed by reference counting, so passes stay rare without memory piling up.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
GROUP_YOUNG_THRESHOLD = 250_000  # for a feed worker process (see above)


def tune_gc(young: int = YOUNG_THRESHOLD) -> None:
    """Call once start-up is done (imports, app and pools built)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, 20, 20)
