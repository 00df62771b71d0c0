"""Running export jobs: ``run_pending`` (one pass, for tests and tools) and the ``ExportRunner``
thread that ``hub serve`` / ``hub worker`` keep running.

A job resumes or fails cleanly, never stays in progress: any error ends it ``failed`` with an
OperationOutcome; an orderly stop hands it back to restart; a runner that dies leaves a lease
that expires, after which any runner (this host's next start, or another host) restarts the
job from scratch, its partial files dropped, up to ``jobs.MAX_ATTEMPTS`` runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from adapters.logsafe import describe
from hub.fhir.errors import FhirError, Issue, operation_outcome
from hub.services.export import jobs
from hub.services.export.jobs import Job
from hub.services.export.writer import Interrupted, JobWriter, LeaseLost, Limits

log = logging.getLogger("hub.export")

# The runners of this process, so that a kick-off can wake one instead of waiting for its poll.
_RUNNERS: set[ExportRunner] = set()
_RUNNERS_LOCK = threading.Lock()


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def wake_runners() -> int:
    """Wake every runner in this process; returns how many (0: a runner elsewhere polls)."""
    with _RUNNERS_LOCK:
        running = list(_RUNNERS)
    for runner in running:
        runner.wake()
    return len(running)


def run_job(
    engine: Engine, job: Job, owner: str, limits: Limits, stop: threading.Event | None = None
) -> str:
    """Run one claimed job to its end; returns what became of it (for logs and tests)."""
    try:
        JobWriter(engine, job, owner, limits, stop).run()
    except LeaseLost:
        log.info("export %s: cancelled or taken over; stopped", job.id)
        return "lost"
    except Interrupted:
        jobs.release(engine, job.id, owner)
        return "released"
    except Exception as exc:  # whatever it is, the job must end, not hang
        if isinstance(exc, FhirError):
            outcome = exc.outcome  # e.g. the Group was deleted after the kick-off
        else:
            log.error("export %s failed: %s", job.id, describe(exc))
            # Never the exception's text: it may carry clinical content.
            outcome = operation_outcome([Issue(
                "fatal", "exception",
                f"the export stopped on an internal error ({type(exc).__name__}); "
                "start a new export",
            )])  # fmt: skip
        try:
            jobs.fail(engine, job.id, owner, outcome)
        except OperationalError:
            # The store is away: the lease will expire and the job restart.
            log.warning("export %s: could not record the failure; it will restart", job.id)
        return "failed"
    return "completed"


def run_pending(
    engine: Engine,
    *,
    owner: str | None = None,
    limits: Limits = Limits(),
    stop: threading.Event | None = None,
) -> int:
    """Claim and run jobs until none is waiting; returns how many were run."""
    owner = owner or new_owner()
    ran = 0
    while stop is None or not stop.is_set():
        job = jobs.claim(engine, owner, limits.lease)
        if job is None:
            break
        run_job(engine, job, owner, limits, stop)
        ran += 1
    return ran


class ExportRunner:
    """A background thread that runs export jobs while the hub runs."""

    def __init__(
        self,
        engine: Engine,
        *,
        limits: Limits = Limits(),
        poll_seconds: float = 2.0,
        purge_seconds: float = 3600.0,
    ) -> None:
        self.engine, self.limits = engine, limits
        self.poll_seconds, self.purge_seconds = poll_seconds, purge_seconds
        self.owner = new_owner()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="export", daemon=True)

    def start(self) -> None:
        with _RUNNERS_LOCK:
            _RUNNERS.add(self)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        with _RUNNERS_LOCK:
            _RUNNERS.discard(self)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        purged_at = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - purged_at >= self.purge_seconds:
                    jobs.purge_expired(self.engine)
                    purged_at = time.monotonic()
                run_pending(self.engine, owner=self.owner, limits=self.limits, stop=self._stop)
            except OperationalError:
                log.warning("export: store unavailable; retrying")
            except Exception as exc:  # the thread must outlive one bad pass
                log.error("export runner: %s", describe(exc))
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
