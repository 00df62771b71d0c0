"""Group commit planning: which inbox messages may share one database transaction.

A feed message is a small Bundle (an ORU with 5 results writes 9 resources); its fixed cost
(locks, lookups, commit and fsync) is as large as its writes.  Messages waiting in one worker
lane that touch different resources are merged into one transaction Bundle and marked applied
together.  Two messages that name the same resource with a conditional update (a result and
its correction, an admission and the transfer that follows) are never merged: they run one
after the other, in the order received.  The worker (hub.queue.worker) applies the runs; if a
merged transaction fails it applies each message on its own, so one bad message cannot take
others down with it.
"""

from __future__ import annotations

from typing import Any

from hub.store.locks import criteria_key


def _keys(bundle: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """(criteria of conditional PUTs and PATCHes, criteria of conditional creates, fullUrls)."""
    puts, posts, urls = set(), set(), set()
    for entry in bundle.get("entry", []):
        request = entry.get("request", {})
        url = request.get("url", "")
        if entry.get("fullUrl"):
            urls.add(entry["fullUrl"])
        if request.get("method") in ("PUT", "PATCH", "DELETE"):
            res_type, _, query = url.partition("?")
            puts.add(criteria_key(res_type, query) if query else url)
        elif request.get("method") == "POST" and request.get("ifNoneExist"):
            posts.add(criteria_key(url, request["ifNoneExist"]))
    return puts, posts, urls


def mergeable_runs(bundles: list[dict[str, Any]], limit: int) -> list[list[int]]:
    """Split messages (in order) into runs whose Bundles may share one transaction.

    A run ends before a message whose conditional updates touch something an earlier message
    of the run writes (or conditionally creates), or whose fullUrls collide.
    """
    runs: list[list[int]] = []
    puts: set[str] = set()
    posts: set[str] = set()
    urls: set[str] = set()
    alone = False
    for i, bundle in enumerate(bundles):
        p, c, u = _keys(bundle)
        clash = (p & (puts | posts)) or (c & puts) or (u & urls)
        # No Bundle (a merge, which the worker checks against the store first): on its own.
        if not runs or clash or alone or not bundle or len(runs[-1]) >= limit:
            runs.append([])
            puts, posts, urls = set(), set(), set()
        runs[-1].append(i)
        alone = not bundle
        puts |= p
        posts |= c
        urls |= u
    return runs
