"""Prometheus metrics: counters and histograms in the hot paths, queue depths from the store.

Hot paths only increment a counter or observe a histogram (a lock and an add, no I/O).  Queue
depths and ages are read from the database when Prometheus scrapes, so every process reports
the same, true figure however many API, MLLP and worker processes share the store.

Several uvicorn workers in one container: set ``PROMETHEUS_MULTIPROC_DIR`` (``hub api`` and
``hub serve`` make one when ``--workers`` > 1) before the first import of prometheus_client;
counters and histograms are then kept in files there and summed over processes at scrape time.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from hub.store.repository import now_micros
from hub.store.schema import inbox, outbox, subscription_notifications

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# --- label values: bounded, whatever the senders put in MSH ------------------------------------
# A label value is kept only if it looks like a code, and only the first _MAX_VALUES distinct
# values per label are kept: a fuzzer (or a broken sender) cannot blow up the series count.
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_TYPE = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\^([A-Z0-9]{2,3}))?")
_MAX_VALUES = 200
_seen: dict[str, set[str]] = {"sender": set(), "message_type": set(), "destination": set()}
_seen_lock = threading.Lock()


def _bounded(kind: str, value: str) -> str:
    seen = _seen[kind]
    if value in seen:
        return value
    with _seen_lock:
        if len(seen) >= _MAX_VALUES:
            return "other"
        seen.add(value)
    return value


def sender_label(sender: str | None) -> str:
    sender = (sender or "").strip()
    if not sender:
        return "unknown"
    return _bounded("sender", sender) if _CODE.match(sender) else "other"


def message_type_label(message_type: str | None) -> str:
    """``ORU^R01^ORU_R01`` → ``ORU^R01``; anything that is not a message type → ``other``."""
    match = _TYPE.match((message_type or "").strip())
    if match is None:
        return "other"
    value = match.group(1) + (f"^{match.group(2)}" if match.group(2) else "")
    return _bounded("message_type", value)


# --- the metrics -----------------------------------------------------------------------------
MESSAGES_RECEIVED = Counter(
    "hub_feed_messages_received_total",
    "HL7 v2 messages received by intake (MLLP, HTTP, files, SQL), by the ACK code sent",
    ["sender", "message_type", "ack"],
)
MESSAGES_APPLIED = Counter(
    "hub_feed_messages_applied_total",
    "Inbox messages applied to the store by the worker",
    ["sender", "message_type"],
)
MESSAGES_FAILED = Counter(
    "hub_feed_messages_failed_total",
    "Messages refused at intake (AE/AR) or failed when applied (kept for replay)",
    ["sender", "message_type", "stage"],
)
ACK_LATENCY = Histogram(
    "hub_mllp_ack_latency_seconds",
    "MLLP: from a frame received to its ACK written to the socket",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_LATENCY = Histogram(
    "hub_http_request_duration_seconds",
    "HTTP requests by method, route template and status class",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
SUBSCRIPTION_DELIVERIES = Counter(
    "hub_subscription_deliveries_total",
    "Subscription rest-hook delivery attempts: sent, retry (will try again), failed (gave up)",
    ["outcome"],
)


def count_received(sender: str, message_type: str, ack: str) -> None:
    s, t = sender_label(sender), message_type_label(message_type)
    # Enhanced-mode commit ACKs (CA/CE/CR) count with their original-mode peers.
    code = {"CA": "AA", "CE": "AE", "CR": "AR"}.get(ack, ack)
    MESSAGES_RECEIVED.labels(s, t, code if code in ("AA", "AE", "AR") else "other").inc()
    if code != "AA":
        MESSAGES_FAILED.labels(s, t, "intake").inc()


def count_applied(sender: str, message_type: str, status: str) -> None:
    s, t = sender_label(sender), message_type_label(message_type)
    if status == "applied":
        MESSAGES_APPLIED.labels(s, t).inc()
    elif status == "failed":
        MESSAGES_FAILED.labels(s, t, "apply").inc()


# --- figures read from the store at scrape time ----------------------------------------------
class StoreCollector(Collector):
    """Inbox, outbox and Subscription queue depths and ages, queried when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: no query when the collector is registered

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hub_store_up", "1 when the store answered the scrape's queries")
        try:
            figures = queue_figures(self.engine)
        except Exception:  # the store is down: say so, and report no stale depths
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "hub_inbox_depth", "Inbox messages accepted and not yet applied",
            value=figures.inbox_pending,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "hub_inbox_oldest_pending_age_seconds",
            "Age of the oldest pending inbox message (0 when none is pending)",
            value=figures.inbox_oldest_age,
        )
        yield GaugeMetricFamily(
            "hub_inbox_failed", "Inbox messages failed when applied, waiting for a replay",
            value=figures.inbox_failed,
        )  # fmt: skip
        depth = GaugeMetricFamily(
            "hub_outbox_depth", "Outbox messages waiting for delivery", labels=["destination"]
        )
        dead = GaugeMetricFamily(
            "hub_outbox_dead_letters", "Outbox messages given up on", labels=["destination"]
        )
        for destination, (pending, failed) in sorted(figures.outbox.items()):
            depth.add_metric([destination], pending)
            dead.add_metric([destination], failed)
        yield depth
        yield dead
        yield GaugeMetricFamily(
            "hub_subscription_notifications_pending",
            "Subscription notifications waiting for delivery",
            value=figures.subscriptions_pending,
        )


