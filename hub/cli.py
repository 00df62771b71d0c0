"""The ``hub`` command: serve, migrate."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

from hub.config import load_settings
from hub.ops.commands import register as register_process_commands

app = typer.Typer(help="County medical community records hub (FHIR R4).", no_args_is_help=True)
console = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default sqlite:///./hub.db; env HUB_DB_URL)"),
]
ConfigOption = Annotated[
    str | None, typer.Option("--config", help="TOML config file (env HUB_CONFIG)")
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (env HUB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (env HUB_PORT, default 8080)")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    workers: Annotated[int, typer.Option(help="HTTP worker processes")] = 1,
    mllp_port: Annotated[
        int | None, typer.Option("--mllp-port", help="Listen for HL7 v2 over MLLP on this port")
    ] = None,
    mllp_host: Annotated[
        str | None, typer.Option("--mllp-host", help="MLLP listen address")
    ] = None,
    feed_worker: Annotated[
        bool, typer.Option(help="Apply inbox messages in this process (the default)")
    ] = True,
) -> None:
    """Migrate the store to the latest schema and serve the FHIR API at /fhir.

    With --mllp-port the HL7 v2 listener runs too; the inbox worker runs unless --no-feed-worker.
    """
    import os

    from hub.ops.process import run_http, setup
    from hub.store.migrate import upgrade

    settings = load_settings(
        config, db_url=db, host=host, port=port, mllp_port=mllp_port, mllp_host=mllp_host
    )
    setup(settings, default_format="text", workers=workers)  # before metrics are imported
    upgrade(settings.db_url)
    _load_profiles(settings)
    feeds = _feed_service(settings) if feed_worker or settings.mllp_port else None
    # Worker processes rebuild the settings from the environment.
    os.environ["HUB_DB_URL"] = settings.db_url
    if settings.config:
        os.environ["HUB_CONFIG"] = settings.config
    console.print(
        f"[green]hub[/] FHIR R4 at http://{settings.host}:{settings.port}/fhir "
        f"(store: {_redact(settings.db_url)})"
    )
    if feeds is not None:
        feeds.start()
        from hub.runtime import tune_gc

        tune_gc()
        if feeds.port is not None:
            console.print(f"[green]hub[/] HL7 v2 over MLLP at {settings.mllp_host}:{feeds.port}")
    try:
        # On SIGTERM: requests in flight finish, then the feeds drain (MLLP ACKs the messages
        # in hand, the worker finishes what it is applying), each within the shutdown timeout.
        app_ = "hub.asgi:app" if workers > 1 else _app(settings, feeds)
        run_http(app_, settings, workers=workers)
    finally:
        if feeds is not None:
            feeds.stop(settings.shutdown_timeout)


def _load_profiles(settings: Any) -> None:
    """The community's Organizations, NamingSystems and code maps, written when they changed."""
    from hub.feeds.bootstrap import load_community_resources
    from hub.security.clients import load_profile_clients
    from hub.services.recognition.marking import remark_if_changed

    engine, community = _engine_and_community(settings)
    try:
        written = load_community_resources(engine, community)
        remarked = remark_if_changed(engine)
        load_profile_clients(engine)
        _ensure_admin(settings, engine)
    finally:
        engine.dispose()
    if written:
        console.print(f"[green]hub[/] loaded {written} community resources from profiles/")
    if remarked:
        console.print(f"[green]hub[/] certifications changed: {remarked} reports re-marked (HR)")


def _feed_service(settings: Any) -> Any:
    from adapters.feeds.config import demo_community, load_community
    from hub.db import make_engine
    from hub.feeds.service import FeedService
    from hub.queue.streams import from_settings as streams_from_settings

    community = load_community(settings.community) if settings.community else demo_community()
    engine = make_engine(settings.db_url, pool_size=4, max_overflow=8)
    return FeedService(
        engine,
        community,
        mllp_host=settings.mllp_host,
        mllp_port=settings.mllp_port,
        worker_threads=settings.feed_workers,
        scheduler=_feedback_scheduler(settings, engine, community),
        tls=_mllp_tls(settings),
        outbox_policy=_outbox_policy(settings),
        streams=streams_from_settings(settings),  # None without HUB_REDIS_URL
    )


