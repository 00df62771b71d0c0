"""Feed fixtures: the MLLP listener on a real socket over the real store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from adapters.feeds.config import demo_community
from hub.feeds.service import FeedService


@pytest.fixture
def feeds(engine: sa.Engine, clean_db: None) -> Iterator[FeedService]:
    """Listener and intake on port 0; no background worker (tests apply with ``drain``)."""
    service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False)
    service.start()
    yield service
    service.stop()
