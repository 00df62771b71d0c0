"""Statements run in one round trip (``run_pipelined``): in order, each seeing the one before,
the last one's rows returned, and driver errors raised as SQLAlchemy's (so retries work)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from hub.store.bulk import run_pipelined
from hub.store.locks import lock_statement
from hub.store.schema import mpi_keys

pytestmark = pytest.mark.usefixtures("clean_db")

_KEYS_OF = sa.select(mpi_keys.c.kind, mpi_keys.c.value).where(
    mpi_keys.c.patient_id == sa.bindparam("patient")
)


@pytest.fixture
def postgresql(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")


@pytest.mark.usefixtures("postgresql")
def test_rows_written_first_are_read_by_the_last_statement(engine: sa.Engine) -> None:
    rows = [{"kind": "mrn", "value": f"V{n}", "patient_id": "p1"} for n in range(3)]
    with engine.begin() as conn:
        found = run_pipelined(conn, [(sa.insert(mpi_keys), rows), (_KEYS_OF, {"patient": "p1"})])
        assert sorted((r.kind, r.value) for r in found) == [("mrn", "V0"), ("mrn", "V1"),
                                                            ("mrn", "V2")]  # fmt: skip
        # A last statement without rows gives none.
        assert run_pipelined(conn, [(sa.delete(mpi_keys), {})]) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(mpi_keys)).scalar() == 0


@pytest.mark.usefixtures("postgresql")
def test_a_read_after_a_lock_sees_what_the_last_holder_committed(engine: sa.Engine) -> None:
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with engine.begin() as conn:
            taking = lock_statement(conn, ["mpi:resident-id:X"])
            assert taking is not None
            run_pipelined(conn, [taking])
            holding.set()
            release.wait(10)
            conn.execute(sa.insert(mpi_keys), {"kind": "mrn", "value": "late", "patient_id": "p2"})

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    with engine.begin() as conn:
        taking = lock_statement(conn, ["mpi:resident-id:X"])
        assert taking is not None
        threading.Timer(0.3, release.set).start()
        # Waits for the holder's commit, then reads with a snapshot taken after it.
        found = run_pipelined(conn, [taking, (_KEYS_OF, {"patient": "p2"})])
    thread.join()
    assert [(r.kind, r.value) for r in found] == [("mrn", "late")]


@pytest.mark.usefixtures("postgresql")
def test_a_driver_error_is_raised_as_sqlalchemys(engine: sa.Engine) -> None:
    row = {"kind": "mrn", "value": "V1", "patient_id": "p1"}
    with engine.begin() as conn:
        conn.execute(sa.insert(mpi_keys), row)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        run_pipelined(conn, [(sa.insert(mpi_keys), [row])])
    with engine.connect() as conn:  # the connection went back to the pool usable
        assert conn.execute(sa.select(sa.func.count()).select_from(mpi_keys)).scalar() == 1
