"""The dashboard's fixtures: an office client with a secret, a feed over a real MLLP socket,
the hub's FHIR API over HTTP, and headless Debian Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from adapters.feeds.config import demo_community
from hub.feeds.bootstrap import load_community_resources
from hub.feeds.service import FeedService
from hub.queue.worker import drain
from hub.security import clients
from tests.conftest import mint_token
from tests.feeds.helpers import ack_code, send_all

OFFICE_ID = "ygt-office"
OFFICE_SECRET = "office-secret-for-the-ui-tests"
CHROMIUM = Path(os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium"))
# As root in a container, without a GPU, on a closed network: the flags that keep Debian's
# Chromium from trying to reach Google's hosts at every start (refused here, and slow).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("HUB_UI_SCREENSHOTS", Path(__file__).with_name("screenshots")))


@pytest.fixture
def office(app: FastAPI) -> tuple[str, str]:
    """The community office's client, with a secret (as ``hub clients add --secret`` makes)."""
    clients.put(
        app.state.engine, OFFICE_ID, name="医共体办公室", org=None, roles={"office"},
        scopes="system/*.rs system/Task.u system/Patient.u hub/admin", secret=OFFICE_SECRET,
    )  # fmt: skip
    return OFFICE_ID, OFFICE_SECRET


class Feed:
    """Members' HL7 v2 messages over a real MLLP socket into the hub's inbox, then applied."""

    def __init__(self, engine: sa.Engine) -> None:
        load_community_resources(engine, demo_community())
        self.engine = engine
        self.service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False)
        self.service.start()
        # The sender runs its own event loop: not on the thread Playwright's sync API drives.
        self.pool = ThreadPoolExecutor(1)

    def send(self, *messages: bytes) -> list[str]:
        """The ACK codes; then the worker applies what was accepted."""
        assert self.service.port is not None
        answers = self.pool.submit(send_all, self.service.port, list(messages)).result(60)
        drain(self.engine)
        return [ack_code(a) for a in answers]

    def close(self) -> None:
        self.service.stop()
        self.pool.shutdown()


@pytest.fixture
def feed(engine: sa.Engine, clean_db: None) -> Iterator[Feed]:
    running = Feed(engine)
    yield running
    running.close()


@pytest.fixture
def api(app: FastAPI, live_server: str) -> Iterator[httpx.Client]:
    """The hub's own HTTP API as the administrator: how the test makes its demo data."""
    headers = {"Authorization": f"Bearer {mint_token(app)}", "Accept": "application/fhir+json"}
    with httpx.Client(base_url=live_server, headers=headers, timeout=60) as client:
        yield client


# Per module, not per session: Playwright's sync API keeps an event loop running on the main
# thread while it is open, and tests elsewhere that call asyncio.run() there would fail.
@pytest.fixture(scope="module")
def browser(pytestconfig: pytest.Config) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: the dashboard's browser tests need Debian's chromium "
            "(tests/run.sh installs it: apt-get install chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python playwright package is missing (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and SCREENSHOTS.exists():
        reporter.write_line(f"dashboard screenshots: {SCREENSHOTS}")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture
def page(browser: Any, live_server: str) -> Iterator[Any]:
    """A fresh browser profile (no cookies) on the live hub."""
    context = browser.new_context(
        base_url=live_server, locale="zh-CN", viewport={"width": 1360, "height": 900}
    )
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


Shot = Callable[[Any, str], None]


@pytest.fixture
def shot(screenshots: Path) -> Shot:
    def take(page: Any, name: str) -> None:
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)

    return take
