"""The inbox worker: applies accepted messages' Bundles to the store, exactly once.

Each message's Bundle runs as one FHIR transaction, and the inbox row is marked ``applied`` in
that same database transaction, guarded by ``status = 'pending'``: a crash before the commit
leaves the message pending (it is applied again, from scratch, after a restart), and two
workers racing on one message cannot both commit.  Messages about the same patient go to the
same thread, so they apply in the order they were received; different patients run in
parallel.  A message the store refuses (a conditional reference that matches nothing, say) is
marked ``failed`` with the reason, for the office to fix and replay.  When the database is
unreachable the message stays pending and the thread backs off and tries the same message
again, so nothing behind it for that patient overtakes it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import OperationalError

from adapters.logsafe import describe
from hub.fhir.errors import FhirError
from hub.fhir.transaction import apply_transaction
from hub.ops import metrics
from hub.ops.logs import correlated, hl7_correlation_id, safe_id
from hub.queue.app_ack import queue_application_acks
from hub.queue.group_apply import mergeable_runs
from hub.queue.mapped_check import is_validated
from hub.queue.merge_guard import swapped_repeat
from hub.store.repository import now_micros
from hub.store.schema import inbox

log = logging.getLogger("hub.worker")
# References in the applied Bundles are relative; no response is sent anywhere.
_BASE = "urn:hub:feeds"
# Messages applied in one transaction at most (group commit).  Each transaction has fixed
# costs (locks, identifier look-ups, a COPY per table, the commit): at 100 rather than 25 a
# new-patient lab result took 0.07 ms less Python and 0.08 ms less PostgreSQL CPU.
GROUP_LIMIT = 100
# Messages a polling worker holds at most (queued in its lanes or being applied).
PREFETCH = 1000


class _AlreadyApplied(Exception):
    """Another worker committed one of these messages first: roll this attempt back."""


@dataclass
class _Message:
    status: str
    message_type: str
    bundle: dict[str, Any] | None  # parsed once, for planning; see ``take``
    sender: str = ""  # for the metrics' labels and the logs' correlation id
    control_id: str = ""
    text: str | None = None  # the stored Bundle JSON
    _taken: bool = False

    def take(self) -> dict[str, Any]:
        """The Bundle for one attempt to apply it, which the attempt changes in place: the
        parsed one the first time, a fresh parse of the stored text after (a retry, or one
        by one after a failed group)."""
        assert self.bundle is not None and self.text is not None
        if self._taken:
            fresh: dict[str, Any] = orjson.loads(self.text)
            return fresh
        self._taken = True
        return self.bundle

    @property
    def mergeable(self) -> bool:
        # A merge is checked against the store first (hub.queue.merge_guard), and a link or
        # unlink (A24/A37) runs its operation after its own writes: each on its own.
        return (
            self.status == "pending"
            and bool(self.bundle)
            and not self.is_merge
            and not self.message_type.startswith(("ADT^A24", "ADT^A37"))
        )

    @property
    def is_merge(self) -> bool:
        return self.message_type.startswith("ADT^A40")


def _load(engine: Engine, ids: list[int]) -> dict[int, _Message]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                inbox.c.id,
                inbox.c.status,
                inbox.c.message_type,
                inbox.c.bundle,
                inbox.c.sender,
                inbox.c.control_id,
            ).where(inbox.c.id.in_(ids))
        ).all()
    return {
        r.id: _Message(
            r.status,
            r.message_type,
            orjson.loads(r.bundle) if r.bundle else None,
            r.sender,
            r.control_id,
            r.bundle,
        )
        for r in rows
    }


def _apply(engine: Engine, ids: list[int], messages: list[_Message]) -> None:
    """These messages' Bundles as one FHIR transaction, their rows marked applied in it.

    Raises FhirError (the store refused), _AlreadyApplied, or OperationalError (store down).
    """
    validated = all(is_validated(m.bundle) for m in messages if m.bundle is not None)

    def fresh_bundle() -> dict[str, Any]:
        if len(messages) == 1:
            return messages[0].take()
        entries = [entry for m in messages for entry in m.take()["entry"]]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

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
            .returning(inbox.c.id, inbox.c.reply_to)
        ).all()
        if len(done) != len(ids):
            raise _AlreadyApplied
        # Only senders in enhanced mode are sent an application ACK: most batches need no
        # second look at their rows.
        if wanting := [row.id for row in done if row.reply_to is not None]:
            queue_application_acks(conn, wanting, "AA")

    apply_transaction(
        engine, fresh_bundle, base_url=_BASE, within=mark_applied, validated=validated
    )


def _apply_one(engine: Engine, inbox_id: int, message: _Message | None) -> str:
    """Apply one message on its own; its status afterwards (applied, failed, skipped, ...)."""
    if message is None:
        return "missing"
    with correlated(
        hl7_correlation_id(message.sender, message.control_id),
        sender=safe_id(message.sender),
        control_id=safe_id(message.control_id),
        inbox_id=inbox_id,
    ):
        status = _apply_one_in_context(engine, inbox_id, message)
    if message.status == "pending":  # what this attempt did, not a status read back
        metrics.count_applied(message.sender, message.message_type, status)
    return status


def _apply_one_in_context(engine: Engine, inbox_id: int, message: _Message) -> str:
    if message.status != "pending" or message.bundle is None:
        return message.status
    if message.is_merge:
        with engine.connect() as conn:
            reason = swapped_repeat(conn, message.bundle)
        if reason is not None:
            _finish(engine, inbox_id, "skipped", reason)
            return "skipped"
    try:
        _apply(engine, [inbox_id], [message])
    except _AlreadyApplied:
        return "applied"
    except FhirError as exc:
        _finish(engine, inbox_id, "failed", f"{exc.status} {exc}")
        return "failed"
    except OperationalError:
        raise
    except Exception as exc:  # a bug must not stop the feed; keep the message for replay
        log.error("applying inbox message %s failed: %s", inbox_id, describe(exc))
        _finish(engine, inbox_id, "failed", f"internal error: {type(exc).__name__}")
        return "failed"
    return "applied"


def apply_message(engine: Engine, inbox_id: int) -> str:
    """Apply one pending message; returns its status afterwards (applied, failed, ...).

    Raises OperationalError when the store is unavailable (the message stays pending).
    """
    return _apply_one(engine, inbox_id, _load(engine, [inbox_id]).get(inbox_id))


def _finish(engine: Engine, inbox_id: int, status: str, reason: str) -> None:
    with engine.begin() as conn:
        done = conn.execute(
            update(inbox)
            .where(inbox.c.id == inbox_id, inbox.c.status == "pending")
            .values(status=status, error=reason[:2000], attempts=inbox.c.attempts + 1)
        )
        if done.rowcount == 1:
            # Failed: AE.  Skipped (an echo of a merge already applied): nothing went wrong.
            code, text = ("AE", reason) if status == "failed" else ("AA", None)
            queue_application_acks(conn, [inbox_id], code, text)


def pending_ids(engine: Engine, limit: int = 500, after: int = 0) -> list[tuple[int, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(inbox.c.id, inbox.c.patient_key)
            .where(inbox.c.status == "pending", inbox.c.id > after)
            .order_by(inbox.c.id)
            .limit(limit)
        )
        return [(int(r.id), r.patient_key) for r in rows]


def apply_messages(engine: Engine, ids: list[int]) -> dict[str, int]:
    """Apply messages in order, several per transaction where they touch different resources
    (group commit, hub.queue.group_apply); counts by resulting status."""
    counts: dict[str, int] = {}
    loaded = _load(engine, ids)
    plan = [
        message.bundle
        if (message := loaded.get(i)) and message.mergeable and message.bundle
        else {}
        for i in ids
    ]
    for run in mergeable_runs(plan, GROUP_LIMIT):
        run_ids = [ids[i] for i in run]
        if len(run) > 1:
            try:
                # One correlation id for the group commit; its log fields list the messages.
                with correlated(f"inbox-group:{run_ids[0]}+{len(run_ids)}", inbox_ids=run_ids):
                    _apply(engine, run_ids, [loaded[inbox_id] for inbox_id in run_ids])
            except OperationalError:
                raise
            except Exception:  # refused, raced, or a bug: one by one isolates the culprit
                pass
            else:
                counts["applied"] = counts.get("applied", 0) + len(run)
                for inbox_id in run_ids:
                    if (message := loaded.get(inbox_id)) is not None:
                        metrics.count_applied(message.sender, message.message_type, "applied")
                continue
        for inbox_id in run_ids:
            status = _apply_one(engine, inbox_id, loaded.get(inbox_id))
            counts[status] = counts.get(status, 0) + 1
    return counts


def drain(engine: Engine) -> dict[str, int]:
    """Apply every pending message in order, in this thread (CLI, tests); counts by status."""
    counts: dict[str, int] = {}
    after = 0
    while batch := pending_ids(engine, after=after):
        for status, n in apply_messages(engine, [i for i, _ in batch]).items():
            counts[status] = counts.get(status, 0) + n
        after = batch[-1][0]
    return counts


class InboxWorker:
    """Background threads that drain the inbox while the hub runs."""

    def __init__(self, engine: Engine, *, threads: int = 2, poll_seconds: float = 0.5) -> None:
        self.engine = engine
        self.threads = max(1, threads)
        self.poll_seconds = poll_seconds
        self._queues: list[queue.Queue[int | None]] = [queue.Queue() for _ in range(self.threads)]
        self._inflight: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None

    def start(self) -> None:
        self._workers = [
            threading.Thread(target=self._work, args=(q,), name=f"inbox-worker-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for t in self._workers:
            t.start()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="inbox-dispatch", daemon=True
        )
        self._dispatcher.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking new messages; let the threads finish the one they are applying."""
        self._stop.set()
        self._wake.set()
        for q in self._queues:
            q.put(None)
        for t in [*self._workers, *([self._dispatcher] if self._dispatcher else [])]:
            t.join(timeout)

    def _dispatch(self) -> None:
        """Hand pending messages to the lanes, keeping up to PREFETCH in hand.

        Each poll reads only after the highest id handed out so far, so a backlog is read
        once rather than its oldest rows again and again; and the lanes wake the dispatcher
        when they finish a batch, so they are fed again at once.  Every ``poll_seconds`` (and
        whenever nothing new came) it also looks from the start, for messages put back to
        pending (replay) or committed out of id order while it read past them.
        """
        cursor = 0
        rescan_at = 0.0
        while not self._stop.is_set():
            with self._lock:
                room = PREFETCH - len(self._inflight)
            fresh: list[tuple[int, str | None]] = []
            if room > 0:
                try:
                    batch = pending_ids(self.engine, limit=min(room, 500), after=cursor)
                    if not batch or time.monotonic() >= rescan_at:
                        batch += pending_ids(self.engine, limit=500)
                        rescan_at = time.monotonic() + self.poll_seconds
                except OperationalError:
                    log.warning("inbox: store unavailable; retrying")
                    batch = []
                batch = sorted(dict(batch).items())  # by id: each lane applies in order
                with self._lock:
                    fresh = [(i, key) for i, key in batch if i not in self._inflight]
                    self._inflight.update(i for i, _ in fresh)
                for inbox_id, key in fresh:
                    lane = zlib.crc32((key or str(inbox_id)).encode()) % self.threads
                    self._queues[lane].put(inbox_id)
                    cursor = max(cursor, inbox_id)
            if not fresh:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def _work(self, lane: queue.Queue[int | None]) -> None:
        delay = 0.5
        while True:
            first = lane.get()
            if first is None:
                return
            batch = [first]
            # Whatever else already waits in this lane goes in the same group commit.
            while len(batch) < GROUP_LIMIT:
                try:
                    more = lane.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    lane.put(None)  # stop after this batch
                    break
                batch.append(more)
            applied = False
            while not self._stop.is_set():
                try:
                    self._apply_batch(batch)
                    applied, delay = True, 0.5
                    break
                except OperationalError:
                    log.warning("inbox: store unavailable; retrying %d messages", len(batch))
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
                except Exception as exc:  # a bug must not end the lane: retry later
                    log.error("inbox: applying %d messages failed: %s", len(batch), describe(exc))
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
            with self._lock:
                self._inflight.difference_update(batch)
            self._wake.set()  # room for more: the dispatcher reads on
            self._finished(batch, applied)
            if self._stop.is_set():
                return

    def _apply_batch(self, batch: list[int]) -> None:
        """Apply one lane's batch (the stream worker first applies earlier messages of the
        same patients that another process holds)."""
        apply_messages(self.engine, batch)

    def _finished(self, batch: list[int], applied: bool) -> None:
        """After a batch: ``applied`` is False when stopping cut its retries short (the
        stream worker acknowledges its entries only when True)."""
