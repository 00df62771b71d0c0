"""Export jobs in the store: kick-off, status, cancel, and the lease that keeps a job to one runner.

A job is ``accepted`` until a runner claims it, ``in-progress`` while a runner holds its lease,
then ``completed`` or ``failed``.  Claiming is one conditional UPDATE (``WHERE status =
'accepted' OR the lease expired``), so two runners, in one process or on two hosts, never both
run a job: the loser's UPDATE matches no row.  Every file a runner writes goes in the same
transaction as an UPDATE that renews its lease and only matches while the runner still owns
the job (the fence): a runner that lost its lease, or whose job was cancelled, writes nothing
more.  A cancelled job is deleted with its files, so its status URL answers 404.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update

from hub.fhir.errors import Issue, operation_outcome
from hub.store.repository import now_micros
from hub.store.schema import export_files, export_jobs, export_members

SECOND = 1_000_000
# Completed and failed jobs are kept this long, then their files are deleted (the manifest
# says so in its Expires header).
KEEP_FOR = 2 * 24 * 3600 * SECOND
# A job whose runner died this many times is failed rather than started once more.
MAX_ATTEMPTS = 3
ACTIVE = ("accepted", "in-progress")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    group_id: str | None
    types: list[str] | None
    since: int | None
    request: str
    status: str
    progress: str | None
    error: dict[str, Any] | None
    created_at: int
    transaction_time: int | None
    finished_at: int | None
    lease_owner: str | None
    lease_until: int | None
    attempts: int
    requested_by: str | None = None


@dataclass(frozen=True)
class FileInfo:
    id: int
    res_type: str
    count: int
    is_error: bool


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that never waits for writers: autocommit on PostgreSQL, a deferred
    BEGIN on SQLite (the engine's default BEGIN IMMEDIATE would take the write lock)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            conn.execution_options(readonly=True)
        yield conn


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        requested_by=row.requested_by,
        kind=row.kind,
        group_id=row.group_id,
        types=orjson.loads(row.types) if row.types else None,
        since=row.since,
        request=row.request,
        status=row.status,
        progress=row.progress,
        error=orjson.loads(row.error) if row.error else None,
        created_at=row.created_at,
        transaction_time=row.transaction_time,
        finished_at=row.finished_at,
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        attempts=row.attempts,
    )


def create(
    conn: Connection,
    *,
    kind: str,
    request: str,
    group_id: str | None = None,
    types: list[str] | None = None,
    since: int | None = None,
    requested_by: str | None = None,
) -> str:
    job_id = uuid.uuid4().hex
    conn.execute(
        insert(export_jobs).values(
            id=job_id,
            requested_by=requested_by,
            kind=kind,
            group_id=group_id,
            types=orjson.dumps(types).decode() if types else None,
            since=since,
            request=request,
            status="accepted",
            progress="waiting for a runner",
            created_at=now_micros(),
            attempts=0,
        )
    )
    return job_id


def get(conn: Connection, job_id: str) -> Job | None:
    if "\x00" in job_id:  # no job has one, and PostgreSQL text cannot hold it (a 500)
        return None
    row = conn.execute(select(export_jobs).where(export_jobs.c.id == job_id)).first()
    return _job(row) if row is not None else None


def remove(conn: Connection, job_id: str) -> bool:
    """Delete a job and its files (cancel, or the client is done); False when unknown.

    The job row goes first: on PostgreSQL that waits for a runner's open file transaction
    (it holds the row through its fence), so the file delete after it sees that file too.
    """
    gone = conn.execute(delete(export_jobs).where(export_jobs.c.id == job_id)).rowcount
    conn.execute(delete(export_files).where(export_files.c.job_id == job_id))
    conn.execute(delete(export_members).where(export_members.c.job_id == job_id))
    return bool(gone)


def files(conn: Connection, job_id: str) -> list[FileInfo]:
    rows = conn.execute(
        select(export_files.c.id, export_files.c.res_type, export_files.c.count,
               export_files.c.is_error)
        .where(export_files.c.job_id == job_id)
        .order_by(export_files.c.id)
    ).all()  # fmt: skip
    return [FileInfo(int(r.id), r.res_type, int(r.count), bool(r.is_error)) for r in rows]


def file_slice(conn: Connection, job_id: str, file_id: int, start: int, size: int) -> bytes | None:
    """``size`` bytes of a file from byte ``start`` (0-based); None when the file is gone.

    ``substr`` on the BLOB/bytea reads a slice in the database, so a download never holds a
    whole file in memory.
    """
    row = conn.execute(
        select(func.substr(export_files.c.content, start + 1, size)).where(
            export_files.c.id == file_id, export_files.c.job_id == job_id
        )
    ).first()
    if row is None:
        return None
    return bytes(row[0] or b"")


# --- the runner's side -------------------------------------------------------------------------


def claim(engine: Engine, owner: str, lease: int) -> Job | None:
    """Take the oldest job that is waiting, or whose runner's lease ran out, and start it afresh.

    A job found in progress under an expired lease was being run by a process that died (or
    stalled): its partial files are dropped and it runs again from the start, up to
    ``MAX_ATTEMPTS`` runs; after that it fails with an OperationOutcome.
    """
    while True:
        now = now_micros()
        claimable = or_(
            export_jobs.c.status == "accepted",
            (export_jobs.c.status == "in-progress") & (export_jobs.c.lease_until < now),
        )
        with engine.begin() as conn:
            candidates = conn.execute(
                select(export_jobs.c.id).where(claimable).order_by(export_jobs.c.created_at)
                .limit(5)
            ).scalars().all()  # fmt: skip
            if not candidates:
                return None
            for job_id in candidates:
                taken = conn.execute(
                    update(export_jobs)
                    .where(export_jobs.c.id == job_id, claimable)
                    .values(
                        status="in-progress",
                        lease_owner=owner,
                        lease_until=now + lease,
                        # Whole milliseconds, as the manifest shows it: the next export's
                        # ``_since`` (later than this) then neither repeats nor misses a row.
                        transaction_time=now - now % 1000,
                        progress="started",
                        attempts=export_jobs.c.attempts + 1,
                    )
                ).rowcount
                if not taken:
                    continue  # another runner was quicker
                conn.execute(delete(export_files).where(export_files.c.job_id == job_id))
                conn.execute(delete(export_members).where(export_members.c.job_id == job_id))
                job = get(conn, job_id)
                assert job is not None
                if job.attempts > MAX_ATTEMPTS:
                    _end_failed(conn, job_id, _interrupted(job.attempts - 1), now)
                    break  # committed below; look again for another job
                return job


def _interrupted(times: int) -> dict[str, Any]:
    return operation_outcome([Issue(
        "error", "incomplete",
        f"the export was interrupted {times} times (its runner stopped); start a new export",
    )])  # fmt: skip


def _end_failed(conn: Connection, job_id: str, outcome: dict[str, Any], now: int) -> None:
    conn.execute(
        update(export_jobs)
        .where(export_jobs.c.id == job_id)
        .values(
            status="failed",
            error=orjson.dumps(outcome).decode(),
            finished_at=now,
            lease_owner=None,
            lease_until=None,
            progress=None,
        )
    )
    conn.execute(delete(export_files).where(export_files.c.job_id == job_id))
    conn.execute(delete(export_members).where(export_members.c.job_id == job_id))


def fence(conn: Connection, job_id: str, owner: str, lease: int, progress: str) -> bool:
    """Renew the lease and record progress, in the caller's transaction; False when the job
    was cancelled or another runner took it (the caller must then roll back and stop)."""
    return bool(
        conn.execute(
            update(export_jobs)
            .where(
                export_jobs.c.id == job_id,
                export_jobs.c.status == "in-progress",
                export_jobs.c.lease_owner == owner,
            )
            .values(lease_until=now_micros() + lease, progress=progress[:128])
        ).rowcount
    )


def add_file(
    conn: Connection, job_id: str, res_type: str, seq: int, count: int, content: bytes,
    *, is_error: bool = False,
) -> None:  # fmt: skip
    conn.execute(
        insert(export_files).values(
            job_id=job_id, res_type=res_type, seq=seq, count=count, content=content,
            is_error=is_error,
        )
    )  # fmt: skip


def complete(conn: Connection, job_id: str, owner: str) -> bool:
    return bool(
        conn.execute(
            update(export_jobs)
            .where(
                export_jobs.c.id == job_id,
                export_jobs.c.status == "in-progress",
                export_jobs.c.lease_owner == owner,
            )
            .values(
                status="completed", finished_at=now_micros(), lease_owner=None,
                lease_until=None, progress=None,
            )
        ).rowcount
    )  # fmt: skip


def fail(engine: Engine, job_id: str, owner: str, outcome: dict[str, Any]) -> bool:
    """End a job the runner owns as failed, its partial files dropped."""
    with engine.begin() as conn:
        owned = conn.execute(
            select(export_jobs.c.id).where(
                export_jobs.c.id == job_id,
                export_jobs.c.status == "in-progress",
                export_jobs.c.lease_owner == owner,
            )
        ).first()
        if owned is None:
            return False
        _end_failed(conn, job_id, outcome, now_micros())
        return True


def release(engine: Engine, job_id: str, owner: str) -> None:
    """Give a job back on an orderly stop: its lease ends now so the next runner restarts it,
    and this run does not count against its attempts."""
    with engine.begin() as conn:
        conn.execute(
            update(export_jobs)
            .where(
                export_jobs.c.id == job_id,
                export_jobs.c.status == "in-progress",
                export_jobs.c.lease_owner == owner,
            )
            .values(lease_until=0, lease_owner=None, progress="interrupted; will restart",
                    attempts=export_jobs.c.attempts - 1)
        )  # fmt: skip


def purge_expired(engine: Engine, keep_for: int = KEEP_FOR) -> int:
    """Delete finished jobs older than ``keep_for`` with their files; returns how many."""
    cutoff = now_micros() - keep_for
    with engine.begin() as conn:
        old = conn.execute(
            select(export_jobs.c.id).where(
                export_jobs.c.status.in_(("completed", "failed")),
                export_jobs.c.finished_at < cutoff,
            )
        ).scalars().all()  # fmt: skip
        for job_id in old:
            remove(conn, job_id)
    return len(old)
