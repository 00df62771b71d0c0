"""A transaction writing new patients takes the patient index's locks for all of them before
it links any (PostgreSQL: advisory locks).  Taken one patient at a time, two feed workers'
group commits deadlocked whenever each held a birth date or name the other wanted next, and
PostgreSQL stalled both for a second before aborting one."""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from hub.fhir import transaction
from hub.services.identity import index_store
from hub.services.identity.names import name_key
from hub.store.locks import lock_number

MRN = "urn:oid:2.16.156.XRMYY.mrn"


@pytest.fixture
def pg(backend: str, clean_db: None) -> None:
    if backend != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's (SQLite serialises every write)")


def _patient(name: str, born: str) -> dict[str, Any]:
    mrn = uuid.uuid4().hex[:12]
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": mrn}],
            "name": [{"text": name}],
            "gender": "female",
            "birthDate": born,
        },
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}|{mrn}"},
    }


def _bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _dsn(engine: sa.Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _try(dsn: str, name: str, *, shared: bool) -> bool:
    """Whether another session could take ``name`` now (in that mode)."""
    take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    release = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT {take}(%s)", [lock_number(name)]).fetchone()
        assert row is not None
        if row[0]:
            conn.execute(f"SELECT {release}(%s)", [lock_number(name)])
        return bool(row[0])


def _start(
    engine: sa.Engine, bundle: dict[str, Any], failed: list[BaseException]
) -> threading.Thread:
    """A thread applying the transaction; what it raises is added to ``failed``."""

    def run() -> None:
        try:
            transaction.process_bundle(engine, bundle, base_url="http://hub")
        except BaseException as exc:  # reported by the test's own thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_every_new_patients_names_are_held_before_the_first_is_linked(
    pg: None, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached, go = threading.Event(), threading.Event()
    real = index_store.save

    def paused(*args: Any, **kwargs: Any) -> Any:
        if not reached.is_set():
            reached.set()
            assert go.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(index_store, "save", paused)
    failed: list[BaseException] = []
    worker = _start(
        engine, _bundle(_patient("林小红", "1961-03-04"), _patient("郑美玲", "1977-08-09")), failed
    )
    try:
        assert reached.wait(30), failed
        dsn = _dsn(engine)
        # The first patient is not saved yet; the second's names are taken already.
        assert not _try(dsn, "mpi:birth:1977-08-09", shared=False)
        assert not _try(dsn, "mpi:birth:1961-03-04", shared=False)
        assert _try(dsn, "mpi:birth:1990-01-01", shared=False)
    finally:
        go.set()
        worker.join(60)
    assert not failed, failed


def test_two_transactions_wanting_each_others_names_do_not_deadlock(
    pg: None, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each transaction's first patient was born the day the other's second was.  Both stop
    at their first patient's save until the other gets there too (or 2 s pass): linking one
    patient at a time, each then held a date the other wanted next.  No retry here hides a
    deadlock: the transactions run once."""
    monkeypatch.setattr(transaction, "_retrying", lambda attempt: attempt())
    together = threading.Barrier(2, timeout=2)
    seen: set[int] = set()
    real = index_store.save

    def meet(*args: Any, **kwargs: Any) -> Any:
        me = threading.get_ident()
        if me not in seen:
            seen.add(me)
            # Broken: the other waits for this one's locks, as it should.
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(index_store, "save", meet)
    bundles = [
        _bundle(_patient("王秀英", "1958-05-06"), _patient("陈志强", "1983-11-12")),
        _bundle(_patient("刘建国", "1983-11-12"), _patient("黄丽华", "1958-05-06")),
    ]
    failed: list[BaseException] = []
    threads = [_start(engine, b, failed) for b in bundles]
    for t in threads:
        t.join(60)
    assert not failed, failed
    with engine.connect() as conn:
        masters = conn.execute(
            sa.text("SELECT count(DISTINCT master_id) FROM mpi_records")
        ).scalar()
    assert masters == 4  # four different people, each their own master


def test_records_that_cannot_find_each_other_do_not_wait_for_each_other(
    pg: None, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A common name born another year, or a shared birthday, is no reason to wait: those
    records are in none of each other's candidate blocks.  A record of the same name without
    a birth date is in every year's block, so it waits."""
    first = threading.Event()
    reached, go = threading.Event(), threading.Event()
    real = index_store.save

    def paused(*args: Any, **kwargs: Any) -> Any:
        if not first.is_set():  # only the first transaction's first save stops
            first.set()
            reached.set()
            assert go.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(index_store, "save", paused)
    failed: list[BaseException] = []
    holder = _start(engine, _bundle(_patient("王伟", "1970-01-01")), failed)
    try:
        assert reached.wait(30), failed
        dsn = _dsn(engine)
        key = name_key("王伟")
        assert _try(dsn, f"mpi:name:{key}", shared=True)
        assert not _try(dsn, f"mpi:name:{key}", shared=False)
        assert not _try(dsn, f"mpi:name:{key}:1970", shared=False)
        assert _try(dsn, f"mpi:name:{key}:1985", shared=False)
        assert _try(dsn, "mpi:birth:1970-01-01", shared=True)  # nobody here searches by it
        assert not _try(dsn, "mpi:birth:1970-01-01", shared=False)

        for bundle in (
            _bundle(_patient("王伟", "1985-06-07")),  # another year
            _bundle(_patient("赵敏", "1970-01-01")),  # the same day
        ):
            t = _start(engine, bundle, failed)
            t.join(30)
            assert not t.is_alive()  # done while the first still holds its locks
        dateless = _patient("王伟", "")
        del dateless["resource"]["birthDate"]
        waiting = _start(engine, _bundle(dateless), failed)
        waiting.join(1.0)
        assert waiting.is_alive()  # in every year's block of the name: it waits
    finally:
        go.set()
        holder.join(60)
    waiting.join(60)
    assert not waiting.is_alive()
    assert not failed, failed
