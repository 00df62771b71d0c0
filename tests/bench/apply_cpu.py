"""CPU per message of intake and of the worker's apply, single-threaded, in one process.

    .venv/bin/python -m tests.bench.apply_cpu [--messages 2000] [--rounds 2]

The throughput run (tests.bench.feeds) measures what the issue asks, but on a shared 2-core
machine its messages/s move by ±5% between runs of the same code.  CPU per message, measured
with nothing running in parallel, moves far less, so this is the figure to compare two
versions of the code by.  The same ORU^R01 (5 OBX, a new patient each) as the feed benchmark:
first every message is received (parsed, mapped, checked, stored in the inbox), then the worker
applies them all (groups of up to 100 as one transaction each).  Printed per round: CPU ms per
message of this process's Python and of PostgreSQL's backends, and, measured in the same run,
the CPU of a raw COPY of the same stored resource rows (the floor the apply is compared to).
"""

from __future__ import annotations

import argparse
import gc
import resource
from collections.abc import Callable

import psycopg
from sqlalchemy import Engine

from adapters.feeds.config import Community, demo_community
from hub.db import make_engine
from hub.feeds.bootstrap import load_community_resources
from hub.queue.intake import receive
from hub.queue.worker import drain
from hub.runtime import GROUP_YOUNG_THRESHOLD, YOUNG_THRESHOLD, tune_gc
from hub.store.migrate import upgrade
from tests.bench.common import copy_as_stored, postgres
from tests.bench.feeds import cpu_by_name, feed_resource_rows, oru


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(step: Callable[[], object], count: int) -> tuple[float, float]:
    """(Python ms, PostgreSQL ms) per message of running ``step()``."""
    py, pg = _own_cpu(), cpu_by_name("postgres")
    step()
    return 1000 * (_own_cpu() - py) / count, 1000 * (cpu_by_name("postgres") - pg) / count


def _take(engine: Engine, community: Community, messages: list[bytes]) -> None:
    for raw in messages:
        receive(engine, raw, community, transport="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    n = args.messages
    community = demo_community()
    with postgres() as url:
        upgrade(url)
        engine = make_engine(url, pool_size=4)
        load_community_resources(engine, community)
        tune_gc()
        for i in range(50):  # warm the caches and memos, as a running hub has them
            receive(engine, oru("W", i), community, transport="bench")
        drain(engine)
        print(f"ORU^R01 with 5 OBX, a new patient each; {n} messages a round, one thread")
        print(f"{'round':<8}{'intake py':>10}{'intake pg':>10}{'apply py':>10}{'apply pg':>10}")
        for r in range(args.rounds):
            messages = [oru(f"R{r}", i) for i in range(n)]
            # Each part with its own process's collector threshold (hub mllp, hub worker).
            gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
            intake_py, intake_pg = _measure(
                lambda batch=messages: _take(engine, community, batch), n
            )
            gc.set_threshold(GROUP_YOUNG_THRESHOLD, 20, 20)
            apply_py, apply_pg = _measure(lambda: drain(engine), n)
            print(
                f"{r + 1:<8}{intake_py:>10.2f}{intake_pg:>10.2f}{apply_py:>10.2f}{apply_pg:>10.2f}"
            )
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            rows = feed_resource_rows(conn)
            stored = args.rounds * n + 50
            copy_py, copy_pg = _measure(lambda: copy_as_stored(conn, rows), stored)
        print(f"raw COPY of the same resource rows: py {copy_py:.2f}, pg {copy_pg:.2f}")
        print("(CPU ms per message)")


if __name__ == "__main__":
    main()
