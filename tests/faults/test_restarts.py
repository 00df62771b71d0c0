"""The shared engines restarted under load: nothing acknowledged is lost, and the hub's
processes recover by themselves (none is restarted).

- PostgreSQL (a cluster of the test's own, stopped with ``-m immediate`` and started again
  after a few seconds): intake answers AR while the store is away, senders resend, the
  workers wait and go on.  In the PostgreSQL pass of tests/run.sh.
- Redis (a redis-server of the test's own, without persistence, killed and started again
  empty): intake never waits for Redis and keeps answering AA; workers reconnect, rebuild
  the stream and its group, and the reconciler announces again what Redis forgot.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub.db import make_engine
from tests.faults.harness import (
    APPLY_SECONDS,
    MESSAGES,
    Burst,
    Hub,
    PgCluster,
    RedisServer,
    assert_exactly_once,
    free_port,
    hub_env,
    messages,
    redis_env,
    report,
    wait_all_applied,
    wait_for,
)

OUTAGE_SECONDS = 3.0
RATE = 150.0  # messages/s: the outage lands in the middle of the burst


@pytest.fixture
def pg_cluster(backend: str) -> Iterator[PgCluster]:
    if backend != "postgresql":
        pytest.skip("runs in the PostgreSQL pass (tests/run.sh)")
    cluster = PgCluster()
    yield cluster
    cluster.destroy()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (tests/run.sh installs it)")
    server = RedisServer()
    yield server
    server.destroy()


def _production_shape(env: dict[str, str], tmp_path: Path, hubs: list[Hub]) -> tuple[int, Hub, Hub]:
    """``hub mllp`` and one ``hub worker``, ready; the MLLP port."""
    mllp = free_port()
    intake = Hub("mllp", ["mllp", "--mllp-port", str(mllp)], env, tmp_path)
    worker = Hub("worker", ["worker", "--no-scheduler"], env, tmp_path)
    hubs.extend([intake, worker])
    intake.start().wait_port(mllp)  # it migrates the store first; then the worker starts
    worker.start()
    return mllp, intake, worker


def test_postgresql_restarted_under_load(
    pg_cluster: PgCluster, redis_url: str, tmp_path: Path, hubs: list[Hub]
) -> None:
    env = hub_env(pg_cluster.url, tmp_path, **redis_env(redis_url))
    mllp, intake, worker = _production_shape(env, tmp_path, hubs)
    engine = make_engine(pg_cluster.url, pool_size=2)
    try:
        burst = Burst(mllp, messages("PG"), rate=RATE).start()
        wait_for(lambda: len(burst.acked) >= MESSAGES // 3, 120, "a third of the burst")
        pg_cluster.stop("immediate")
        stopped_at = len(burst.acked)
        time.sleep(OUTAGE_SECONDS)
        refused = burst.answers["AR"]
        pg_cluster.start()
        burst.join(300)
        applied_after = wait_all_applied(engine, MESSAGES, APPLY_SECONDS, hubs)
        report(f"PostgreSQL stopped {OUTAGE_SECONDS:.0f} s at {stopped_at}", burst, applied_after)
        assert stopped_at < MESSAGES
        assert refused > 0, "intake never noticed the store was away"
        assert set(burst.answers) <= {"AA", "AR"}
        assert intake.alive() and worker.alive() and intake.starts == worker.starts == 1
        assert_exactly_once(engine, burst, "PG")
    finally:
        engine.dispose()


def test_redis_restarted_empty_under_load(
    db_url: str,
    engine: sa.Engine,
    clean_db: None,
    redis_server: RedisServer,
    tmp_path: Path,
    hubs: list[Hub],
) -> None:
    env = hub_env(db_url, tmp_path, **redis_env(redis_server.url))
    mllp, intake, worker = _production_shape(env, tmp_path, hubs)
    burst = Burst(mllp, messages("RD"), rate=RATE).start()
    wait_for(lambda: len(burst.acked) >= MESSAGES // 3, 120, "a third of the burst")
    redis_server.kill()
    stopped_at = len(burst.acked)
    time.sleep(OUTAGE_SECONDS)
    during = len(burst.acked) - stopped_at
    redis_server.start()
    burst.join(300)
    applied_after = wait_all_applied(engine, MESSAGES, APPLY_SECONDS, hubs)
    report(f"Redis killed {OUTAGE_SECONDS:.0f} s at {stopped_at}", burst, applied_after)
    assert stopped_at < MESSAGES
    assert during > 0, "intake stopped acknowledging while Redis was away"
    assert set(burst.answers) == {"AA"}  # intake never depends on Redis
    assert intake.alive() and worker.alive() and intake.starts == worker.starts == 1
    assert_exactly_once(engine, burst, "RD")
