"""Security tests run with security on, whatever the rest of the suite does."""

from __future__ import annotations

import pytest


@pytest.fixture
def settings(db_url: str):  # type: ignore[no-untyped-def]
    from hub.config import Settings

    return Settings(db_url=db_url, auth_required=True)
