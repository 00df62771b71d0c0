"""Group commit at intake (hub.queue.inbox_batch): rows arriving together share a transaction,
and each still gets its own answer: its id, IntegrityError for a resend, or its own error."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from hub.queue.inbox_batch import InboxBatcher
from hub.queue.intake import inbox_row
from hub.store.schema import inbox

pytestmark = pytest.mark.usefixtures("clean_db")


@pytest.fixture
def postgresql(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("intake batches its inbox writes on PostgreSQL only")


def _row(control_id: str, *, raw: bytes | None = None, **changes: Any) -> dict[str, Any]:
    row = inbox_row(
        raw or f"MSH|^~\\&|LIS|XJYZX|||||ORU^R01|{control_id}|P|2.5.1".encode(),
        transport="mllp",
        peer="127.0.0.1",
        sender="XJYZX",
        application="LIS",
        control_id=control_id,
        message_type="ORU^R01",
    )
    # Accepted and pending (as a mapped message's row), unless the test says otherwise.
    return {**row, "accepted": True, "status": "pending", **changes}


def _stored(engine: sa.Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(inbox.c.id, inbox.c.control_id)).all())  # type: ignore[arg-type]


def _store_all_while_blocked(
    engine: sa.Engine, batcher: InboxBatcher, rows: list[dict[str, Any]]
) -> list[int | BaseException]:
    """Store the rows from one thread each, the first batch held up by a table lock until
    every other row waits behind it: the rest must then go as one batch."""
    answers: list[int | BaseException] = [RuntimeError("no answer")] * len(rows)

    def store(i: int) -> None:
        try:
            answers[i] = batcher.store(rows[i])
        except BaseException as exc:
            answers[i] = exc

    with engine.connect() as locker:
        trans = locker.begin()
        locker.execute(sa.text("LOCK TABLE inbox IN EXCLUSIVE MODE"))
        first = threading.Thread(target=store, args=(0,))
        first.start()
        deadline = time.monotonic() + 10
        while not batcher._writing and time.monotonic() < deadline:
            time.sleep(0.01)
        others = [threading.Thread(target=store, args=(i,)) for i in range(1, len(rows))]
        for t in others:
            t.start()
        while len(batcher._pending) < len(rows) - 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(batcher._pending) == len(rows) - 1
        trans.rollback()
    for t in [first, *others]:
        t.join(10)
    return answers


@pytest.mark.usefixtures("postgresql")
def test_rows_waiting_together_are_committed_in_one_batch_each_with_its_own_id(
    engine: sa.Engine,
) -> None:
    batcher = InboxBatcher(engine)
    rows = [_row(f"C{n}") for n in range(12)]
    answers = _store_all_while_blocked(engine, batcher, rows)
    assert all(isinstance(a, int) for a in answers), answers
    assert batcher.batches == 2  # the held-up first row, then the other eleven together
    stored = _stored(engine)
    assert {stored[a] for a in answers if isinstance(a, int)} == {f"C{n}" for n in range(12)}


@pytest.mark.usefixtures("postgresql")
def test_rows_beyond_a_full_batch_are_handed_on_in_order_until_none_waits(
    engine: sa.Engine,
) -> None:
    """Eleven rows wait behind the first; with at most three a batch, each batch's writer
    hands the next one to the oldest row still waiting: 1 + 4 batches, every row answered."""
    batcher = InboxBatcher(engine, max_batch=3)
    rows = [_row(f"H{n}") for n in range(12)]
    answers = _store_all_while_blocked(engine, batcher, rows)
    assert all(isinstance(a, int) for a in answers), answers
    assert batcher.batches == 5
    assert not batcher._pending and not batcher._writing
    stored = _stored(engine)
    assert {stored[a] for a in answers if isinstance(a, int)} == {f"H{n}" for n in range(12)}


@pytest.mark.usefixtures("postgresql")
def test_many_threads_storing_at_once_each_get_their_own_row(engine: sa.Engine) -> None:
    batcher = InboxBatcher(engine, max_batch=4)
    answers: dict[str, int] = {}
    failures: list[BaseException] = []

    def store(t: int) -> None:
        for n in range(20):
            try:
                answers[f"T{t}-{n}"] = batcher.store(_row(f"T{t}-{n}"))
            except BaseException as exc:  # reported below
                failures.append(exc)

    threads = [threading.Thread(target=store, args=(t,)) for t in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a thread was never woken"
    assert not failures, failures
    stored = _stored(engine)
    assert len(answers) == 240 and {stored[i]: i for i in stored} == {
        control_id: inbox_id for control_id, inbox_id in answers.items()
    }
    assert not batcher._pending and not batcher._writing


@pytest.mark.usefixtures("postgresql")
def test_a_resend_in_the_same_batch_is_answered_integrity_error_and_not_stored_twice(
    engine: sa.Engine,
) -> None:
    batcher = InboxBatcher(engine)
    earlier = batcher.store(_row("R1"))
    # The same control id again (already stored), twice more in one batch, and a new one.
    rows = [_row("R0"), _row("R1"), _row("R2"), _row("R2"), _row("R3")]
    answers = _store_all_while_blocked(engine, batcher, rows)
    assert isinstance(answers[1], IntegrityError)
    r2 = answers[2:4]
    assert sum(isinstance(a, IntegrityError) for a in r2) == 1
    assert sum(isinstance(a, int) for a in r2) == 1
    assert all(isinstance(answers[i], int) for i in (0, 4))
    assert sorted(_stored(engine).values()) == ["R0", "R1", "R2", "R3"]
    assert earlier in _stored(engine)
    # A rejected row (never accepted) with a control id already used is kept all the same.
    kept = batcher.store(_row("R1", accepted=False, status="rejected", error="kept"))
    assert _stored(engine)[kept] == "R1"


@pytest.mark.usefixtures("postgresql")
def test_a_row_the_database_refuses_fails_alone(engine: sa.Engine) -> None:
    batcher = InboxBatcher(engine)
    # status is VARCHAR(16): this row cannot be stored, and its batch must not take the
    # others with it.
    rows = [_row("B0"), _row("B1"), _row("B2", status="x" * 40), _row("B3")]
    answers = _store_all_while_blocked(engine, batcher, rows)
    assert isinstance(answers[2], DBAPIError)
    assert all(isinstance(answers[i], int) for i in (0, 1, 3))
    assert sorted(_stored(engine).values()) == ["B0", "B1", "B3"]
    # Nothing is left open on the pooled connections: a later row is stored normally.
    later = batcher.store(_row("B4"))
    assert _stored(engine)[later] == "B4"


@pytest.mark.usefixtures("postgresql")
def test_an_unreachable_store_fails_each_row_and_blocks_no_later_one() -> None:
    batcher = InboxBatcher(sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"))
    for n in range(2):  # the second is not left waiting behind the first's failed batch
        with pytest.raises(sa.exc.OperationalError):
            batcher.store(_row(f"D{n}"))
    assert batcher.batches == 0


@pytest.mark.usefixtures("postgresql")
def test_inbox_rows_are_compressed_with_lz4(engine: sa.Engine) -> None:
    """Migration 0015: the raw message and the ~11 KB Bundle of every row are compressed on
    write and read back by every worker; lz4 where the server has it."""
    with engine.connect() as conn:
        has_lz4 = conn.execute(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            )
        ).scalar()
        methods = dict(
            conn.execute(
                sa.text(
                    "SELECT attname, attcompression FROM pg_attribute "
                    "WHERE attrelid = 'inbox'::regclass AND attname IN ('raw', 'bundle')"
                )
            ).all()
        )
    assert methods == ({"raw": "l", "bundle": "l"} if has_lz4 else {"raw": "", "bundle": ""})
