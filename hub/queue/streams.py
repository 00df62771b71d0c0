"""Redis Streams transport for the queues (``HUB_REDIS_URL``): the hub's processes share work.

The database stays the record.  A stream entry only says "row N of this queue has work"; a
worker that reads it loads the row and decides from its status, so a duplicate entry, a lost
entry or a whole flushed Redis changes nothing that was committed:

- producers announce a row *after* its transaction committed (intake: after the inbox commit;
  the outbox and Subscription notifications: when the connection that committed them goes back
  to the pool, ``after_commit``), through a background publisher thread, so an ACK never waits
  for Redis and a Redis outage only delays work;
- each queue has one stream and one consumer group; a worker acknowledges (XACK, then XDEL, so
  the stream holds only unfinished entries) after the database transaction committed;
- entries a dead consumer held are taken over after ``claim_idle`` (XAUTOCLAIM); a live
  consumer refreshes the idle time of what it holds (XCLAIM JUSTID) so it keeps it;
- the reconciler (hub.queue.stream_workers) re-announces rows that are pending in the database
  but in no stream entry: after a Redis restart or flush, and for rows whose announcement died
  with a killed process.

No identifier or clinical value goes to Redis: entries carry row ids and a lane number (a
hash of the patient key) or a destination / Subscription id.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Connection, event

log = logging.getLogger("hub.streams")

INBOX = "inbox"  # key: the lane number (crc32 of the patient key)
OUTBOX = "outbox"  # key: the destination
NOTIFICATIONS = "notifications"  # key: the Subscription id
_BACKLOG_LIMIT = 200_000  # announcements buffered while Redis is away; past it the oldest go


@dataclass(frozen=True)
class StreamSettings:
    url: str
    prefix: str = "hub"  # key namespace: several hubs (or test runs) may share one Redis
    claim_idle: float = 30.0  # seconds an entry may sit unacknowledged before it is taken over
    reconcile_every: float = 30.0  # seconds between passes of the reconciler


@dataclass(frozen=True)
class Entry:
    """One stream entry: its id in the stream, the row it names, and its routing key."""

    entry_id: str
    ref: int
    key: str


def lane_key(patient_key: str | None, inbox_id: int) -> str:
    """The inbox entry's key: the same hash InboxWorker spreads lanes by, never the key."""
    return str(zlib.crc32((patient_key or str(inbox_id)).encode()))


