"""Group commit: several inbox messages applied in one database transaction.

A feed message is a small Bundle (an ORU with 5 results writes 9 resources); its fixed cost
(locks, lookups, commit and fsync) is as large as its writes.  Messages waiting in one worker
lane that touch different resources are merged into one transaction Bundle and marked applied
together.  Two messages that name the same resource with a conditional update (a result and
its correction, an admission and the transfer that follows) are never merged: they run one
after the other, in the order received.  If a merged transaction fails, each message is applied
on its own, so one bad message cannot take others down with it.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from hub.fhir.errors import FhirError
from hub.fhir.transaction import process_bundle
from hub.queue.app_ack import queue_application_acks
from hub.store.locks import criteria_key
from hub.store.repository import now_micros
from hub.store.schema import inbox

_BASE = "urn:hub:feeds"


class _Conflict(Exception):
    """The merged messages were applied by someone else meanwhile: apply one by one."""


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


def mergeable_runs(bundles: list[dict[str, Any]], limit: int = 25) -> list[list[int]]:
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


def apply_group(engine: Engine, ids: list[int], bundles: list[dict[str, Any]]) -> bool:
    """Apply these pending messages (with their loaded Bundles) in one transaction; False if
    it must be done one by one.  The status guard below makes a stale Bundle harmless."""
    merged = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry for bundle in bundles for entry in bundle["entry"]],
    }

    def mark_applied(conn: Connection) -> None:
        done = conn.execute(
            update(inbox)
            .where(inbox.c.id.in_(ids), inbox.c.status == "pending")
            .values(
                status="applied",
                applied_at=now_micros(),
                attempts=inbox.c.attempts + 1,
                error=None,
            )
        )
        if done.rowcount != len(ids):
            raise _Conflict
        queue_application_acks(conn, ids, "AA")

    try:
        process_bundle(engine, merged, base_url=_BASE, prefer_return="minimal", within=mark_applied)
    except (_Conflict, FhirError):
        return False
    return True


def load_bundles(engine: Engine, ids: list[int]) -> list[dict[str, Any]]:
    """The mapped Bundles of pending messages, in the given order ({}: none, not pending, or a
    merge, which is applied on its own)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(inbox.c.id, inbox.c.bundle, inbox.c.message_type, inbox.c.status).where(
                inbox.c.id.in_(ids)
            )
        ).all()
    found = {
        r.id: (
            orjson.loads(r.bundle) if r.bundle and not r.message_type.startswith("ADT^A40") else {}
        )
        for r in rows
    }
    return [found.get(i, {}) for i in ids]
