"""Operations fixtures: the MLLP listener on a real socket, and the hub's logs captured as the
JSON lines production writes."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import sqlalchemy as sa

from adapters.feeds.config import demo_community
from hub.feeds.service import FeedService
from hub.ops.logs import JsonFormatter, quiet_libraries


@pytest.fixture
def feeds(engine: sa.Engine, clean_db: None) -> Iterator[FeedService]:
    """Listener and intake on port 0; no background worker (tests apply with ``drain``)."""
    service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False)
    service.start()
    yield service
    service.stop()


class CapturedLogs:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def records(self) -> list[dict[str, object]]:
        return [orjson.loads(line) for line in self.text.splitlines() if line]


@pytest.fixture
def captured_logs() -> Iterator[CapturedLogs]:
    """Everything logged, at every level, formatted exactly as in production."""
    captured = CapturedLogs()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    quiet_libraries()  # as configure_logging does in every hub process
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
