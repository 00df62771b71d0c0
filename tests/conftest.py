"""Shared fixtures: a real, migrated store (PostgreSQL or SQLite), the app, a live server.

``HUB_TEST_DB_URL`` picks the backend: a PostgreSQL URL (tests/run.sh starts one) or
``sqlite``/unset for a SQLite file.  On PostgreSQL each pytest session makes its own database,
so concurrent runs never collide.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from hub.store.migrate import upgrade

    raw = os.environ.get("HUB_TEST_DB_URL", "sqlite")
    if raw in ("", "sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'hub-test.db'}"
        upgrade(url)
        yield url
        return
    admin_url = make_url(raw)
    name = f"hub_test_{os.getpid()}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def backend(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgresql"


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[sa.Engine]:
    from hub.db import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def clean_db(engine: sa.Engine) -> None:
    from hub.store.schema import metadata

    tables = metadata.sorted_tables
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY"))
        else:
            for table in reversed(tables):
                conn.execute(table.delete())


@pytest.fixture
def settings(db_url: str):  # type: ignore[no-untyped-def]
    from hub.config import Settings

    # Security on, as in production: the suite's clients carry the administrator's token.
    return Settings(db_url=db_url)


@pytest.fixture
def app(settings, clean_db: None) -> FastAPI:  # type: ignore[no-untyped-def]
    from hub.app import create_app

    return create_app(settings)


def mint_token(
    app: FastAPI,
    *,
    scopes: str | None = None,
    org: str | None = None,
    roles: frozenset[str] = frozenset({"admin"}),
    client_id: str = "test-admin",
) -> str:
    """A bearer token the app accepts, signed with its own key (no token request needed)."""
    from hub.auth.routes import key_ring
    from hub.security.admin_client import ADMIN_SCOPES
    from hub.security.clients import Client
    from hub.security.tokens import issue, token_issuer

    class _Request:  # key_ring() only reads request.app
        def __init__(self, app: FastAPI) -> None:
            self.app = app

    ring = key_ring(_Request(app))  # type: ignore[arg-type]
    who = Client(client_id, client_id, org, roles, scopes or ADMIN_SCOPES, None, None, False)
    issuer = token_issuer(app.state.settings)
    return str(issue(ring, who, None, issuer=issuer, audience=f"{issuer}/fhir")["access_token"])


@pytest.fixture
def admin_headers(app: FastAPI) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(app)}"}


@pytest.fixture
def client(app: FastAPI, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    """The office's administrator: every test that is not about security talks as it."""
    headers = {"Accept": "application/fhir+json", **admin_headers}
    with TestClient(app, headers=headers) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a real socket, for FHIR clients and concurrency tests."""
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("HUB_TEST_REDIS_URL")
    if not url:
        pytest.skip("HUB_TEST_REDIS_URL is not set (tests/run.sh starts Redis)")
    return url


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    path = REPO.parent / "shared" / "corpus"
    if not path.exists():
        pytest.skip("../shared/corpus is not beside the repository")
    return path
