"""Prometheus /metrics: counters from the hot paths, queue depths from the store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from adapters.feeds.config import demo_community
from hub.feeds.service import FeedService
from hub.ops import metrics
from hub.queue.intake import receive
from hub.queue.outbox import Policy, enqueue
from hub.queue.worker import drain
from hub.services.subscriptions.delivery import deliver_due
from hub.services.subscriptions.observer import invalidate
from tests.feeds.helpers import send_all
from tests.ops.messages import oru
from tests.services.subscriptions.receiver import Receiver

REPO = Path(__file__).resolve().parents[2]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    res = client.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(res.text)
        for s in family.samples
    }


def test_feed_counters_and_ack_latency_over_mllp(feeds: FeedService, engine: sa.Engine) -> None:
    received = ("hub_feed_messages_received_total", {"sender": "XJYZX", "message_type": "ORU^R01"})
    aa = sample(received[0], **received[1], ack="AA")
    ae = sample(received[0], **received[1], ack="AE")
    failed_intake = sample(
        "hub_feed_messages_failed_total", sender="XJYZX", message_type="ORU^R01", stage="intake"
    )
    applied = sample("hub_feed_messages_applied_total", sender="XJYZX", message_type="ORU^R01")
    acks = sample("hub_mllp_ack_latency_seconds_count")

    good = [oru(f"M{n}", mrn=f"ZYM{n}") for n in range(3)]
    # No PID: cannot be mapped, refused AE (and kept for replay).
    bad = b"\r".join(s for s in oru("MBAD").split(b"\r") if not s.startswith(b"PID"))
    assert len(send_all(feeds.port or 0, [*good, bad])) == 4

    assert sample(received[0], **received[1], ack="AA") == aa + 3
    assert sample(received[0], **received[1], ack="AE") == ae + 1
    assert (
        sample(
            "hub_feed_messages_failed_total",
            sender="XJYZX",
            message_type="ORU^R01",
            stage="intake",
        )
        == failed_intake + 1
    )
    # Observed by the listener's thread as it writes each ACK: the client may read the last
    # one a moment before.
    deadline = time.monotonic() + 5
    while sample("hub_mllp_ack_latency_seconds_count") < acks + 4:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert sample("hub_mllp_ack_latency_seconds_count") == acks + 4
    assert sample("hub_mllp_ack_latency_seconds_sum") > 0
    drain(engine)
    assert (
        sample("hub_feed_messages_applied_total", sender="XJYZX", message_type="ORU^R01")
        == applied + 3
    )


def test_labels_stay_bounded_whatever_senders_write() -> None:
    assert metrics.message_type_label("ORU^R01^ORU_R01") == "ORU^R01"
    assert metrics.message_type_label("ADT") == "ADT"
    assert metrics.message_type_label("张三^A01") == "other"
    assert metrics.message_type_label("") == "other"
    assert metrics.sender_label("XJYZX") == "XJYZX"
    assert metrics.sender_label("") == "unknown"
    assert metrics.sender_label("330521196003152716 张三") == "other"
    seen = {metrics.sender_label(f"S{n}") for n in range(metrics._MAX_VALUES + 50)}
    assert "other" in seen and len(seen) <= metrics._MAX_VALUES + 1


def test_queue_depths_come_from_the_store(client: TestClient, engine: sa.Engine) -> None:
    for n in range(4):
        receive(engine, oru(f"Q{n}", mrn=f"ZYQ{n}"), demo_community(), transport="test")
    with engine.begin() as conn:
        for _ in range(2):
            enqueue(
                conn,
                "mllp://lis.example:2575",
                b"MSH|^~\\&|YGT_HUB|YGT|LIS|XJYZX|||OML^O21|1|P|2.5.1\r",
            )
        enqueue(
            conn,
            "mllp://ris.example:2575",
            b"MSH|^~\\&|YGT_HUB|YGT|RIS|XRMYY|||OML^O21|2|P|2.5.1\r",
        )
    figures = scrape(client)
    assert figures[("hub_store_up", ())] == 1
    assert figures[("hub_inbox_depth", ())] == 4
    assert figures[("hub_inbox_oldest_pending_age_seconds", ())] >= 0
    assert figures[("hub_outbox_depth", (("destination", "mllp://lis.example:2575"),))] == 2
    assert figures[("hub_outbox_depth", (("destination", "mllp://ris.example:2575"),))] == 1
    drain(engine)
    figures = scrape(client)
    assert figures[("hub_inbox_depth", ())] == 0
    assert figures[("hub_inbox_oldest_pending_age_seconds", ())] == 0


def test_store_down_is_a_figure_not_an_error(tmp_path: Path) -> None:
    from hub.app import create_app
    from hub.config import Settings

    settings = Settings(db_url=f"sqlite:///{tmp_path}/missing/dir/hub.db", auth_required=False)
    with TestClient(create_app(settings)) as client:
        figures = scrape(client)
    assert figures[("hub_store_up", ())] == 0
    assert ("hub_inbox_depth", ()) not in figures


def test_http_latency_by_route_template_and_status_class(client: TestClient) -> None:
    labels = {"method": "GET", "route": "/fhir/{res_type}/{res_id}", "status": "4xx"}
    before = sample("hub_http_request_duration_seconds_count", **labels)
    assert client.get("/fhir/Patient/330521196003152716").status_code == 404
    assert sample("hub_http_request_duration_seconds_count", **labels) == before + 1
    text = client.get("/metrics").text
    # The template, never the path a caller typed (it may hold an identifier).
    assert "330521196003152716" not in text
    created = {"method": "POST", "route": "/fhir/{res_type}", "status": "2xx"}
    n = sample("hub_http_request_duration_seconds_count", **created)
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201
    assert sample("hub_http_request_duration_seconds_count", **created) == n + 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "4xx"}
    n = sample("hub_http_request_duration_seconds_count", **unmatched)
    client.get("/no/such/path")
    assert sample("hub_http_request_duration_seconds_count", **unmatched) == n + 1


@pytest.fixture
def no_cached_subscriptions() -> Iterator[None]:
    invalidate()
    yield
    invalidate()


def test_subscription_deliveries_sent_retry_failed(
    client: TestClient, engine: sa.Engine, no_cached_subscriptions: None
) -> None:
    def subscribe(endpoint: str) -> None:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "metrics test",
            "criteria": "Composition?subject=Patient/p1",
            "channel": {"type": "rest-hook", "endpoint": endpoint},
        }
        assert client.post("/fhir/Subscription", json=body).status_code == 201

    counts = {o: sample("hub_subscription_deliveries_total", outcome=o) for o in
              ("sent", "retry", "failed")}  # fmt: skip
    with Receiver() as archive:
        subscribe(archive.url)
        subscribe("http://127.0.0.1:1/hooks")  # nobody listens there
        composition = {
            "resourceType": "Composition",
            "status": "final",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
            "subject": {"reference": "Patient/p1"},
            "date": "2026-11-01",
            "author": [{"reference": "Organization/XRMYY"}],
            "title": "出院小结",
        }
        assert client.post("/fhir/Composition", json=composition).status_code == 201
        policy = Policy(max_attempts=2, first_delay=0.01, max_delay=0.01, timeout=2)
        deliver_due(engine, policy)
        time.sleep(0.05)
        deliver_due(engine, policy)
    assert sample("hub_subscription_deliveries_total", outcome="sent") == counts["sent"] + 1
    assert sample("hub_subscription_deliveries_total", outcome="retry") == counts["retry"] + 1
    assert sample("hub_subscription_deliveries_total", outcome="failed") == counts["failed"] + 1


def test_multiprocess_mode_sums_the_processes(tmp_path: Path) -> None:
    """Two processes count into one PROMETHEUS_MULTIPROC_DIR; a third renders the sum, as the
    /metrics of one of several uvicorn workers does."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = textwrap.dedent(
        """
        from hub.ops import metrics
        for _ in range({n}):
            metrics.count_received("XJYZX", "ORU^R01", "AA")
        metrics.ACK_LATENCY.observe(0.01)
        """
    )
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", count.format(n=n)], env=env, cwd=REPO, check=True)
    render = (
        "import sys; from hub.ops import metrics; sys.stdout.buffer.write(metrics.render(None))"
    )
    out = subprocess.run(
        [sys.executable, "-c", render], env=env, cwd=REPO, check=True, capture_output=True
    ).stdout.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out)
        for s in family.samples
    }
    key = (
        "hub_feed_messages_received_total",
        (("ack", "AA"), ("message_type", "ORU^R01"), ("sender", "XJYZX")),
    )
    assert samples[key] == 5
    assert samples[("hub_mllp_ack_latency_seconds_count", ())] == 2
