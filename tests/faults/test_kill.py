"""kill -9 in the middle of an MLLP burst: every message acknowledged AA is applied exactly
once, and the resources written match the input exactly.

- the hub on its embedded default (``hub serve``, no Redis), killed and started again;
- the production shape with Redis: ``hub mllp`` killed and started again (announcements it had
  not published die with it: resends and the reconciler make up for them);
- the production shape with Redis: one of two ``hub worker`` processes killed and left dead
  (the other takes over the stream entries it held once they are idle).

``HUB_FAULT_MESSAGES`` sets the burst (1,000 by default; the README has the 10,000 runs).  Run
with ``-s`` to see each run's figures.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
import sqlalchemy as sa

from hub.queue.stream_workers import GROUP
from hub.queue.streams import INBOX
from tests.faults.harness import (
    APPLY_SECONDS,
    MESSAGES,
    Burst,
    Hub,
    applied_count,
    assert_exactly_once,
    free_port,
    hub_env,
    messages,
    redis_env,
    report,
    wait_all_applied,
    wait_for,
)


def test_kill_9_of_hub_serve_mid_burst(
    db_url: str, engine: sa.Engine, clean_db: None, tmp_path: Path, hubs: list[Hub]
) -> None:
    mllp, http = free_port(), free_port()
    hub = Hub(
        "serve",
        ["serve", "--port", str(http), "--mllp-port", str(mllp)],
        hub_env(db_url, tmp_path),
        tmp_path,
    )
    hubs.append(hub)
    hub.start().wait_port(mllp)
    burst = Burst(mllp, messages("KS")).start()
    wait_for(lambda: len(burst.acked) >= MESSAGES // 3, 120, "a third of the burst")
    hub.kill9()
    killed_at = len(burst.acked)
    time.sleep(0.5)  # senders meet a closed port meanwhile, and keep trying
    hub.start().wait_port(mllp)
    burst.join(300)
    applied_after = wait_all_applied(engine, MESSAGES, APPLY_SECONDS, hubs)
    assert killed_at < MESSAGES and burst.broken > 0, "the kill came too late to matter"
    report(f"hub serve killed at {killed_at} acknowledged", burst, applied_after)
    assert_exactly_once(engine, burst, "KS")


def test_kill_9_of_hub_mllp_with_redis_mid_burst(
    db_url: str,
    redis_url: str,
    engine: sa.Engine,
    clean_db: None,
    tmp_path: Path,
    hubs: list[Hub],
) -> None:
    env = hub_env(db_url, tmp_path, **redis_env(redis_url))
    mllp = free_port()
    intake = Hub("mllp", ["mllp", "--mllp-port", str(mllp)], env, tmp_path)
    worker = Hub("worker", ["worker", "--no-scheduler"], env, tmp_path)
    hubs.extend([intake, worker])
    worker.start()
    intake.start().wait_port(mllp)
    burst = Burst(mllp, messages("KM")).start()
    wait_for(lambda: len(burst.acked) >= MESSAGES // 3, 120, "a third of the burst")
    intake.kill9()
    killed_at = len(burst.acked)
    time.sleep(0.5)
    intake.start().wait_port(mllp)
    burst.join(300)
    applied_after = wait_all_applied(engine, MESSAGES, APPLY_SECONDS, hubs)
    assert killed_at < MESSAGES and burst.broken > 0, "the kill came too late to matter"
    assert worker.alive() and worker.starts == 1
    report(f"hub mllp (Redis) killed at {killed_at} acknowledged", burst, applied_after)
    assert_exactly_once(engine, burst, "KM")


def test_kill_9_of_one_worker_with_redis_mid_burst(
    db_url: str,
    redis_url: str,
    engine: sa.Engine,
    clean_db: None,
    tmp_path: Path,
    hubs: list[Hub],
) -> None:
    env = hub_env(db_url, tmp_path, **redis_env(redis_url))
    inbox_stream = f"{env['HUB_REDIS_PREFIX']}:{INBOX}"
    mllp = free_port()
    intake = Hub("mllp", ["mllp", "--mllp-port", str(mllp)], env, tmp_path)
    ops = [free_port(), free_port()]
    doomed = Hub("worker-1", ["worker", "--no-scheduler", "--ops-port", str(ops[0])], env, tmp_path)
    survivor = Hub(
        "worker-2", ["worker", "--no-scheduler", "--ops-port", str(ops[1])], env, tmp_path
    )
    hubs.extend([intake, doomed, survivor])
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    doomed.start()
    survivor.start()
    intake.start().wait_port(mllp)
    # Both workers reading before the burst (a worker serves its ops port once its threads
    # run): the one killed must be holding entries.
    doomed.wait_port(ops[0])
    survivor.wait_port(ops[1])
    burst = Burst(mllp, messages("KW")).start()
    wait_for(lambda: applied_count(engine) >= MESSAGES // 4, APPLY_SECONDS, "a quarter applied")

    def held() -> dict[str, int]:
        consumers = client.xpending(inbox_stream, GROUP)["consumers"] or []
        return {c["name"]: int(c["pending"]) for c in consumers}

    def held_by_doomed(by_consumer: dict[str, int]) -> int:
        return sum(n for name, n in by_consumer.items() if f":{doomed.pid}:" in name)

    # A worker holds entries only from reading a group until it is applied and acknowledged
    # (one group's worth a thread): kill it in such a moment, not between two groups.
    wait_for(lambda: held_by_doomed(held()) > 0, APPLY_SECONDS, "the worker holding entries")
    doomed.kill9()
    killed_at = applied_count(engine)
    holding = held()
    orphaned = held_by_doomed(holding)
    burst.join(300)
    applied_after = wait_all_applied(engine, MESSAGES, APPLY_SECONDS, hubs)
    assert killed_at < MESSAGES, "the kill came too late to matter"
    assert orphaned > 0, f"the killed worker held no entries: {holding}"
    assert survivor.alive() and intake.alive()
    # Its entries were taken over, applied (or found applied) and acknowledged.
    wait_for(lambda: client.xpending(inbox_stream, GROUP)["pending"] == 0, 30, "no entry held")
    client.close()
    print(f"\nthe killed worker held {orphaned} entries; taken over by the other")
    report(f"one of two workers (Redis) killed at {killed_at} applied", burst, applied_after)
    assert_exactly_once(engine, burst, "KW")
