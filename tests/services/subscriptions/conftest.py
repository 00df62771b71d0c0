"""Each test starts and ends with no cached Subscriptions (``clean_db`` empties the store
under the per-process cache)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.services.subscriptions.observer import invalidate


@pytest.fixture(autouse=True)
def fresh_subscription_cache() -> Iterator[None]:
    invalidate()
    yield
    invalidate()
