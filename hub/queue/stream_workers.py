"""Workers fed by Redis Streams (hub.queue.streams): any number of processes on any hosts.

**Inbox.**  ``StreamInboxWorker`` is the InboxWorker (lanes, group commit, retries while the
store is down) with its table poll replaced by XREADGROUP on one stream shared by every worker
process.  A consumer group hands each entry to whichever consumer asks, so two processes may
hold messages of the same patient.  Rather than give each process a partition of the patients
(which needs partition ownership, leases and rebalancing on top of the group, and stalls a
partition while its owner is dead), the order is kept where the record is: before a batch is
applied, the patient's *earlier* messages still pending in the inbox are applied first, in id
order, by this worker.  Applying is guarded by ``status = 'pending'`` in the same transaction
(a second worker racing on one message waits for the row lock and then finds it applied), so
whichever worker gets there first applies a message, exactly once, and never after a later
message of its patient.  Entries are acknowledged after the batch's transactions committed.

**Maintenance** (a thread per worker): refreshes the idle time of the entries it holds, takes
over entries a dead consumer held for ``claim_idle`` seconds, and, led by one process at a
time, reconciles: rows pending in the inbox for a few seconds that no stream entry names are
announced again (after a Redis restart or flush, or when a killed process took its
announcement with it).

**Outbox and Subscription notifications.**  ``StreamDelivery`` runs an OutboxDelivery (or
SubscriptionDelivery) from its stream: an entry names a destination (a Subscription), and the
consumer that reads it delivers that destination's due messages in order, through the same
database claims as before, so two consumers never send one message and a destination's order
holds.  Retries after back-off and anything never announced are found by the same database
pass as in the embedded mode, run every ``poll_seconds``: for these queues the table pass *is*
the reconciler.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from sqlalchemy import Engine, bindparam, func, select
from sqlalchemy.exc import OperationalError

from adapters.logsafe import describe
from hub.queue import streams as st
from hub.queue.outbox import OutboxDelivery
from hub.queue.worker import GROUP_LIMIT, InboxWorker, apply_messages
from hub.store.repository import now_micros
from hub.store.schema import inbox

log = logging.getLogger("hub.worker")
GROUP = "workers"  # the inbox's consumer group
DELIVERY_GROUP = "delivery"
_GRACE_US = 5_000_000  # a row this new may still be on its way to the stream: not reconciled
_CHUNK = 200  # predecessors applied per call (each call loads its Bundles at once)


def with_predecessors(engine: Engine, ids: list[int]) -> list[int]:
    """``ids`` plus every earlier message still pending for the same patients, in id order."""
    if not ids:
        return []
    batch = inbox.alias("batch")
    last = (
        select(batch.c.patient_key, func.max(batch.c.id).label("last"))
        .where(batch.c.id.in_(bindparam("ids", expanding=True)))
        .where(batch.c.patient_key.is_not(None))
        .group_by(batch.c.patient_key)
        .subquery()
    )
    query = (
        select(inbox.c.id)
        .join(last, (inbox.c.patient_key == last.c.patient_key) & (inbox.c.id < last.c.last))
        .where(inbox.c.status == "pending")
    )
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        earlier = conn.execute(query, {"ids": ids}).scalars().all()
    return sorted(set(ids).union(int(i) for i in earlier))


def apply_in_order(engine: Engine, ids: list[int]) -> dict[str, int]:
    """Apply these messages after their patients' earlier pending ones (see the module)."""
    counts: dict[str, int] = {}
    ordered = with_predecessors(engine, ids)
    for at in range(0, len(ordered), _CHUNK):
        for status, n in apply_messages(engine, ordered[at : at + _CHUNK]).items():
            counts[status] = counts.get(status, 0) + n
    return counts


