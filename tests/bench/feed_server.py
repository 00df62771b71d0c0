"""The feed side of the hub alone (MLLP listener, intake, inbox worker), for the benchmark.

    python -m tests.bench.feed_server --db URL --port N [--workers 2] [--hl7apy]

``--hl7apy`` makes intake also parse every message with hl7apy's ``parse_message`` (the
comparison the issue asks for); everything else is the production code path.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from adapters.feeds.config import demo_community
from hub.db import make_engine
from hub.feeds.service import FeedService
from hub.runtime import tune_gc


def _with_hl7apy() -> None:
    from hl7apy.parser import parse_message

    import hub.queue.intake as intake

    ours = intake.parse

    def both(raw: bytes, default_charset: str = "utf-8"):  # type: ignore[no-untyped-def]
        message = ours(raw, default_charset)
        text = "\r".join(
            message.delimiters.field.join(s.fields if s.name != "MSH" else ["MSH", *s.fields[2:]])
            for s in message.segments
        )
        parse_message(text, find_groups=True)
        return message

    intake.parse = both  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hl7apy", action="store_true")
    parser.add_argument(
        "--no-worker", action="store_true", help="intake only (a `hub worker` process applies)"
    )
    args = parser.parse_args()
    if args.hl7apy:
        _with_hl7apy()
    engine = make_engine(args.db, pool_size=16, max_overflow=8)
    service = FeedService(
        engine, demo_community(), mllp_port=args.port, worker_threads=args.workers,
        intake_threads=16, run_worker=not args.no_worker,
    )  # fmt: skip
    service.start()
    tune_gc()  # as hub serve does
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    service.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
