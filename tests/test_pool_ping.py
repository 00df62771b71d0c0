"""Pooled PostgreSQL connections are pinged when they sat idle (hub.db._ping_when_idle): a
connection the server dropped meanwhile is replaced before anyone uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import hub.db
from hub.db import make_engine


@pytest.fixture
def one_connection(db_url: str, backend: str) -> Iterator[sa.Engine]:
    """An engine whose pool holds a single PostgreSQL connection."""
    if backend != "postgresql":
        pytest.skip("SQLite has no server to ping or to drop a connection")
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


def _backend_pid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    one_connection: sa.Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with one_connection.connect() as conn:
        first = _backend_pid(conn)
    admin = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        with admin.connect() as conn:  # the server drops the pooled connection
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({first})")
            conn.commit()
    finally:
        admin.dispose()
    monkeypatch.setattr(hub.db, "PING_AFTER_IDLE_S", 0.0)  # it has been idle long enough
    with one_connection.connect() as conn:
        assert _backend_pid(conn) != first  # a new connection, and no error on the way


def test_a_connection_used_a_moment_ago_is_not_pinged(
    one_connection: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[object] = []
    real_ping = one_connection.dialect.do_ping
    monkeypatch.setattr(
        one_connection.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c)
    )
    for _ in range(3):
        with one_connection.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    assert pings == []
    monkeypatch.setattr(hub.db, "PING_AFTER_IDLE_S", 0.0)
    with one_connection.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert len(pings) == 1
