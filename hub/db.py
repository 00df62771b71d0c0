"""Engines for the two stores: a SQLite file (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(db_url: str, *, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """An engine configured so that every write transaction is serialisable in practice.

    SQLite: WAL so readers never wait for the writer, and ``BEGIN IMMEDIATE`` so a transaction
    takes the write lock before its first read; a conditional create's search-then-insert is
    then atomic across threads and processes.  PostgreSQL: READ COMMITTED plus advisory locks
    taken by the repository for conditional writes (see hub.store.locks).
    """
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
        _configure_sqlite(engine)
        return engine
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        insertmanyvalues_page_size=1000,
        # psycopg prepares a statement on its 5th run; from then on reuse one generic plan.
        # Search statements (several index semi-joins) cost 0.5-1 ms to plan against
        # 0.05-0.1 ms to run, and PostgreSQL's own choice keeps re-planning them because the
        # generic plan's estimate is a little higher than the custom one's, while the plan
        # shape is the same (start from the most selective index, probe the rest by rid).
        # Statements run fewer than 5 times (ad-hoc searches) are still planned with their values.
        connect_args={"options": "-c plan_cache_mode=force_generic_plan"},
    )
    _ping_when_idle(engine)
    return engine


# A pooled connection unused for this long is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping, but only connections that sat idle (HikariCP's alive-bypass window).

    A ping is a round trip and a statement on both sides, and the feed's intake and workers
    check connections out for every batch: pinging each checkout cost the intake ~6% of its
    CPU.  A connection returned to the pool a moment ago is as good as a pinged one; the
    store dying in that moment fails one statement, which SQLAlchemy sees as a disconnect
    (the pool is invalidated) and the caller handles as the store being away, as it would
    had the store died just after a ping.
    """

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_S:
            return  # new, or in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError() from exc  # the pool connects afresh
            raise
        if not alive:
            raise DisconnectionError()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads (execution option readonly=True) begin deferred so they never wait for writers.
        readonly = conn.get_execution_options().get("readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
