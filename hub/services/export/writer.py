"""The chunked NDJSON writer: one job's resources into files of bounded size.

Each type is read in keyset-paged batches (``scope.batch_query``) outside any long transaction;
each line is the stored JSON parsed and written again compactly, so a line is certain to hold
exactly one resource and a row whose JSON is damaged is caught.  A file is cut at
``max_resources`` lines or ``max_bytes``, whichever comes first, and written in one
transaction with the lease fence
(``jobs.fence``), so memory stays at one file plus one batch, a cancel or a lost lease is seen
between chunks, and a half-written file never becomes visible.  A resource whose stored JSON
cannot be read does not stop the export: it becomes an OperationOutcome line in an error file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Connection, Engine

from hub.fhir.errors import Issue, operation_outcome
from hub.search.sql import execute
from hub.services.export import jobs, scope
from hub.services.export.jobs import SECOND, Job


@dataclass(frozen=True)
class Limits:
    max_resources: int = 10_000  # lines per file
    max_bytes: int = 8 * 1024 * 1024  # bytes per file (a file may pass it by one line)
    batch: int = 500  # rows read per query
    lease: int = 60 * SECOND  # renewed at every file and every few batches


class LeaseLost(Exception):
    """The job was cancelled or taken over by another runner: stop, write nothing more."""


class Interrupted(Exception):
    """The runner is stopping: hand the job back so that it restarts."""


@dataclass
class _Sink:
    """Lines of one type waiting to become a file."""

    res_type: str
    is_error: bool = False
    lines: list[bytes] = field(default_factory=list)
    size: int = 0
    seq: int = 0
    written: int = 0

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line) + 1


class JobWriter:
    """Writes one claimed job; ``run`` raises LeaseLost / Interrupted, or lets errors through."""

    def __init__(
        self,
        engine: Engine,
        job: Job,
        owner: str,
        limits: Limits,
        stop: threading.Event | None = None,
    ) -> None:
        self.engine, self.job, self.owner, self.limits = engine, job, owner, limits
        self.stop = stop
        self.types = job.types or list(scope.allowed_types(job.kind))
        self.errors = _Sink("OperationOutcome", is_error=True)
        self.done_types = 0
        self._renewed = time.monotonic()

    def run(self) -> None:
        if self.job.kind == "group":
            self._members()
        for res_type in self.types:
            sink = _Sink(res_type)
            self._export_type(sink)
            self._flush(sink)
            self.done_types += 1
        self._flush(self.errors)
        with self.engine.begin() as conn:
            if not jobs.complete(conn, self.job.id, self.owner):
                raise LeaseLost(self.job.id)

    def _members(self) -> None:
        assert self.job.group_id is not None
        with self.engine.begin() as conn:
            group = scope.read_group(conn, self.job.group_id)
            count = scope.fill_members(conn, self.job.id, group)
            self._fence(conn, f"Group/{self.job.group_id}: {count} patients")

    def _export_type(self, sink: _Sink) -> None:
        after = ""
        while True:
            if self.stop is not None and self.stop.is_set():
                raise Interrupted(self.job.id)
            query = scope.batch_query(
                kind=self.job.kind,
                job_id=self.job.id,
                res_type=sink.res_type,
                after=after,
                since=self.job.since,
                until=self.job.transaction_time or 0,
                limit=self.limits.batch,
            )
            with jobs.reading(self.engine) as conn:
                rows = execute(conn, query)
            for res_id, content in rows:
                self._add(sink, res_id, content)
                if self._full(sink):
                    self._flush(sink)
            if len(rows) < self.limits.batch:
                return
            after = rows[-1][0]
            self._heartbeat(sink)

    def _full(self, sink: _Sink) -> bool:
        return len(sink.lines) >= self.limits.max_resources or sink.size >= self.limits.max_bytes

    def _add(self, sink: _Sink, res_id: str, content: str | None) -> None:
        try:
            line = orjson.dumps(orjson.loads(content))  # type: ignore[arg-type]
        except (orjson.JSONDecodeError, TypeError):
            outcome = operation_outcome([Issue(
                "error", "processing",
                f"{sink.res_type}/{res_id}: the stored JSON cannot be read; left out of the export",
                expression=[sink.res_type],
            )])  # fmt: skip
            self.errors.add(orjson.dumps(outcome))
            if self._full(self.errors):
                self._flush(self.errors)
            return
        sink.add(line)

    def _progress(self, sink: _Sink) -> str:
        return (
            f"{sink.res_type}: {sink.written + len(sink.lines)} resources; "
            f"{self.done_types} of {len(self.types)} types done"
        )

    def _fence(self, conn: Connection, progress: str) -> None:
        if not jobs.fence(conn, self.job.id, self.owner, self.limits.lease, progress):
            raise LeaseLost(self.job.id)
        self._renewed = time.monotonic()

    def _heartbeat(self, sink: _Sink) -> None:
        """Between batches: renew the lease now and then, and notice a cancel early."""
        if time.monotonic() - self._renewed < self.limits.lease / SECOND / 4:
            return
        with self.engine.begin() as conn:
            self._fence(conn, self._progress(sink))

    def _flush(self, sink: _Sink) -> None:
        if not sink.lines:
            return
        content = b"\n".join(sink.lines) + b"\n"
        sink.seq += 1
        with self.engine.begin() as conn:
            self._fence(conn, self._progress(sink))
            jobs.add_file(
                conn, self.job.id, sink.res_type, sink.seq, len(sink.lines), content,
                is_error=sink.is_error,
            )  # fmt: skip
        sink.written += len(sink.lines)
        sink.lines, sink.size = [], 0
