"""A running hub for routing: the FHIR API, the MLLP listener, the inbox worker and the outbox
and rest-hook delivery threads, over the real store, with the demo community loaded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.feeds.bootstrap import load_community_resources
from hub.feeds.service import FeedService
from hub.queue.outbox import Policy
from hub.store.schema import outbox, routed_orders
from tests.feeds.helpers import ack_code, send_all

# Quick retries so the tests see dead letters in seconds.
FAST = Policy(max_attempts=4, first_delay=0.05, max_delay=0.2, timeout=0.5, hold=0.1)
T = TypeVar("T")


def eventually(check: Callable[[], T], seconds: float = 20, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


@dataclass
class Hub:
    client: TestClient
    engine: sa.Engine
    feeds: FeedService

    @property
    def port(self) -> int:
        assert self.feeds.port is not None
        return self.feeds.port

    def send(self, *messages: bytes) -> None:
        """Messages to the hub's MLLP listener, as a member's system sends them."""
        for answer in send_all(self.port, list(messages)):
            assert ack_code(answer) == "AA", answer

    def point(self, endpoint: str, address: str, **changes: Any) -> dict[str, Any]:
        """The office re-points an Endpoint through the FHIR API."""
        current = self.client.get(f"/fhir/Endpoint/{endpoint}").json()
        current.pop("meta", None)
        answer = self.client.put(
            f"/fhir/Endpoint/{endpoint}", json={**current, "address": address, **changes}
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def routed(self, **where: str) -> list[Any]:
        query = sa.select(routed_orders).order_by(routed_orders.c.id)
        for name, value in where.items():
            query = query.where(routed_orders.c[name] == value)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def outbox(self, **where: Any) -> list[Any]:
        query = sa.select(outbox).order_by(outbox.c.id)
        for name, value in where.items():
            query = query.where(outbox.c[name] == value)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def statuses(self) -> list[str]:
        return [r.status for r in self.routed()]

    def task(self, request_id: str) -> dict[str, Any]:
        found = self.client.get("/fhir/Task", params={"focus": f"ServiceRequest/{request_id}"})
        [entry] = found.json()["entry"]
        task: dict[str, Any] = entry["resource"]
        return task

    def settled(self) -> bool:
        """Nothing left in the inbox or the outbox to do."""
        with self.engine.connect() as conn:
            pending = conn.execute(
                sa.text("SELECT count(*) FROM inbox WHERE status = 'pending'")
            ).scalar_one()
            queued = conn.execute(
                sa.select(sa.func.count()).where(outbox.c.status == "pending")
            ).scalar_one()
        return pending == 0 and queued == 0


@pytest.fixture
def hub(client: TestClient, engine: sa.Engine) -> Iterator[Hub]:
    community = demo_community()
    load_community_resources(engine, community)
    service = FeedService(engine, community, mllp_port=0, worker_threads=2, outbox_policy=FAST)
    assert service.delivery is not None and service.worker is not None
    service.delivery.poll_seconds = 0.05
    service.worker.poll_seconds = 0.05
    service.start()
    try:
        yield Hub(client, engine, service)
    finally:
        service.stop()
