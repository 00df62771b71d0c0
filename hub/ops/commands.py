"""``hub api``, ``hub mllp`` and ``hub scheduler``: the hub's parts as processes of their own.

Production runs each part separately (docker-compose.yml): API replicas behind a load
balancer, the MLLP listener, worker replicas and one scheduler, all sharing the store.
``hub serve`` still runs them together in one process for a county on one machine.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from hub.config import Settings, load_settings

log = logging.getLogger("hub.process")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default sqlite:///./hub.db; env HUB_DB_URL)"),
]
ConfigOption = Annotated[
    str | None, typer.Option("--config", help="TOML config file (env HUB_CONFIG)")
]
OpsPortOption = Annotated[
    int | None,
    typer.Option(
        "--ops-port", help="Serve /healthz, /readyz and /metrics on this port (env HUB_OPS_PORT)"
    ),
]


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _community(settings: Settings) -> Any:
    from adapters.feeds.config import demo_community, load_community

    return load_community(settings.community) if settings.community else demo_community()


def start_ops_server(settings: Settings, engine: Any) -> Any:
    """The health/metrics endpoint of a process without HTTP of its own (None: no port set)."""
    if settings.ops_port is None:
        return None
    from hub.ops.health import Thresholds
    from hub.ops.server import OpsServer

    server = OpsServer(
        engine,
        host=settings.ops_host,
        port=settings.ops_port,
        redis_url=settings.redis_url,
        thresholds=Thresholds(settings.ready_max_inbox_depth, settings.ready_max_inbox_age),
    )
    server.start()
    log.info("health and metrics at http://%s:%d", settings.ops_host, server.port)
    return server


def api(
    host: Annotated[str | None, typer.Option(help="Listen address (env HUB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (env HUB_PORT, default 8080)")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    workers: Annotated[int, typer.Option(help="HTTP worker processes")] = 1,
) -> None:
    """Serve HTTP only: the FHIR API, HTTP feed intake, /healthz, /readyz and /metrics.

    No MLLP listener and no worker: run ``hub mllp`` and ``hub worker`` beside it.
    """
    import os

    from hub.ops import process

    settings = load_settings(config, db_url=db, host=host, port=port)
    process.setup(settings, default_format="json", workers=workers)
    process.prepare_store(settings)
    os.environ["HUB_DB_URL"] = settings.db_url  # worker processes read the environment
    if settings.config:
        os.environ["HUB_CONFIG"] = settings.config
    log.info(
        "FHIR R4 at http://%s:%d/fhir (store: %s)",
        settings.host, settings.port, _redact(settings.db_url),
    )  # fmt: skip
    if workers > 1:
        process.run_http("hub.asgi:app", settings, workers=workers)
    else:
        from hub.app import create_app
        from hub.queue import streams

        # With Redis: HTTP intake and FHIR writes that queue outbound work announce it.
        announcer = streams.from_settings(settings)
        if announcer is not None:
            announcer.start()
            streams.install(announcer)
        try:
            process.run_http(create_app(settings), settings)
        finally:
            if announcer is not None:
                streams.install(None)
                announcer.stop()
    log.info("stopped")


def mllp(
    mllp_port: Annotated[
        int | None, typer.Option("--mllp-port", help="MLLP port (env HUB_MLLP_PORT; 2575)")
    ] = None,
    mllp_host: Annotated[
        str | None, typer.Option("--mllp-host", help="Listen address (env HUB_MLLP_HOST)")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    ops_port: OpsPortOption = None,
) -> None:
    """Listen for HL7 v2 over MLLP: store each message durably, then ACK it.  Nothing else.

    Applying the messages is ``hub worker``'s job (it reads them from the inbox stream with
    HUB_REDIS_URL set, else polls the inbox).  On SIGTERM the listener stops accepting, ACKs
    the messages in hand and closes every connection.
    """
    from hub.db import make_engine
    from hub.feeds.service import FeedService
    from hub.ops import process
    from hub.queue.streams import from_settings as streams_from_settings

    settings = load_settings(
        config, db_url=db, mllp_port=mllp_port, mllp_host=mllp_host, ops_port=ops_port
    )
    process.setup(settings, default_format="json")
    process.prepare_store(settings)
    engine = make_engine(settings.db_url, pool_size=8, max_overflow=8)
    service = FeedService(
        engine,
        _community(settings),
        mllp_host=settings.mllp_host,
        mllp_port=settings.mllp_port if settings.mllp_port is not None else 2575,
        run_worker=False,
        streams=streams_from_settings(settings),  # with Redis: announce to the workers
    )
    service.start()
    from hub.runtime import tune_gc

    tune_gc()
    ops = start_ops_server(settings, engine)
    log.info("HL7 v2 over MLLP at %s:%s", settings.mllp_host, service.port)
    process.wait_for_stop()
    process.on_stop(
        lambda: service.stop(settings.shutdown_timeout),
        *([ops.stop] if ops is not None else []),
        engine.dispose,
    )
    log.info("stopped")


def scheduler(
    db: DbOption = None,
    config: ConfigOption = None,
    ops_port: OpsPortOption = None,
) -> None:
    """Run the scheduled jobs only: today the monthly inpatient feedback.

    Any number may run; a lease in the store lets one of them run each month's job.
    """
    from datetime import time

    from hub.db import make_engine
    from hub.ops import process
    from hub.services.feedback.schedule import FeedbackScheduler

    settings = load_settings(config, db_url=db, ops_port=ops_port)
    process.setup(settings, default_format="json")
    if not settings.feedback_schedule:
        log.error("HUB_FEEDBACK_SCHEDULE is off: there is nothing to schedule")
        raise typer.Exit(2)
    process.prepare_store(settings)
    engine = make_engine(settings.db_url, pool_size=2, max_overflow=2)
    hour, minute = (int(x) for x in settings.feedback_time.split(":"))
    job = FeedbackScheduler(
        engine, _community(settings), day=settings.feedback_day, at=time(hour, minute),
        base=settings.base_url,
    )  # fmt: skip
    job.start()
    ops = start_ops_server(settings, engine)
    log.info(
        "monthly feedback on day %d at %s (%s)",
        settings.feedback_day, settings.feedback_time, _redact(settings.db_url),
    )  # fmt: skip
    process.wait_for_stop()
    # A month in progress gets the shutdown timeout to finish; one cut short keeps its lease
    # until the lease expires, then the next leader runs the month again (a rerun files only
    # what is not filed yet).
    process.on_stop(
        lambda: job.stop(settings.shutdown_timeout),
        *([ops.stop] if ops is not None else []),
        engine.dispose,
    )
    log.info("stopped")


def register(app: typer.Typer) -> None:
    app.command()(api)
    app.command()(mllp)
    app.command()(scheduler)
