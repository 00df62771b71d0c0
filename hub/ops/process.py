"""What every long-running hub process does at start and at SIGTERM.

Imports stay light here: the metrics directory must be chosen before prometheus_client is
first imported (the client picks file-backed or in-memory values at import time).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.config import Settings
from hub.ops.logs import LogFormat, configure_logging

log = logging.getLogger("hub.process")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def setup(settings: Settings, *, default_format: LogFormat, workers: int = 1) -> None:
    """Logging in the process's format; a shared metrics directory when several processes
    serve one endpoint.  Call before anything imports hub.ops.metrics."""
    install_signal_handlers()
    fmt = settings.log_format or default_format
    # uvicorn's worker processes build their app from the environment (hub.asgi).
    os.environ["HUB_LOG_FORMAT"] = fmt
    configure_logging(fmt, settings.log_level)
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="hub-metrics-")
    folder = os.environ.get(MULTIPROC_ENV)
    if folder:
        # The client's documented requirement: values of an earlier run would be summed in.
        Path(folder).mkdir(parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink(missing_ok=True)


def prepare_store(settings: Settings, *, attempts: int = 3) -> None:
    """Migrate (a no-op at head) and load what profiles/ holds (community resources, clients),
    exactly as ``hub serve`` does.

    Several processes start together in production (api replicas, mllp, workers): two of them
    writing the same new resource at once makes one fail on the unique key, so try again; the
    second pass finds everything written and changes nothing.
    """
    from sqlalchemy.exc import DBAPIError

    from hub.cli import _load_profiles
    from hub.store.migrate import upgrade

    for attempt in range(1, attempts + 1):
        try:
            upgrade(settings.db_url)
            _load_profiles(settings)
            return
        except DBAPIError as exc:
            if attempt == attempts:
                raise
            log.warning("preparing the store: %s; trying again", type(exc).__name__)
            time.sleep(attempt)


# Set by SIGTERM/SIGINT from the moment setup() ran: a signal that arrives while the process
# is still starting must stop it cleanly too, not kill it with the default action.
_stop = threading.Event()
_received: list[int] = []
_http: Any = None  # the uvicorn server, once there is one


def _on_signal(signum: int, _frame: Any) -> None:
    _received.append(signum)
    _stop.set()
    if _http is not None:
        _http.should_exit = True


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def wait_for_stop() -> int:
    """Block until SIGTERM or SIGINT (perhaps received already); the signal's number."""
    install_signal_handlers()
    _stop.wait()
    log.info("signal %s: draining", signal.Signals(_received[0]).name)
    return _received[0]


def run_http(app: Any, settings: Settings, *, workers: int = 1) -> None:
    """uvicorn with a graceful shutdown: on SIGTERM it stops accepting and lets requests in
    flight finish (``shutdown_timeout`` at most), then returns here."""
    import uvicorn

    global _http
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "log_config": None,  # keep the hub's formatter (JSON lines) for uvicorn's loggers too
        "access_log": False,  # request lines can carry identifiers; hub.http logs the route
        "timeout_graceful_shutdown": int(settings.shutdown_timeout),
    }
    if workers > 1:
        # uvicorn's supervisor forwards the signal to its worker processes and waits for them.
        uvicorn.run(app, workers=workers, **options)
        return
    server = uvicorn.Server(uvicorn.Config(app, **options))
    # While it serves, uvicorn has its own handlers; once drained it re-raises the signal
    # under ours, which only notes it, so the caller's own shutdown (the feeds of hub serve)
    # still runs and the process exits 0 instead of dying by the signal.
    _http = server
    install_signal_handlers()
    if _stop.is_set():
        return  # stopped while starting: nothing was served, nothing to drain
    server.run()
    if not server.started and not _stop.is_set():
        raise SystemExit(3)  # could not bind the port (uvicorn has logged why)


def on_stop(*steps: Callable[[], None]) -> None:
    """Run shutdown steps in order; one that fails does not skip the rest."""
    for step in steps:
        try:
            step()
        except Exception:
            log.exception("shutdown step failed")
