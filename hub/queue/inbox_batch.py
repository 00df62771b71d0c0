"""Group commit for intake: inbox rows of messages arriving together share one transaction.

An accepted message is committed before it is acknowledged.  Committed one by one, each paid a
pool checkout, a round trip and a commit of its own: ~0.4 ms of the intake's CPU per message,
and a WAL flush each in PostgreSQL.  Here the first thread to find no batch in flight writes
every row waiting at that moment; rows arriving meanwhile wait, and the oldest of them is
handed the next batch (leader and followers: no extra thread, no timer), so a lone message is
written at once and a busy feed pays one commit per batch.

Each row still gets its own answer once the batch has committed: its inbox id, IntegrityError
when its sender and control id were accepted already (a resend, which intake answers from the
earlier row), or the error that failed it.  A batch that fails for any reason but an
unreachable store is written again row by row, so one bad row cannot fail the others.

PostgreSQL only: SQLite has one writer at a time, and the embedded hub feeds it one by one.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError, OperationalError

from hub.store.bulk import insert_each_returning
from hub.store.schema import inbox

# Rows written in one transaction at most; more wait for the next.
MAX_BATCH = 64
# A resend's row (same sender, same control id, accepted) is left out and answered apart.
_INSERT = (
    pg_insert(inbox)
    .on_conflict_do_nothing(index_elements=["sender", "control_id"], index_where=text("accepted"))
    .returning(inbox.c.id)
)
_OPTIONAL = ("error", "patient_key", "bundle", "app_ack", "reply_to", "applied_at")


class _Slot:
    __slots__ = ("done", "error", "inbox_id", "row", "turn")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.done = False
        self.inbox_id: int | None = None
        self.error: BaseException | None = None
        # Set when the row has been written, or when its thread is to write the next batch.
        self.turn = threading.Event()


class InboxBatcher:
    def __init__(self, engine: Engine, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._pending: list[_Slot] = []
        self._writing = False
        self._lock = threading.Lock()
        self.batches = 0  # committed batches, for tests and the benchmark

    def store(self, row: dict[str, Any]) -> int:
        """Insert the row; its id once committed.  IntegrityError for a resend's row."""
        slot = _Slot(row)
        with self._lock:
            self._pending.append(slot)
            leading = not self._writing
            self._writing = True
        if not leading:
            slot.turn.wait()
        if not slot.done:  # no batch in flight, or handed the next one: write it
            self._lead()
        if slot.error is not None:
            raise slot.error
        assert slot.inbox_id is not None
        return slot.inbox_id

    def _lead(self) -> None:
        """Write the oldest waiting rows, wake their threads, and hand the next batch to the
        oldest row still waiting.  Only the threads concerned are woken: waking every waiter
        after each batch (one condition for all) cost each of them a GIL round for nothing."""
        with self._lock:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
        try:
            self._write(batch)
        finally:
            with self._lock:
                for slot in batch:
                    slot.done = True
                successor = self._pending[0] if self._pending else None
                self._writing = successor is not None
            for slot in batch:
                slot.turn.set()
            if successor is not None:
                successor.turn.set()

    def _write(self, batch: list[_Slot]) -> None:
        try:
            self._insert(batch)
        except OperationalError as exc:  # the store is unreachable: every row failed alike
            for slot in batch:
                slot.error = exc
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for slot in batch:  # one by one: only the row at fault fails
                self._write([slot])
        else:
            self.batches += 1

    def _insert(self, batch: list[_Slot]) -> None:
        keys = set().union(*(slot.row for slot in batch), _OPTIONAL)
        rows = [{key: slot.row.get(key) for key in keys} for slot in batch]
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            if len(rows) == 1:  # alone: one statement, committed as it runs
                returned = [conn.execute(_INSERT, rows[0]).first()]
            else:
                returned = insert_each_returning(conn, _INSERT, rows)
        for slot, got in zip(batch, returned, strict=True):
            if got is None:
                slot.error = IntegrityError(
                    "INSERT INTO inbox", None, Exception("sender and control id already accepted")
                )
            else:
                slot.inbox_id = int(got[0])


_batchers: weakref.WeakKeyDictionary[Engine, InboxBatcher] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def batcher_for(engine: Engine) -> InboxBatcher:
    with _registry_lock:
        found = _batchers.get(engine)
        if found is None:
            found = _batchers[engine] = InboxBatcher(engine)
        return found
