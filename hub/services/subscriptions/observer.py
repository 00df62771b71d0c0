"""Subscriptions inside the unit of work: accept them when written, match every other write.

A Subscription written by any path is checked here (rest-hook only, an http(s) endpoint, a
JSON payload or none, criteria this hub can evaluate) and turned from ``requested`` to
``active``.  Every written resource is matched against the active Subscriptions of its type,
and each match becomes a ``subscription_notifications`` row in the same transaction, so a
notification exists exactly when the write it announces committed; the delivery thread
(hub.services.subscriptions.delivery) sends it afterwards.

The active Subscriptions are cached per process, so a write of a type nobody subscribes to
costs a dict lookup: the cache reloads after a Subscription is written or deleted through this
process (on commit or rollback of that unit) and at least every ``ActiveSubscriptions.ttl``
seconds, which bounds how late other processes see a change.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import Connection, event, insert, select

from hub.fhir.errors import Unprocessable
from hub.fhir.validation import SUPPORTED
from hub.queue.streams import NOTIFICATIONS, announce_after_commit
from hub.search.extract import extract_index_rows
from hub.search.values import DateFormatError, date_range
from hub.services.subscriptions.criteria import (
    Criteria,
    CriteriaError,
    parse_criteria,
    rows_by_param,
)
from hub.store.repository import Writer, now_micros
from hub.store.schema import of_type, resources, subscription_notifications

log = logging.getLogger("hub.subscriptions")

JSON_PAYLOADS = frozenset({"application/fhir+json", "application/json"})
_HEADER = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*$")


@dataclass(frozen=True)
class Active:
    """An active Subscription as the matcher needs it."""

    id: str
    criteria: Criteria


# --- what a Subscription must be -------------------------------------------------------------


def accept(subscription: dict[str, Any]) -> dict[str, Any]:
    """The Subscription to store (``requested`` becomes ``active``), or Unprocessable (422)
    naming what the hub cannot honour."""
    channel = subscription.get("channel") or {}
    kind = channel.get("type")
    if kind != "rest-hook":
        raise Unprocessable(
            f"channel type {kind!r} is not supported; this hub delivers rest-hook only",
            code="not-supported",
            expression=["Subscription.channel.type"],
        )
    endpoint = channel.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unprocessable(
            f"channel endpoint {endpoint!r} is not an http(s) URL",
            code="value",
            expression=["Subscription.channel.endpoint"],
        )
    payload = channel.get("payload")
    if payload is not None and mime_type(payload) not in JSON_PAYLOADS:
        raise Unprocessable(
            f"payload {payload!r} is not supported; use application/fhir+json or omit it",
            code="not-supported",
            expression=["Subscription.channel.payload"],
        )
    for i, line in enumerate(channel.get("header") or []):
        if not isinstance(line, str) or not _HEADER.match(line):
            raise Unprocessable(
                f"header {line!r} is not an HTTP header line 'Name: value'",
                code="value",
                expression=[f"Subscription.channel.header[{i}]"],
            )
    try:
        parse_criteria(subscription.get("criteria", ""))
    except CriteriaError as exc:
        raise Unprocessable(
            f"criteria: {exc}", code="not-supported", expression=["Subscription.criteria"]
        ) from exc
    if subscription.get("status") == "requested":
        return {**subscription, "status": "active"}
    return subscription


def mime_type(payload: str) -> str:
    """``application/fhir+json;fhirVersion=4.0`` → ``application/fhir+json``."""
    return payload.split(";", 1)[0].strip().lower()


def is_live(subscription: Mapping[str, Any], now: int) -> bool:
    """Active and not past its ``end`` (R4: when the server turns it off)."""
    if subscription.get("status") != "active":
        return False
    end = subscription.get("end")
    if isinstance(end, str):
        try:
            return date_range(end)[0] > now
        except DateFormatError:
            return True
    return True


# --- the per-process cache -------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    by_type: dict[str, tuple[Active, ...]]
    expires: float  # time.monotonic()


class ActiveSubscriptions:
    """Active Subscriptions by criteria type, shared by every unit of work in this process."""

    ttl = 2.0  # seconds; how stale another process's Subscription change may be seen

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._generation = 0

    def by_type(self, conn: Connection) -> dict[str, tuple[Active, ...]]:
        snapshot = self._snapshot  # one attribute read: the fast path takes no lock
        if snapshot is not None and time.monotonic() < snapshot.expires:
            return snapshot.by_type
        with self._lock:
            generation = self._generation
        loaded = load_active(conn)
        with self._lock:
            # An invalidation while loading means this load may predate the change.
            if generation == self._generation:
                self._snapshot = _Snapshot(loaded, time.monotonic() + self.ttl)
        return loaded

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._snapshot = None


ACTIVE = ActiveSubscriptions()


def invalidate() -> None:
    """Forget the cached Subscriptions (tests that empty the store call this too)."""
    ACTIVE.invalidate()


def load_active(conn: Connection) -> dict[str, tuple[Active, ...]]:
    now = now_micros()
    found: dict[str, list[Active]] = {}
    rows = conn.execute(
        select(resources.c.res_id, resources.c.content).where(
            of_type("Subscription"), resources.c.deleted.is_(False)
        )
    )
    for res_id, content in rows:
        subscription = orjson.loads(content)
        if not is_live(subscription, now):
            continue
        try:
            criteria = parse_criteria(subscription.get("criteria", ""))
        except CriteriaError:
            # Stored before a parameter it uses was withdrawn: it cannot match any more.
            log.warning("Subscription/%s: criteria no longer supported; not matched", res_id)
            continue
        found.setdefault(criteria.res_type, []).append(Active(res_id, criteria))
    return {res_type: tuple(subs) for res_type, subs in found.items()}


# --- the write observer ----------------------------------------------------------------------


@dataclass
class SubscriptionMatcher:
    """The WriteObserver: accepts Subscriptions, queues a notification per match."""

    conn: Connection
    types: frozenset[str] = SUPPORTED
    matched: list[tuple[str, str, str]] = field(default_factory=list)  # (sub, type, id)
    _watching_commit: bool = False

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict[str, Any]:
        res_type = resource["resourceType"]
        if res_type == "Subscription":
            resource = accept(resource)
            self._subscriptions_changed()
        subscribed = ACTIVE.by_type(self.conn).get(res_type)
        if subscribed:
            rows = rows_by_param(extract_index_rows(resource))
            self.matched.extend(
                (sub.id, res_type, res_id)
                for sub in subscribed
                if sub.criteria.matches(res_id, rows)
            )
        return resource

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        # R4 rest-hooks announce creates and updates; a deleted Subscription stops matching.
        if res_type == "Subscription":
            self._subscriptions_changed()

    def before_flush(self, writer: Writer) -> None:
        if not self.matched:
            return
        matched, self.matched = self.matched, []
        versions = self._versions({(t, i) for _, t, i in matched})
        now = now_micros()
        self.conn.execute(
            insert(subscription_notifications),
            [
                {
                    "subscription_id": sub_id,
                    "res_type": res_type,
                    "res_id": res_id,
                    # Not in the table yet: a create this flush inserts, so version 1.
                    "version_id": versions.get((res_type, res_id), 1),
                    "created_at": now,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for sub_id, res_type, res_id in matched
            ],
        )
        # With Redis: a delivery worker in any process hears of them once this commits.
        for sub_id in dict.fromkeys(sub_id for sub_id, _, _ in matched):
            announce_after_commit(self.conn, NOTIFICATIONS, 0, sub_id)

    def _versions(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The version each updated resource was given (an update moves the row at once)."""
        by_type: dict[str, list[str]] = {}
        for res_type, res_id in keys:
            by_type.setdefault(res_type, []).append(res_id)
        found: dict[tuple[str, str], int] = {}
        for res_type, ids in by_type.items():
            for start in range(0, len(ids), 500):
                rows = self.conn.execute(
                    select(resources.c.res_id, resources.c.version_id).where(
                        resources.c.res_type == res_type,
                        resources.c.res_id.in_(ids[start : start + 500]),
                    )
                )
                found.update(((res_type, r.res_id), r.version_id) for r in rows)
        return found

    def _subscriptions_changed(self) -> None:
        ACTIVE.invalidate()
        if self._watching_commit:
            return
        # This unit may load the cache from its own uncommitted view; drop that view when the
        # unit ends, either way, so other units reload what was committed.
        self._watching_commit = True
        event.listen(self.conn, "commit", _on_end)
        event.listen(self.conn, "rollback", _on_end)


def _on_end(conn: Connection) -> None:
    ACTIVE.invalidate()
