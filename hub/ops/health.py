"""Readiness: is this process fit to take work?  The store answers, Redis answers (when the hub
is configured with one), and the inbox is not so far behind that more intake would only make
it worse.

Liveness (``/healthz``) is separate and touches nothing: a process whose store is down is
alive and must not be restarted for it; it is only not ready.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from adapters.logsafe import describe
from hub.ops.metrics import inbox_figures

# A check that has not answered in this many seconds has failed (a store that hangs on
# connect must not hang the probe, whose own timeout would then report nothing useful).
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Thresholds:
    """Inbox limits beyond which the process reports not ready; 0 turns a limit off."""

    max_inbox_depth: int = 10_000
    max_inbox_age: float = 900.0


@dataclass
class Readiness:
    ready: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["ok"]]

    def body(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "failed": self.failed,
            "checks": self.checks,
        }


class _RedisPing:
    """One client per URL, reused across probes (a probe every few seconds must not open a
    connection each time)."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str) -> None:
        import redis

        with self._lock:
            client = self._clients.get(url)
            if client is None:
                client = redis.Redis.from_url(
                    url, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT
                )
                self._clients[url] = client
        client.ping()


_redis_ping = _RedisPing()
# Checks run here so a hung driver call is abandoned after CHECK_TIMEOUT, not waited for.
_pool = ThreadPoolExecutor(4, thread_name_prefix="readiness")


def _timed(fn: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        value = _pool.submit(fn).result(CHECK_TIMEOUT)
    except FutureTimeout:
        return {"ok": False, "error": f"no answer in {CHECK_TIMEOUT:g} s"}
    except Exception as exc:
        # The exception's type and place only: a driver's message may quote the URL.
        return {"ok": False, "error": describe(exc).split(" at ")[0]}
    result: dict[str, Any] = {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}
    if isinstance(value, dict):
        result.update(value)
    return result


def _ping_store(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def check(
    engine: Engine, *, redis_url: str | None = None, thresholds: Thresholds = Thresholds()
) -> Readiness:
    """Run every check; not ready when any fails (each says why in the body)."""
    checks: dict[str, dict[str, Any]] = {"database": _timed(lambda: _ping_store(engine))}
    if redis_url:
        checks["redis"] = _timed(lambda: _redis_ping(redis_url))
    if checks["database"]["ok"]:
        inbox = _timed(lambda: _inbox(engine, thresholds))
        if inbox["ok"] and inbox.pop("over", None):
            inbox["ok"] = False
        checks["inbox"] = inbox
    else:
        checks["inbox"] = {"ok": False, "error": "the database is unreachable"}
    return Readiness(all(c["ok"] for c in checks.values()), checks)


def _inbox(engine: Engine, limits: Thresholds) -> dict[str, Any]:
    depth, age = inbox_figures(engine)
    result: dict[str, Any] = {
        "depth": depth,
        "oldest_age_seconds": round(age, 1),
        "max_depth": limits.max_inbox_depth,
        "max_age_seconds": limits.max_inbox_age,
    }
    reasons = []
    if limits.max_inbox_depth and depth > limits.max_inbox_depth:
        reasons.append(f"{depth} pending messages (limit {limits.max_inbox_depth})")
    if limits.max_inbox_age and age > limits.max_inbox_age:
        reasons.append(f"oldest pending message {age:.0f} s old (limit {limits.max_inbox_age:g})")
    if reasons:
        result["over"] = True
        result["error"] = "; ".join(reasons)
    return result
