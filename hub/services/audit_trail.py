"""The audit trail of writes: one AuditEvent per unit of work that writes patient data for a
caller, written by the unit itself, so the event commits or rolls back with the writes.

A write observer (``hub.services.observers``): it notes each Patient or Patient-compartment
resource the unit writes or deletes and, as the unit flushes, adds the event through the same
Writer (indexed like any resource, searchable at once).  If the event cannot be written the
unit fails, and with it the write: nothing is changed without a record of who changed it.
The hub's own work (the feed worker, the scheduler) has no caller and is not audited here:
its inbox and Provenance record where each change came from.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from hub.security.audit import Who, rest_event
from hub.security.audit_context import Interaction, RequestAudit, current_request
from hub.security.checks import caller
from hub.security.patient_data import Disclosure, patient_data_types
from hub.store.repository import StoredResource, Writer
from hub.store.schema import resource_history


def store_event(writer: Writer, event: dict[str, Any]) -> StoredResource:
    """The one place an access AuditEvent is written (reads and writes alike)."""
    return writer.create(event, observe=False)


def store_events(conn: Connection, events: list[dict[str, Any]]) -> None:
    """Write events in one transaction of their own, through the store's Writer (indexed)."""
    with conn.begin():
        writer = Writer(conn)
        for event in events:
            store_event(writer, event)
        writer.flush()


Batch = list[tuple[dict[str, Any], Future[None]]]


class GroupWriter:
    """Writes the events of reads (which have no unit of work of their own) with group commit.

    Events submitted while a commit is in flight go together in the next transaction, so a
    busy hub pays one BEGIN/COMMIT for many reads, on a connection the writer keeps while it
    has work (no pool checkout and liveness ping per event).  Each request still waits for the
    commit that holds its event: no answer leaves before its record is stored, and a failed
    write fails the requests it held.  One event that cannot be written does not fail its
    neighbours: the batch is retried one by one.  The thread (and its connection) leaves when
    idle and comes back with the next event.
    """

    MAX_BATCH = 200
    IDLE_SECONDS = 5.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: Batch = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._conn: Connection | None = None  # used by the writer thread only

    def submit(self, event: dict[str, Any]) -> Future[None]:
        done: Future[None] = Future()
        with self._wake:
            self._pending.append((event, done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-writer",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            self._wake.notify()
        return done

    def write(self, event: dict[str, Any]) -> None:
        """Submit and wait (for code already off the event loop: the login-failure hook)."""
        self.submit(event).result()

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    if not self._pending:
                        self._wake.wait(self.IDLE_SECONDS)
                        if not self._pending:
                            self._thread = None
                            return
                    batch = self._pending[: self.MAX_BATCH]
                    del self._pending[: self.MAX_BATCH]
                self._commit(batch)
        finally:
            self._drop()

    def _store(self, events: list[dict[str, Any]]) -> None:
        if self._conn is None:
            self._conn = self.engine.connect()
        try:
            store_events(self._conn, events)
        except Exception:
            self._drop()  # it may be broken: the next batch starts on a fresh one
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            # Closing a broken connection must not stop the writer.
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _commit(self, batch: Batch) -> None:
        try:
            self._store([event for event, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for event, done in batch:
                try:
                    self._store([event])
                except Exception as alone:
                    done.set_exception(alone)
                else:
                    done.set_result(None)
            return
        for _, done in batch:
            done.set_result(None)


def who_of(record: RequestAudit | None) -> Who | None:
    principal = caller()
    if principal is None:
        return None
    return Who(
        principal.client_id, principal.org, principal.token_id or None,
        record.address if record else None,
    )  # fmt: skip


class AuditTrail:
    """Collects what a unit of work writes; writes its AuditEvent as the unit flushes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.types = patient_data_types()
        self.seen = Disclosure()
        self.event_id: str | None = None
        self.pending = False

    def before_write(self, writer: Writer, resource: dict[str, Any], res_id: str) -> dict[str, Any]:
        if caller() is not None:
            self.seen.add(resource, res_id)
            self.pending = True
        return resource

    def after_delete(self, writer: Writer, res_type: str, res_id: str) -> None:
        if caller() is None:
            return
        # The deleted version's patient: the last stored content before the deletion.
        content = self.conn.execute(
            select(resource_history.c.content)
            .where(
                resource_history.c.res_type == res_type,
                resource_history.c.res_id == res_id,
                resource_history.c.deleted.is_(False),
            )
            .order_by(resource_history.c.version_id.desc())
            .limit(1)
        ).scalar()
        self.seen.add(orjson.loads(content) if content else {"resourceType": res_type}, res_id)
        self.pending = True

    def before_flush(self, writer: Writer) -> None:
        if not self.pending:
            return
        record = current_request()
        who = who_of(record)
        if who is None:
            return
        self.pending = False
        # Without an HTTP request (work done on a caller's behalf) the unit is the interaction.
        interaction = record.interaction if record else Interaction("transaction")
        description = None
        if self.seen.found > len(self.seen.resources):
            named = len(self.seen.resources)
            description = f"{self.seen.found} resources written; the first {named} named"
        event = rest_event(
            interaction, who, recorded=writer.last_updated, patients=list(self.seen.patients),
            resources=list(self.seen.resources), description=description,
            request_id=record.request_id if record else None,
        )  # fmt: skip
        if self.event_id is None:
            self.event_id = store_event(writer, event).res_id
        else:
            # A unit that flushes twice still has one event: the second flush rewrites it.
            writer.rewrite({**event, "id": self.event_id}, self.event_id)
        if record is not None:
            record.audited = True
