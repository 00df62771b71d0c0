"""The monthly feedback on its schedule: by default the 1st of each month at 02:00 (+08:00,
the community's zone) for the month before.

Every hub process may run the scheduler; the lease lets one of them run the month, and the
lease row's ``last_done`` tells the others (and a process started late, after the hub was down
at 02:00) that the month is done.  A failed run is tried again at the next tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, time

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from adapters.feeds.config import Community
from adapters.logsafe import describe
from hub.services.feedback.run import LEASE, LEASE_SECONDS, Summary, previous_month, run_month
from hub.store import leases

log = logging.getLogger("hub.feedback")


def due_month(now: datetime, day: int, at: time) -> str:
    """The latest month whose scheduled run time is not after ``now`` (in ``now``'s zone)."""
    moment = datetime.combine(now.date().replace(day=day), at, tzinfo=now.tzinfo)
    if now >= moment:
        return previous_month(now)
    return previous_month(now.replace(day=1) - _ONE_DAY)


class FeedbackScheduler:
    def __init__(
        self,
        engine: Engine,
        community: Community,
        *,
        day: int = 1,
        at: time = time(2, 0),
        poll_seconds: float = 60.0,
        clock: Callable[[], datetime] | None = None,
        base: str | None = None,
    ) -> None:
        if not 1 <= day <= 28:
            raise ValueError("the feedback day must be 1-28 (every month has it)")
        self.engine, self.community, self.day, self.at = engine, community, day, at
        self.poll_seconds, self.base = poll_seconds, base
        self.clock = clock or (lambda: datetime.now(community.tz))
        self.holder = leases.holder_name()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="feedback-schedule", daemon=True)

    def tick(self) -> Summary | None:
        """Run the due month if no process has; None when there was nothing to do."""
        target = due_month(self.clock().astimezone(self.community.tz), self.day, self.at)
        done = leases.last_done(self.engine, LEASE)
        if done is not None and done >= target:
            return None
        if not leases.acquire(self.engine, LEASE, self.holder, LEASE_SECONDS):
            return None  # another process is running it
        done = leases.last_done(self.engine, LEASE)  # it may have finished meanwhile
        if done is not None and done >= target:
            leases.release(self.engine, LEASE, self.holder)
            return None
        log.info("monthly feedback for %s starts", target)
        summary = run_month(
            self.engine, self.community, target, trigger="schedule", base=self.base,
            holder=self.holder, done=target,
        )  # fmt: skip
        log.info("monthly feedback for %s done: %d new, %d amended", target, summary.new,
                 summary.amended)  # fmt: skip
        return summary

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except OperationalError:
                log.warning("feedback schedule: store unavailable; retrying")
            except Exception as exc:  # the thread must outlive one bad run
                log.error("feedback schedule: run failed: %s", describe(exc))
            self._stop.wait(self.poll_seconds)


_ONE_DAY = datetime(2000, 1, 2) - datetime(2000, 1, 1)
