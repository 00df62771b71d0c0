"""A small HTTP endpoint for the processes that serve no HTTP of their own (``hub mllp``,
``hub worker``, ``hub scheduler``): ``/healthz``, ``/readyz`` and ``/metrics``, so that their
containers have health checks and Prometheus can scrape their counters.

The standard library's threaded server is enough: a probe every few seconds and a scrape every
fifteen, never on a hot path.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from sqlalchemy import Engine

from hub.ops import health, metrics

log = logging.getLogger("hub.ops")


class OpsServer:
    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        redis_url: str | None = None,
        thresholds: health.Thresholds = health.Thresholds(),
    ) -> None:
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, media = ops.answer(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds: not worth a line each

        self.engine, self.redis_url, self.thresholds = engine, redis_url, thresholds
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="ops-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def answer(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            return 200, b'{"status":"ok"}', "application/json"
        if path == "/readyz":
            result = health.check(self.engine, redis_url=self.redis_url, thresholds=self.thresholds)
            if not result.ready:
                log.warning("not ready: %s", ", ".join(result.failed))
            return (200 if result.ready else 503), orjson.dumps(result.body()), "application/json"
        if path == "/metrics":
            return 200, metrics.render(self.engine), metrics.CONTENT_TYPE
        return 404, b'{"error":"not found"}', "application/json"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