def reconcile(engine: Engine, streams: st.Streams, *, grace_us: int = _GRACE_US) -> int:
    """Announce again every inbox row pending for ``grace_us`` that no stream entry names;
    how many.  The stream is read first: a row applied (and its entry deleted) in between is
    no longer pending; one announced twice is applied once."""
    listed = streams.refs(st.INBOX)
    cutoff = now_micros() - grace_us
    missing: list[tuple[str, int, str]] = []
    after = 0
    while True:
        with engine.connect() as conn:
            conn.execution_options(readonly=True)
            rows = conn.execute(
                select(inbox.c.id, inbox.c.patient_key)
                .where(inbox.c.status == "pending", inbox.c.id > after)
                .where(inbox.c.received_at < cutoff)
                .order_by(inbox.c.id)
                .limit(5000)
            ).all()
        missing.extend(
            (st.INBOX, int(r.id), st.lane_key(r.patient_key, int(r.id)))
            for r in rows
            if int(r.id) not in listed
        )
        if len(rows) < 5000:
            break
        after = int(rows[-1].id)
    for at in range(0, len(missing), 1000):
        streams.publish(missing[at : at + 1000])
    if missing:
        log.info("streams: %d pending inbox messages announced again", len(missing))
    return len(missing)


class StreamInboxWorker(InboxWorker):
    """Threads applying inbox messages read from the shared stream (see the module)."""

    def __init__(
        self,
        engine: Engine,
        streams: st.Streams,
        *,
        threads: int = 2,
        consumer: str | None = None,
    ) -> None:
        super().__init__(engine, threads=threads)
        self.streams = streams
        self.consumer = consumer or st.consumer_name()
        # Entries read ahead of the lanes: one group commit's worth a thread, so a worker that
        # dies strands little for the others to take over and a burst's last entries are not
        # hoarded by one worker while the other idles.
        self.prefetch = self.threads * GROUP_LIMIT
        self._entries: dict[int, list[str]] = {}  # inbox id → entries naming it
        self._lost = threading.Event()  # Redis lost the stream: reconcile at once
        self._maintainer: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self._maintainer = threading.Thread(
            target=self._maintain, name="inbox-streams", daemon=True
        )
        self._maintainer.start()

    def wake(self) -> None:
        """Nothing to do: whatever was stored was announced on the stream."""

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        if self._maintainer is not None:
            self._maintainer.join(timeout)

    # --- reading ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            with self._lock:
                room = self.prefetch - len(self._inflight)
            if room <= 0:
                self._stop.wait(0.05)
                continue
            try:
                entries = self.streams.read(st.INBOX, GROUP, self.consumer, count=room, block=1.0)
                delay = 0.5
            except st.StreamLost:
                log.warning("streams: the inbox stream is gone (Redis restarted?); rebuilding")
                self._lost.set()
                continue
            except redis.RedisError as exc:
                log.warning("streams: Redis unavailable (%s); retrying", type(exc).__name__)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._take(entries)

    def _take(self, entries: list[st.Entry]) -> None:
        """Hand entries to the lanes; one already in hand is only noted (acknowledged with it)."""
        fresh: list[st.Entry] = []
        with self._lock:
            for entry in entries:
                held = self._entries.setdefault(entry.ref, [])
                held.append(entry.entry_id)
                if entry.ref not in self._inflight:
                    self._inflight.add(entry.ref)
                    fresh.append(entry)
        for entry in fresh:
            lane = int(entry.key) % self.threads if entry.key.isdigit() else 0
            self._queues[lane].put(entry.ref)

    # --- after a batch ------------------------------------------------------------------------

    def _apply_batch(self, batch: list[int]) -> None:
        apply_in_order(self.engine, batch)

    def _finished(self, batch: list[int], applied: bool) -> None:
        with self._lock:
            entry_ids = [e for i in batch for e in self._entries.pop(i, [])]
        if not applied:
            return  # stopping mid-retry: the entries stay pending, for another worker
        try:
            self.streams.ack(st.INBOX, GROUP, entry_ids)
        except redis.RedisError as exc:
            # Applied and committed: an entry left unacknowledged is taken over later and
            # found applied.
            log.warning("streams: could not acknowledge %d entries (%s)",
                        len(entry_ids), type(exc).__name__)  # fmt: skip

    # --- maintenance --------------------------------------------------------------------------

    def _maintain(self) -> None:
        cfg = self.streams.settings
        hold_every = max(cfg.claim_idle / 3, 0.2)
        next_hold = next_take = time.monotonic() + hold_every
        next_reconcile = 0.0  # at start: the stream may have lost rows while no worker ran
        while not self._stop.wait(0.1):
            now = time.monotonic()
            try:
                if self._lost.is_set():
                    self._lost.clear()
                    self.streams.ensure_group(st.INBOX, GROUP)
                    reconcile(self.engine, self.streams)
                    next_reconcile = now + cfg.reconcile_every
                if now >= next_hold:
                    with self._lock:
                        held = [e for ids in self._entries.values() for e in ids]
                    self.streams.hold(st.INBOX, GROUP, self.consumer, held)
                    next_hold = now + hold_every
                if now >= next_take:
                    self._take(self.streams.take_over(
                        st.INBOX, GROUP, self.consumer, idle=cfg.claim_idle
                    ))  # fmt: skip
                    next_take = now + max(cfg.claim_idle / 2, 0.2)
                if now >= next_reconcile:
                    next_reconcile = now + cfg.reconcile_every
                    if self.streams.try_lead("inbox-reconcile", cfg.reconcile_every * 0.9):
                        self.streams.ensure_group(st.INBOX, GROUP)
                        reconcile(self.engine, self.streams)
                        self.streams.forget_idle_consumers(st.INBOX, GROUP)
            except st.StreamLost:
                self._lost.set()
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self._lost.set()
                else:
                    log.warning("streams: maintenance: %s", describe(exc))
            except (redis.RedisError, OperationalError) as exc:
                log.warning("streams: maintenance postponed (%s)", type(exc).__name__)
            except Exception as exc:  # the thread must outlive one bad pass
                log.error("streams: maintenance failed: %s", describe(exc))


