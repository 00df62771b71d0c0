"""Inbox, outbox and rest-hook work on Redis Streams (hub.queue.streams, stream_workers).

Several consumers share one stream; a patient's messages still apply in order; entries held by
a consumer that died are taken over; rows Redis never heard of (or forgot) are reconciled from
the database; outbound messages are delivered on their announcement, not a poll.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.feeds.service import FeedService
from hub.queue import streams as st
from hub.queue.outbox import OutboxDelivery, enqueue
from hub.queue.stream_workers import (
    DELIVERY_GROUP,
    GROUP,
    StreamDelivery,
    StreamInboxWorker,
    with_predecessors,
)
from hub.queue.worker import drain
from hub.store.schema import inbox, outbox
from tests.feeds.helpers import Receiver, ack_code, inbox_rows, send_all
from tests.feeds.test_worker_order import PATIENTS, UPDATES, a08, wait_applied
from tests.ops.messages import oru


@pytest.fixture
def streams(redis_url: str) -> Iterator[st.Streams]:
    """A Streams on the test Redis under a prefix of its own, removed afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = st.StreamSettings(redis_url, prefix=prefix, claim_idle=1.0, reconcile_every=60)
    made = st.Streams(settings)
    yield made
    made.stop()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


@pytest.fixture
def intake(engine: sa.Engine, clean_db: None, streams: st.Streams) -> Iterator[FeedService]:
    """The MLLP listener announcing to the streams; no worker in it (like ``hub mllp``)."""
    service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False, streams=streams)
    service.start()
    yield service
    service.stop()


def _workers(engine: sa.Engine, streams: st.Streams, n: int) -> list[StreamInboxWorker]:
    workers = [StreamInboxWorker(engine, streams, threads=2, consumer=f"w{i}") for i in range(n)]
    for worker in workers:
        worker.start()
    return workers


def wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _pending_entries(streams: st.Streams, stream: str, group: str) -> int:
    return int(streams.redis.xpending(streams.key(stream), group)["pending"])


def test_after_commit_runs_once_committed_and_never_after_a_rollback(
    engine: sa.Engine, clean_db: None
) -> None:
    calls: list[str] = []
    with engine.begin() as conn:
        st.after_commit(conn, lambda: calls.append("committed"))
        assert calls == []  # not inside the transaction
    assert calls == ["committed"]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        st.after_commit(conn, lambda: calls.append("rolled back"))
        raise RuntimeError("abort")
    with engine.begin() as conn:
        pass  # the same pooled connection again: nothing left over from the rollback
    assert calls == ["committed"]


def test_two_workers_share_the_stream_and_keep_each_patients_order(
    intake: FeedService, engine: sa.Engine, streams: st.Streams, client: TestClient
) -> None:
    workers = _workers(engine, streams, 2)
    try:
        messages = [a08(p, n) for n in range(UPDATES) for p in range(PATIENTS)]
        answers = send_all(intake.port or 0, messages, connections=PATIENTS)
        assert {ack_code(a) for a in answers} == {"AA"}
        wait_applied(engine, PATIENTS * UPDATES)
    finally:
        for worker in workers:
            worker.stop()
    for p in range(PATIENTS):
        mrn = f"{demo_community().members['XRMYY'].system('mrn')}|ZY77{p:04d}"
        [entry] = client.get("/fhir/Patient", params={"identifier": mrn}).json()["entry"]
        assert entry["resource"]["telecom"][0]["value"] == f"1390000{p:02d}{UPDATES - 1:02d}"
        assert entry["resource"]["meta"]["versionId"] == str(UPDATES)
    # Every entry acknowledged and deleted: the stream holds only unfinished work.
    assert _pending_entries(streams, st.INBOX, GROUP) == 0
    assert streams.redis.xlen(streams.key(st.INBOX)) == 0


