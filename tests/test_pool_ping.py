"""Pooled PostgreSQL connections are pinged when they sat idle (hub.db._ping_when_idle): a
connection the server dropped meanwhile is replaced before anyone uses it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import hub.db
from hub.db import make_engine


def _backend_pid(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server to drop a connection")
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    admin = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            first = _backend_pid(conn)
        with admin.connect() as conn:  # the server drops the pooled connection
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({first})")
            conn.commit()
        monkeypatch.setattr(hub.db, "PING_AFTER_IDLE_S", 0.0)  # it has been idle long enough
        with engine.connect() as conn:
            assert _backend_pid(conn) != first  # a new connection, and no error on the way
    finally:
        engine.dispose()
        admin.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(
    db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server to ping")
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
    try:
        for _ in range(3):
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        assert pings == []
        monkeypatch.setattr(hub.db, "PING_AFTER_IDLE_S", 0.0)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert len(pings) == 1
    finally:
        engine.dispose()