class StreamDelivery:
    """Runs a delivery (outbox or Subscription rest-hooks) from its stream (see the module)."""

    def __init__(
        self,
        delivery: OutboxDelivery,
        streams: st.Streams,
        stream: str,
        *,
        poll_seconds: float = 2.0,
        consumer: str | None = None,
    ) -> None:
        self.delivery, self.streams, self.stream = delivery, streams, stream
        self.poll_seconds = poll_seconds
        self.consumer = consumer or st.consumer_name()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{stream}-streams", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Nothing to do: new rows are announced on the stream."""

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.delivery.stop(timeout)  # its own thread never ran; this closes what it holds

    def _run(self) -> None:
        next_pass = next_take = 0.0
        delay = 0.5
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_pass:
                    # Due retries and rows never announced: the database pass, as embedded.
                    while self.delivery.deliver_once() and not self._stop.is_set():
                        pass
                    next_pass = time.monotonic() + self.poll_seconds
                entries: list[st.Entry] = []
                if now >= next_take:
                    entries = self.streams.take_over(
                        self.stream, DELIVERY_GROUP, self.consumer,
                        idle=self.streams.settings.claim_idle,
                    )  # fmt: skip
                    next_take = now + self.streams.settings.claim_idle / 2
                wait = max(0.05, min(1.0, next_pass - time.monotonic()))
                entries += self.streams.read(
                    self.stream, DELIVERY_GROUP, self.consumer, count=50, block=wait
                )
                for key in dict.fromkeys(e.key for e in entries):
                    while self.delivery.deliver_to(key) and not self._stop.is_set():
                        pass  # this destination's next message, until none is due
                self.streams.ack(self.stream, DELIVERY_GROUP, [e.entry_id for e in entries])
                delay = 0.5
            except st.StreamLost:
                continue  # recreated at the next read; the database pass covers the gap
            except redis.RedisError as exc:
                log.warning("%s: Redis unavailable (%s); delivering by polling meanwhile",
                            self.stream, type(exc).__name__)  # fmt: skip
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
                next_pass = 0.0
            except OperationalError:
                log.warning("%s: store unavailable; retrying", self.stream)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:  # a pass that failed must not end delivery for good
                log.error("%s: delivery pass failed: %s", self.stream, describe(exc))
                self._stop.wait(delay)