def consumer_name() -> str:
    """Unique per process start, readable in XINFO: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Streams:
    """The Redis side of the queues: key names, publishing, reading, acknowledging, claiming."""

    def __init__(self, settings: StreamSettings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        # Blocking reads hold a pooled connection for ``block`` seconds: the socket timeout
        # must outlast them, yet be short enough that a Redis gone silent is noticed.
        self.redis: redis.Redis = client or redis.Redis.from_url(
            settings.url,
            decode_responses=True,
            socket_timeout=15,
            socket_connect_timeout=3,
            health_check_interval=15,
        )
        self._outgoing: queue.Queue[tuple[str, int, str]] = queue.Queue()
        self._stop = threading.Event()
        self._publisher: threading.Thread | None = None
        self._groups: set[tuple[str, str]] = set()

    def key(self, stream: str) -> str:
        return f"{self.settings.prefix}:{stream}"

    # --- producing -----------------------------------------------------------------------------

    def announce(self, stream: str, ref: int, key: str) -> None:
        """Queue an entry for the publisher thread; returns at once, whatever Redis is doing."""
        self._outgoing.put((stream, ref, key))

    def publish(self, items: Iterable[tuple[str, int, str]]) -> int:
        """XADD entries now, in one round trip; raises redis.RedisError if Redis is away."""
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for stream, ref, key in items:
            pipe.xadd(self.key(stream), {"ref": ref, "key": key})
            n += 1
        if n:
            pipe.execute()
        return n

    def start(self) -> None:
        if self._publisher is None:
            self._stop.clear()
            self._publisher = threading.Thread(target=self._publish, name="streams", daemon=True)
            self._publisher.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what is buffered (``timeout`` at most: the reconciler finds the rest)."""
        self._stop.set()
        if self._publisher is not None:
            self._publisher.join(timeout)
            self._publisher = None
        self.redis.close()

    def _publish(self) -> None:
        batch: list[tuple[str, int, str]] = []
        delay = 0.2
        while True:
            if not batch:
                try:
                    batch.append(self._outgoing.get(timeout=0.2))
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
            while len(batch) < 1000:
                try:
                    batch.append(self._outgoing.get_nowait())
                except queue.Empty:
                    break
            try:
                self.publish(batch)
                batch, delay = [], 0.2
            except redis.RedisError as exc:
                log.warning("streams: cannot publish %d entries (%s); retrying",
                            len(batch), type(exc).__name__)  # fmt: skip
                if len(batch) > _BACKLOG_LIMIT:
                    batch = batch[-_BACKLOG_LIMIT:]  # the rows are pending: reconciled later
                if self._stop.wait(delay):
                    return  # stopping with Redis away: the reconciler re-announces these
                delay = min(delay * 2, 5.0)

    # --- consuming -----------------------------------------------------------------------------

    def ensure_group(self, stream: str, group: str) -> None:
        """Create the stream and its group if either is missing (a new or flushed Redis).

        From id 0: entries published before the group existed are delivered too."""
        try:
            self.redis.xgroup_create(self.key(stream), group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    def _in_group(self, stream: str, group: str, command: Callable[[], Any]) -> Any:
        """Run a group command, the group made first if this process has not seen it yet.

        A NOGROUP answer means Redis restarted empty or was flushed: the group is gone with
        everything in it, which the caller hears as StreamLost (and reconciles)."""
        if (stream, group) not in self._groups:
            self.ensure_group(stream, group)
        try:
            return command()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._groups.discard((stream, group))
            raise StreamLost(stream) from exc

    def read(
        self, stream: str, group: str, consumer: str, *, count: int, block: float
    ) -> list[Entry]:
        """New entries for this consumer (waits up to ``block`` seconds for the first)."""
        answer = self._in_group(
            stream,
            group,
            lambda: self.redis.xreadgroup(
                group, consumer, {self.key(stream): ">"}, count=count, block=int(block * 1000)
            ),
        )
        return [e for _, entries in answer or [] for e in _entries(entries)]

    def ack(self, stream: str, group: str, entry_ids: list[str]) -> None:
        """Done with these entries: acknowledge them and delete them from the stream.

        (With the group gone there is nothing to acknowledge: the XACK answers NOGROUP.)"""
        if not entry_ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.key(stream), group, *entry_ids)
        pipe.xdel(self.key(stream), *entry_ids)
        pipe.execute(raise_on_error=False)

    def take_over(
        self, stream: str, group: str, consumer: str, *, idle: float, count: int = 200
    ) -> list[Entry]:
        """Entries some consumer has held unacknowledged for ``idle`` seconds, now ours."""
        taken: list[Entry] = []
        start = "0-0"
        while len(taken) < count:

            def claim(at: str = start) -> Any:
                return self.redis.xautoclaim(
                    self.key(stream), group, consumer, int(idle * 1000), at, count=count
                )

            answer = self._in_group(stream, group, claim)
            start, entries = answer[0], answer[1]
            taken.extend(_entries(entries))
            if start == "0-0":
                break
        return taken

    def hold(self, stream: str, group: str, consumer: str, entry_ids: list[str]) -> None:
        """Reset the idle time of entries this consumer is still working on."""
        ids: list[Any] = list(entry_ids)
        if ids:
            self._in_group(
                stream,
                group,
                lambda: self.redis.xclaim(self.key(stream), group, consumer, 0, ids, justid=True),
            )

    def refs(self, stream: str, page: int = 5000) -> set[int]:
        """Every row id the stream names (read or not): what needs no re-announcement."""
        found: set[int] = set()
        start = "-"
        while True:
            entries: Any = self.redis.xrange(self.key(stream), start, "+", count=page)
            found.update(e.ref for e in _entries(entries))
            if len(entries) < page:
                return found
            start = "(" + entries[-1][0]

    def forget_idle_consumers(self, stream: str, group: str, older_than: float = 3600) -> int:
        """Drop consumers that hold nothing and were not heard of for ``older_than`` seconds
        (each worker start names a new one)."""
        gone = 0
        for info in self.redis.xinfo_consumers(self.key(stream), group):
            if int(info["pending"]) == 0 and int(info["idle"]) > older_than * 1000:
                self.redis.xgroup_delconsumer(self.key(stream), group, info["name"])
                gone += 1
        return gone

    def try_lead(self, name: str, seconds: float) -> bool:
        """True for one caller among all processes per ``seconds`` (SET NX EX)."""
        lead = self.redis.set(
            self.key(f"lead:{name}"), consumer_name(), nx=True, px=int(seconds * 1000)
        )
        return bool(lead)


