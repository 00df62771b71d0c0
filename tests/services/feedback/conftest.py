"""A month of the lead hospital's inpatient traffic, fed over MLLP into the real store."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from adapters.feeds.config import demo_community
from adapters.feeds.resident_id import check_character
from hub.feeds.bootstrap import load_community_resources
from hub.feeds.service import FeedService
from hub.queue.worker import drain
from tests.feeds.helpers import ack_code, send_all


def resident(birth: str, serial: str) -> str:
    first = f"330521{birth}{serial}"
    return first + check_character(first)


Feed = Callable[..., None]


@pytest.fixture
def feed(engine: sa.Engine, clean_db: None) -> Feed:
    """Send messages over MLLP (each must be accepted) and apply them."""
    load_community_resources(engine, demo_community())
    service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False)
    service.start()

    def send(*messages: bytes) -> None:
        assert service.port is not None
        for answer in send_all(service.port, list(messages)):
            assert ack_code(answer) in ("AA", "CA"), answer
        drain(engine)

    yield send  # type: ignore[misc]
    service.stop()