def _outbox_policy(settings: Any) -> Any:
    from hub.queue.outbox import Policy

    return Policy(max_attempts=settings.outbox_max_attempts, timeout=settings.outbox_timeout)


def _mllp_tls(settings: Any) -> Any:
    from hub.security.tls import server_context

    if not settings.mllp_tls_cert:
        return None
    return server_context(
        settings.mllp_tls_cert, settings.mllp_tls_key or settings.mllp_tls_cert,
        settings.mllp_tls_client_ca,
    )  # fmt: skip


def _feedback_scheduler(settings: Any, engine: Any, community: Any) -> Any:
    from datetime import time

    from hub.services.feedback.schedule import FeedbackScheduler

    if not settings.feedback_schedule:
        return None
    hour, minute = (int(x) for x in settings.feedback_time.split(":"))
    return FeedbackScheduler(
        engine, community, day=settings.feedback_day, at=time(hour, minute),
        base=settings.base_url,
    )  # fmt: skip


def _app(settings: Any, feeds: Any = None) -> Any:
    from hub.app import create_app

    app = create_app(settings)
    if feeds is not None:
        app.state.feed_worker = feeds.worker
    return app


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def migrate(
    db: DbOption = None,
    config: ConfigOption = None,
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Create or change the store's schema through its Alembic migrations."""
    from hub.store.migrate import current, upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url, revision)
    console.print(f"store {_redact(settings.db_url)} at revision {current(settings.db_url)}")


@app.command()
def worker(
    db: DbOption = None,
    config: ConfigOption = None,
    threads: Annotated[
        int | None, typer.Option(help="Worker threads (env HUB_FEED_WORKERS)")
    ] = None,
    nice: Annotated[
        int,
        typer.Option(help="Lower this process's CPU priority by N, to favour ACK latency"),
    ] = 0,
    scheduler: Annotated[
        bool, typer.Option(help="Run the monthly feedback schedule here too (see hub scheduler)")
    ] = True,
    ops_port: Annotated[
        int | None,
        typer.Option("--ops-port", help="Serve /healthz, /readyz, /metrics (env HUB_OPS_PORT)"),
    ] = None,
) -> None:
    """Apply inbox messages, deliver the outbox and poll SQL feeds, in a process of its own.

    Run one of these beside ``hub serve --no-feed-worker`` so feed intake (ACK latency) and
    applying messages do not share one interpreter.
    """
    import logging
    import os

    from hub.ops.commands import start_ops_server
    from hub.ops.process import on_stop, prepare_store, setup, wait_for_stop

    if nice > 0:
        # Applying is throughput work; acknowledging (hub serve) is latency work: on shared
        # cores an operator may let the listener and PostgreSQL get the CPU first (on this
        # 2-core machine nice 5 took ACK p99 at 200/s from ~26-47 to 24 ms, end to end from
        # ~145 to ~120 messages/s).
        os.nice(nice)
    settings = load_settings(config, db_url=db, feed_workers=threads, ops_port=ops_port)
    setup(settings, default_format="json")
    prepare_store(settings)
    # The lease makes one leader wherever the schedule runs; production gives it a process of
    # its own (hub scheduler) and runs its workers with --no-scheduler.
    off = {} if scheduler else {"feedback_schedule": False}
    service = _feed_service(settings.model_copy(update={"mllp_port": None, **off}))
    service.start()
    from hub.runtime import GROUP_YOUNG_THRESHOLD, tune_gc

    tune_gc(GROUP_YOUNG_THRESHOLD)
    ops = start_ops_server(settings, service.engine)
    logging.getLogger("hub.process").info("feed worker on %s", _redact(settings.db_url))
    wait_for_stop()
    # Finishes the messages in hand (each applies in one transaction); nothing acknowledged
    # is lost: whatever is still pending is applied by the next worker to start.
    on_stop(lambda: service.stop(settings.shutdown_timeout), *([ops.stop] if ops else []))