class StreamLost(Exception):
    """The stream or its group vanished (Redis restarted without its data, or was flushed)."""


def _entries(raw: list[Any]) -> Iterable[Entry]:
    for entry_id, fields in raw:
        if not fields:  # an entry deleted while pending: XAUTOCLAIM returns it without fields
            continue
        try:
            yield Entry(entry_id, int(fields["ref"]), str(fields.get("key", "")))
        except (KeyError, ValueError):
            log.warning("streams: ignoring a malformed entry %s", entry_id)


# --- the process's streams, for producers deep in the write paths -------------------------------
# Intake, the outbox and the Subscription matcher announce rows from wherever they are written;
# they find the process's Streams here (None: the embedded default, workers poll the tables).
_installed: Streams | None = None


def install(streams: Streams | None) -> None:
    global _installed
    _installed = streams


def installed() -> Streams | None:
    return _installed


def announce_inbox(inbox_id: int, patient_key: str | None) -> None:
    """Intake stored a pending message (committed): let a worker know."""
    if _installed is not None:
        _installed.announce(INBOX, inbox_id, lane_key(patient_key, inbox_id))


def announce_after_commit(conn: Connection, stream: str, ref: int, key: str) -> None:
    """Announce a row written in ``conn``'s transaction once that transaction committed."""
    streams = _installed
    if streams is not None:
        after_commit(conn, lambda: streams.announce(stream, ref, key))


# --- after commit ------------------------------------------------------------------------------
# SQLAlchemy's "commit" event fires *before* the database commits; a worker woken then could
# look before the row is visible and find nothing.  So callbacks are staged on the connection,
# moved to "committed" by the commit event (dropped by a rollback), and run when the
# connection goes back to the pool, which happens after the commit returned.
_STAGED = "hub.streams.staged"
_COMMITTED = "hub.streams.committed"


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    info = conn.info
    staged: list[Callable[[], None]] = info.setdefault(_STAGED, [])
    staged.append(callback)
    if not event.contains(conn, "commit", _on_commit):
        event.listen(conn, "commit", _on_commit)
        event.listen(conn, "rollback", _on_rollback)
    pool = conn.engine.pool
    if not event.contains(pool, "checkin", _on_checkin):
        event.listen(pool, "checkin", _on_checkin)


def _on_commit(conn: Connection) -> None:
    staged = conn.info.pop(_STAGED, None)
    if staged:
        conn.info.setdefault(_COMMITTED, []).extend(staged)


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_STAGED, None)


def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is None:
        return
    record.info.pop(_STAGED, None)  # never committed
    for callback in record.info.pop(_COMMITTED, None) or []:
        try:
            callback()
        except Exception:  # an announcement is an optimisation: the reconciler covers it
            log.exception("streams: an after-commit announcement failed")


def from_settings(settings: Any) -> Streams | None:
    """The process's Streams when ``HUB_REDIS_URL`` is set, else None (embedded default)."""
    if not settings.redis_url:
        return None
    return Streams(
        StreamSettings(
            settings.redis_url,
            prefix=settings.redis_prefix,
            claim_idle=settings.stream_claim_idle,
            reconcile_every=settings.stream_reconcile_seconds,
        )
    )