def test_a_patients_earlier_pending_messages_go_first(
    feeds: FeedService, engine: sa.Engine
) -> None:
    answers = send_all(feeds.port or 0, [a08(1, n) for n in range(3)] + [a08(2, 0)])
    assert {ack_code(a) for a in answers} == {"AA"}
    ids = [r.id for r in inbox_rows(engine)]
    # The third update of patient 1 drags its two predecessors along; patient 2's stays out.
    assert with_predecessors(engine, [ids[2]]) == ids[:3]
    assert with_predecessors(engine, [ids[3], ids[1]]) == [ids[0], ids[1], ids[3]]
    drain(engine)
    assert with_predecessors(engine, [ids[2]]) == [ids[2]]


def test_entries_of_a_dead_consumer_are_taken_over(
    intake: FeedService, engine: sa.Engine, streams: st.Streams
) -> None:
    answers = send_all(intake.port or 0, [oru(f"DEAD{n}", mrn=f"ZYD{n}") for n in range(6)])
    assert {ack_code(a) for a in answers} == {"AA"}
    # A consumer reads everything, then dies without acknowledging anything.
    assert wait_until(lambda: streams.redis.xlen(streams.key(st.INBOX)) == 6, 5)
    taken = streams.read(st.INBOX, GROUP, "dead", count=100, block=1)
    assert len(taken) == 6 and _pending_entries(streams, st.INBOX, GROUP) == 6
    [worker] = _workers(engine, streams, 1)  # claim_idle is 1 s in this fixture
    try:
        wait_applied(engine, 6, seconds=30)
        assert wait_until(lambda: _pending_entries(streams, st.INBOX, GROUP) == 0, 10)
    finally:
        worker.stop()


def test_rows_redis_never_heard_of_are_reconciled(
    feeds: FeedService, engine: sa.Engine, streams: st.Streams
) -> None:
    # Stored through an intake without Redis (as if Redis had been flushed since).
    answers = send_all(feeds.port or 0, [oru(f"LOST{n}", mrn=f"ZYL{n}") for n in range(5)])
    assert {ack_code(a) for a in answers} == {"AA"}
    with engine.begin() as conn:  # received long enough ago to be past the reconciler's grace
        conn.execute(sa.update(inbox).values(received_at=inbox.c.received_at - 60_000_000))
    [worker] = _workers(engine, streams, 1)  # the reconciler runs at start
    try:
        wait_applied(engine, 5, seconds=30)
    finally:
        worker.stop()


def test_outbound_messages_go_on_their_announcement(
    engine: sa.Engine, clean_db: None, streams: st.Streams
) -> None:
    streams.start()
    st.install(streams)
    # The table pass would come only after a minute: only the stream can make this quick.
    delivery = StreamDelivery(OutboxDelivery(engine), streams, st.OUTBOX, poll_seconds=60)
    try:
        with Receiver(lambda _cid, _n: "AA") as receiver:
            delivery.start()
            time.sleep(0.3)  # past its first table pass
            with engine.begin() as conn:
                for n in range(3):
                    enqueue(conn, receiver.url, oru(f"OUT{n}"))
            assert wait_until(lambda: len(receiver.received) == 3, 10)
            assert receiver.received == ["OUT0", "OUT1", "OUT2"]
    finally:
        delivery.stop()
        st.install(None)
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(outbox.c.status)).scalars()) == {"sent"}
    assert _pending_entries(streams, st.OUTBOX, DELIVERY_GROUP) == 0


def test_a_worker_rebuilds_the_stream_after_redis_lost_it(
    intake: FeedService, engine: sa.Engine, streams: st.Streams
) -> None:
    [worker] = _workers(engine, streams, 1)
    try:
        send_all(intake.port or 0, [oru(f"B{n}", mrn=f"ZYB{n}") for n in range(3)])
        wait_applied(engine, 3)
        # Redis restarted empty: stream and group are gone; new messages must still flow.
        streams.redis.delete(streams.key(st.INBOX))
        send_all(intake.port or 0, [oru(f"A{n}", mrn=f"ZYA{n}") for n in range(3)])
        wait_applied(engine, 6, seconds=30)
    finally:
        worker.stop()