@app.command()
def ingest(
    files: Annotated[
        list[str], typer.Argument(help="Files of HL7 v2 messages (FHS/BHS batches too)")
    ],
    db: DbOption = None,
    config: ConfigOption = None,
    apply: Annotated[bool, typer.Option(help="Apply the messages to the store now")] = True,
) -> None:
    """Feed files of HL7 v2 messages through the same intake as the MLLP listener."""
    from pathlib import Path

    from rich.progress import Progress

    from adapters.hl7v2.batch import split_messages
    from hub.queue.intake import receive
    from hub.queue.worker import drain
    from hub.store.migrate import upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    _load_profiles(settings)
    engine, community = _engine_and_community(settings)
    batches = [(name, split_messages(Path(name).read_bytes())) for name in files]
    counts: dict[str, int] = {}
    with Progress(console=console) as progress:
        task = progress.add_task("receiving", total=sum(len(m) for _, m in batches))
        for name, messages in batches:
            for message in messages:
                receipt = receive(engine, message, community, transport="file", peer=name)
                counts[receipt.code] = counts.get(receipt.code, 0) + 1
                progress.advance(task)
    console.print("acknowledged: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if apply:
        applied = drain(engine)
        console.print("applied: " + ", ".join(f"{k} {v}" for k, v in sorted(applied.items())))


@app.command()
def replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Inbox ids (default: all failed)")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Reprocess failed or rejected inbox messages (after the configuration is fixed)."""
    from hub.queue.replay import replay_messages
    from hub.store.migrate import upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    engine, community = _engine_and_community(settings)
    result = replay_messages(engine, community, ids)
    console.print(", ".join(f"{k} {v}" for k, v in sorted(result.items())) or "nothing to replay")


@app.command("outbox-replay")
def outbox_replay(
    ids: Annotated[
        list[int] | None, typer.Argument(help="Outbox ids (default: every dead letter)")
    ] = None,
    destination: Annotated[
        str | None,
        typer.Option(help="Only this destination's dead letters (Endpoint/XJYZX, mllp://...)"),
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Put dead letters of the outbox back in the queue (after the receiver is fixed).

    They keep their place (older than what was queued after them) and get fresh attempts;
    a running hub serve / hub worker delivers them.  GET /admin/outbox?status=failed lists them.
    """
    from hub.db import make_engine
    from hub.queue.outbox import replay as replay_outbox
    from hub.services.routing import hooks as _routing_hooks  # noqa: F401  (replay moves orders)
    from hub.store.migrate import upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    with engine.begin() as conn:
        replayed = replay_outbox(conn, ids, destination=destination)
    engine.dispose()
    console.print(
        f"replayed {len(replayed)}: {', '.join(map(str, replayed))}"
        if replayed
        else "no dead letters to replay"
    )


@app.command()
def feedback(
    month: Annotated[str, typer.Option(help="The month of discharges, YYYY-MM")],
    org: Annotated[
        str | None, typer.Option(help="Only this primary-care centre (member code)")
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Build and file the monthly inpatient feedback (住院信息每月反馈) for a month now.

    Reruns change nothing unless the data changed; then the documents concerned are amended.
    """
    from rich.progress import Progress

    from hub.services.feedback.model import MONTH
    from hub.services.feedback.run import DEFAULT_BASE, FeedbackBusy, run_month
    from hub.store.migrate import upgrade

    if not MONTH.match(month):
        raise typer.BadParameter("--month must be YYYY-MM, e.g. 2026-10")
    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    _load_profiles(settings)
    engine, community = _engine_and_community(settings)
    if org is not None and community.member(org) is None:
        raise typer.BadParameter(f"--org {org!r} is not a member of the community")
    with Progress(console=console) as bar:
        task = bar.add_task(f"feedback {month}", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or 1)

        try:
            summary = run_month(
                engine, community, month, org=org, trigger="cli", progress=advance,
                base=settings.base_url or DEFAULT_BASE,
            )  # fmt: skip
        except FeedbackBusy as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from exc
    console.print(
        f"{summary.stays} stays: {summary.new} new, {summary.amended} amended, "
        f"{summary.unchanged} unchanged, {summary.withdrawn} withdrawn; "
        f"{summary.packages_written} packages written"
    )
    if summary.unaddressed:
        console.print(
            f"[yellow]{len(summary.unaddressed)} stays have no primary-care centre[/]: "
            f"GET /admin/feedback/unaddressed?month={month} (List/fbu-{month})"
        )


@app.command("reindex-patients")
def reindex_patients(db: DbOption = None, config: ConfigOption = None) -> None:
    """Link Patients written before the patient index existed (run once after upgrading)."""
    from rich.progress import Progress

    from hub.db import make_engine
    from hub.services.identity.reindex import reindex, unindexed
    from hub.store.migrate import upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    with Progress(console=console) as bar:
        task = bar.add_task("linking patients", total=len(unindexed(engine)))
        done = reindex(engine, progress=lambda n: bar.advance(task, n))
    console.print(f"{done} patients linked")


@app.command("remark-reports")
def remark_reports(db: DbOption = None, config: ConfigOption = None) -> None:
    """Re-judge the HR mark of every stored report (after certifications changed)."""
    from hub.db import make_engine
    from hub.services.recognition.marking import remark
    from hub.store.migrate import upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    changed = remark(make_engine(settings.db_url))
    console.print(f"{changed} reports re-marked")


clients_app = typer.Typer(help="The clients that may call the hub (OAuth2 client credentials).")
app.add_typer(clients_app, name="clients")


@clients_app.command("add")
def clients_add(
    client_id: Annotated[str, typer.Option("--id", help="The client id")],
    scopes: Annotated[str, typer.Option(help="The most it may ask for, e.g. 'system/*.rs'")],
    org: Annotated[str | None, typer.Option(help="Its member organisation (code)")] = None,
    name: Annotated[str | None, typer.Option(help="A name for people")] = None,
    role: Annotated[
        list[str] | None, typer.Option("--role", help="member (default), archive, office, admin")
    ] = None,
    serves: Annotated[
        list[str] | None, typer.Option(help="An archive system's centres (repeat)")
    ] = None,
    jwks: Annotated[
        str | None, typer.Option(help="File of its public JWKS (private_key_jwt, preferred)")
    ] = None,
    secret: Annotated[bool, typer.Option(help="Make a client secret and print it once")] = False,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Register (or replace) a client; it proves itself with its JWKS or a secret."""
    import json
    from pathlib import Path

    from hub.security import clients
    from hub.store.migrate import upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    engine, community = _engine_and_community(settings)
    if org is not None and community.member(org) is None:
        raise typer.BadParameter(f"--org {org!r} is not a member of the community")
    if not jwks and not secret:
        raise typer.BadParameter("give --jwks FILE (preferred) or --secret")
    keys = json.loads(Path(jwks).read_text(encoding="utf-8")) if jwks else None
    made = clients.new_secret() if secret else None
    try:
        clients.put(
            engine, client_id, name=name or client_id, org=org, roles=set(role or ["member"]),
            scopes=scopes, secret=made, jwks=keys, serves=set(serves or ()),
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"client {client_id} registered ({'JWKS' if keys else 'secret'}; {scopes})")
    if made:
        console.print("its secret (shown once; the hub keeps only a hash):")
        print(made)


@clients_app.command("list")
def clients_list(db: DbOption = None, config: ConfigOption = None) -> None:
    """The registered clients and what they may be granted."""
    from hub.security import clients

    settings = load_settings(config, db_url=db)
    engine, _ = _engine_and_community(settings)
    with engine.connect() as conn:
        for c in clients.all_clients(conn):
            how = "jwks" if c.jwks else "secret" if c.secret_hash else "no credentials"
            print(f"{c.client_id}\t{c.org or '-'}\t{','.join(sorted(c.roles))}\t{how}\t{c.scopes}")


@app.command()
def token(
    client: Annotated[str | None, typer.Option("--client", help="Mint for this client id")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="The local admin client")] = False,
    scope: Annotated[str | None, typer.Option(help="Ask for less than the client may have")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Print a bearer access token, alone on its last line (for scripts: $(hub token ...)).

    Minted on the hub's own host from the store (whoever can read the store is the office)."""
    from hub.security import clients
    from hub.security.admin_client import ADMIN_CLIENT_ID
    from hub.security.clients import AuthError, load_profile_clients
    from hub.security.keys import KeyRing
    from hub.security.tokens import issue, token_issuer
    from hub.store.migrate import upgrade

    if admin == (client is not None):
        raise typer.BadParameter("give exactly one of --client ID and --admin")
    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url)
    engine, _ = _engine_and_community(settings)
    if admin:
        _ensure_admin(settings, engine)
    load_profile_clients(engine)
    wanted = ADMIN_CLIENT_ID if admin else str(client)
    with engine.connect() as conn:
        found = clients.get(conn, wanted)
    if found is None or found.disabled:
        raise typer.BadParameter(f"no client {wanted!r} (hub clients list)")
    issuer = token_issuer(settings)
    try:
        answer = issue(KeyRing(engine), found, scope, issuer=issuer, audience=f"{issuer}/fhir")
    except AuthError as exc:
        raise typer.BadParameter(exc.description) from exc
    console.print(f"token for {wanted}: {answer['scope']}, {answer['expires_in']} s")
    print(answer["access_token"])


def _ensure_admin(settings: Any, engine: Any) -> None:
    from hub.security.admin_client import credentials_path, ensure_admin_client

    path = credentials_path(settings.db_url, settings.admin_credentials)
    made = ensure_admin_client(engine, path)
    if made is not None:
        console.print(f"[yellow]hub[/] made the local admin client; its credentials are in {made}"
                      " (readable by you only)")  # fmt: skip


def _engine_and_community(settings: Any) -> tuple[Any, Any]:
    from adapters.feeds.config import demo_community, load_community
    from hub.db import make_engine

    community = load_community(settings.community) if settings.community else demo_community()
    return make_engine(settings.db_url), community


@app.command()
def demo(
    db: Annotated[
        str | None,
        typer.Option("--db", help="Store (default: ./hub-demo.db, made afresh each run)"),
    ] = None,
    residents: Annotated[int, typer.Option(min=50, help="Synthetic residents")] = 5000,
    days: Annotated[int, typer.Option(min=1, max=31, help="Days of the month to play")] = 30,
    month: Annotated[
        str | None, typer.Option(help="The month played, YYYY-MM (default: last month)")
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(help="Simulated seconds per second (default: as fast as the hub goes)"),
    ] = None,
    host: Annotated[str, typer.Option(help="Listen address of the hub it starts")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    mllp_port: Annotated[int, typer.Option("--mllp-port", help="MLLP port")] = 2575,
    url: Annotated[
        str | None,
        typer.Option(help="Play against a hub already running here (its store: --db)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same county, same month")] = 2026,
    exit_: Annotated[
        bool, typer.Option("--exit", help="Stop the hub when done instead of serving on")
    ] = False,
) -> None:
    """A synthetic county community and a month of its traffic, played through the hub's real
    MLLP port and FHIR API, then the monthly feedback; the hub keeps serving /ui afterwards."""
    from hub.demo.run import DemoOptions, run

    if month is not None:
        from hub.services.feedback.model import MONTH

        if not MONTH.match(month):
            raise typer.BadParameter("--month must be YYYY-MM, e.g. 2026-10")
    options = DemoOptions(
        db=db, residents=residents, days=days, month=month, speed=speed, host=host, port=port,
        mllp_port=mllp_port, url=url, seed=seed, exit=exit_,
    )  # fmt: skip
    raise typer.Exit(run(options))


# hub api, hub mllp, hub scheduler: the parts of ``hub serve`` as processes of their own.
register_process_commands(app)

if __name__ == "__main__":
    app()