class QueueFigures:
    __slots__ = (
        "inbox_failed",
        "inbox_oldest_age",
        "inbox_pending",
        "outbox",
        "subscriptions_pending",
    )

    def __init__(self) -> None:
        self.inbox_pending = 0
        self.inbox_oldest_age = 0.0
        self.inbox_failed = 0
        self.outbox: dict[str, tuple[int, int]] = {}
        self.subscriptions_pending = 0


def inbox_figures(engine: Engine) -> tuple[int, float]:
    """Pending inbox messages and the age in seconds of the oldest (both on ix_inbox_status)."""
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        pending = conn.execute(
            select(func.count()).select_from(inbox).where(inbox.c.status == "pending")
        ).scalar_one()
        oldest = conn.execute(
            select(inbox.c.received_at)
            .where(inbox.c.status == "pending")
            .order_by(inbox.c.id)
            .limit(1)
        ).scalar()
    age = max(0.0, (now_micros() - oldest) / 1e6) if oldest is not None else 0.0
    return int(pending), age


def queue_figures(engine: Engine) -> QueueFigures:
    figures = QueueFigures()
    figures.inbox_pending, figures.inbox_oldest_age = inbox_figures(engine)
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        figures.inbox_failed = int(
            conn.execute(
                select(func.count()).select_from(inbox).where(inbox.c.status == "failed")
            ).scalar_one()
        )
        # Both on ix_outbox_due (status, destination, id); sent rows are never scanned.
        outbox_counts: dict[str, list[int]] = {}
        for position, status in enumerate(("pending", "failed")):
            rows = conn.execute(
                select(outbox.c.destination, func.count())
                .where(outbox.c.status == status)
                .group_by(outbox.c.destination)
            )
            for destination, n in rows:
                label = _bounded("destination", str(destination)[:128])
                outbox_counts.setdefault(label, [0, 0])[position] += int(n)
        figures.outbox = {k: (v[0], v[1]) for k, v in outbox_counts.items()}
        figures.subscriptions_pending = int(
            conn.execute(
                select(func.count())
                .select_from(subscription_notifications)
                .where(subscription_notifications.c.status == "pending")
            ).scalar_one()
        )
    return figures


# --- exposition ------------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str | Path) -> None:
    """Empty a metrics directory before the processes that share it start (the client's
    documented requirement: values of an earlier run would otherwise be summed in)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


def render(engine: Engine | None) -> bytes:
    """The exposition text: this process's (or all processes') metrics plus the store's."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if engine is not None:
        store = CollectorRegistry()
        store.register(StoreCollector(engine))
        text += generate_latest(store)
    return text
