"""Named leases in the database: one holder at a time across processes and hosts.

A scheduled job (the monthly feedback) must run once however many hub processes share the
store.  A lease is a row with a holder and an expiry: taking it is one conditional UPDATE
(free, expired, or already ours), so it works the same on SQLite and PostgreSQL and survives
the holder's death (the lease runs out).  The row also remembers the last period the job
finished, so a process starting after a missed run catches up exactly once.
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from hub.store.repository import now_micros
from hub.store.schema import scheduler_leases

_SECOND = 1_000_000


def holder_name() -> str:
    """This process, recognisably: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:128]


def _ensure(engine: Engine, name: str) -> None:
    with engine.connect() as conn:
        if conn.execute(
            select(scheduler_leases.c.name).where(scheduler_leases.c.name == name)
        ).first():
            return
    try:
        with engine.begin() as conn:
            conn.execute(insert(scheduler_leases).values(name=name, holder=None, until=0))
    except IntegrityError:
        pass  # another process made it first


def acquire(engine: Engine, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease for ``seconds``; False if someone else holds it."""
    _ensure(engine, name)
    now = now_micros()
    t = scheduler_leases.c
    with engine.begin() as conn:
        taken = conn.execute(
            update(scheduler_leases)
            .where(t.name == name, or_(t.holder.is_(None), t.holder == holder, t.until < now))
            .values(holder=holder, until=now + int(seconds * _SECOND))
        )
    return taken.rowcount == 1


def release(engine: Engine, name: str, holder: str, *, done: str | None = None) -> None:
    """Give the lease up; ``done`` records the period the job finished."""
    values: dict[str, object] = {"holder": None, "until": 0}
    if done is not None:
        values["last_done"] = done
    with engine.begin() as conn:
        conn.execute(
            update(scheduler_leases)
            .where(scheduler_leases.c.name == name, scheduler_leases.c.holder == holder)
            .values(**values)
        )


def last_done(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(scheduler_leases.c.last_done).where(scheduler_leases.c.name == name)
        ).scalar()
