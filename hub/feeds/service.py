"""The feed service: an MLLP listener and the inbox worker, running beside the HTTP API.

The listener runs its own asyncio loop in a thread, so it works the same whether uvicorn runs
one process or several (the service lives in the ``hub serve`` process).  Intake does blocking
database work, so it runs on a small thread pool; the loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine

from adapters.feeds.config import Community
from adapters.hl7v2.ack import minimal_ack_for
from adapters.mllp.listener import MLLPServer
from adapters.sqlview.config import load_sql_feeds
from hub.ops.metrics import ACK_LATENCY
from hub.queue.intake import receive
from hub.queue.outbox import OutboxDelivery, Policy
from hub.queue.sql_intake import SqlPoller
from hub.queue.stream_workers import StreamDelivery, StreamInboxWorker
from hub.queue.streams import NOTIFICATIONS, OUTBOX, Streams
from hub.queue.streams import install as install_streams
from hub.queue.worker import InboxWorker
from hub.services.export.runner import ExportRunner
from hub.services.routing import hooks as _routing_hooks  # noqa: F401  (delivery hooks)
from hub.services.subscriptions.delivery import SubscriptionDelivery

log = logging.getLogger("hub.feeds")


def reject_unexpected(payload: bytes, _peer: str) -> bytes:
    """The answer when intake itself failed (the store is down): AR, so the sender resends."""
    return minimal_ack_for(
        payload, "AR", "the hub could not store the message; send it again later"
    )


class FeedService:
    def __init__(
        self,
        engine: Engine,
        community: Community,
        *,
        mllp_host: str = "127.0.0.1",
        mllp_port: int | None = 2575,
        worker_threads: int = 2,
        intake_threads: int = 8,
        run_worker: bool = True,
        scheduler: Any | None = None,
        tls: ssl.SSLContext | None = None,
        outbox_policy: Policy | None = None,
        streams: Streams | None = None,
    ) -> None:
        self.engine = engine
        self.community = community
        # With Redis (``streams``): the queues' work travels on Redis Streams, shared with
        # every other worker process; without, this process polls the tables (embedded).
        self.streams = streams
        self.worker: InboxWorker | None = None
        self.delivery: OutboxDelivery | StreamDelivery | None = None
        self.subscriptions: OutboxDelivery | StreamDelivery | None = None
        if run_worker:
            outbound = OutboxDelivery(engine, policy=outbox_policy or Policy())
            hooks = SubscriptionDelivery(engine)
            if streams is None:
                self.worker = InboxWorker(engine, threads=worker_threads)
                self.delivery, self.subscriptions = outbound, hooks
            else:
                self.worker = StreamInboxWorker(engine, streams, threads=worker_threads)
                self.delivery = StreamDelivery(outbound, streams, OUTBOX)
                self.subscriptions = StreamDelivery(hooks, streams, NOTIFICATIONS)
        self.scheduler = scheduler  # the monthly feedback's (hub serve / hub worker)
        # Bulk Data export jobs ($export) run beside the outbox, wherever the worker runs.
        self.export = ExportRunner(engine) if run_worker else None
        self.sql = (
            SqlPoller(engine, community, load_sql_feeds(), on_stored=self._wake_worker)
            if run_worker
            else None
        )
        self._pool = ThreadPoolExecutor(intake_threads, thread_name_prefix="intake")
        # No port: only the worker runs (HTTP intake and files still feed the inbox).
        self.server = (
            MLLPServer(
                self.handle,
                host=mllp_host,
                port=mllp_port,
                fallback=reject_unexpected,
                on_answered=ACK_LATENCY.observe,
                tls=tls,
            )
            if mllp_port is not None
            else None
        )
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int | None:
        return self.server.port if self.server is not None else None

    async def handle(self, payload: bytes, peer: str) -> bytes | None:
        receipt = await asyncio.get_running_loop().run_in_executor(
            self._pool,
            lambda: receive(self.engine, payload, self.community, transport="mllp", peer=peer),
        )
        if self.worker is not None and receipt.status == "pending":
            self.worker.wake()
        return receipt.ack

    def _wake_worker(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    def start(self) -> None:
        if self.streams is not None:
            # Intake, the outbox and the Subscription matcher announce through it from here on.
            self.streams.start()
            install_streams(self.streams)
        if self.worker is not None:
            self.worker.start()
        if self.delivery is not None:
            self.delivery.start()
        if self.scheduler is not None:
            self.scheduler.start()
        if self.export is not None:
            self.export.start()
        if self.subscriptions is not None:
            self.subscriptions.start()
        if self.sql is not None:
            self.sql.start()
        if self.server is None:
            return
        self._thread = threading.Thread(target=self._run, name="mllp", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"the MLLP listener could not start: {self._error}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        assert self.server is not None
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def stop(self, timeout: float = 30.0) -> None:
        """Drain: the listener ACKs the messages in hand and closes (``timeout`` at most), the
        intake pool finishes storing, then the worker finishes the messages it is applying."""
        if self.server is not None and self._thread is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.server.stop(timeout), self._loop)
            try:
                future.result(timeout + 5)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(30)
        self._pool.shutdown(wait=True)
        if self.worker is not None:
            self.worker.stop(timeout)
        if self.delivery is not None:
            self.delivery.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.export is not None:
            self.export.stop()
        if self.subscriptions is not None:
            self.subscriptions.stop()
        if self.sql is not None:
            self.sql.stop()
        if self.streams is not None:
            # Last: intake has stopped announcing; what is buffered is published (or, with
            # Redis away, left to the reconciler).
            install_streams(None)
            self.streams.stop()
