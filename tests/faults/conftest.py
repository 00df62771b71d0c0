"""Fault-test fixtures: hub processes stopped at the end of a test, whatever happened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Hub


@pytest.fixture
def hubs() -> Iterator[list[Hub]]:
    """Every hub process a test starts goes in here; each is stopped (SIGTERM) at the end."""
    started: list[Hub] = []
    yield started
    for hub in started:
        hub.stop()
