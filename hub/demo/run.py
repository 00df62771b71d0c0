"""``hub demo``: build the county, start the hub, play the month, run the feedback, report.

The hub runs as ``hub serve`` in a process of its own (the same command an operator runs),
on its own SQLite file unless ``--db`` names a store; or the demo plays against a hub already
running (``--url``, with ``--db`` naming its store, from which the members' tokens are minted,
as ``hub token`` does on the hub's host).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from adapters.feeds.config import Community, demo_community, load_community
from hub.config import Settings, load_settings
from hub.demo.access import Access
from hub.demo.events import Event, Message
from hub.demo.peers import Peers, port_free
from hub.demo.play import Lines, Player, Stats
from hub.demo.population import build_population
from hub.demo.report import archive_pull, feedback, notified, settle, show, summary
from hub.demo.traffic import Plan, build_plan, month_window

DEMO_DB = "sqlite:///./hub-demo.db"


@dataclass(frozen=True)
class DemoOptions:
    db: str | None = None
    residents: int = 5000
    days: int = 30
    month: str | None = None
    speed: float | None = None  # simulated seconds per second; None: as fast as the hub goes
    host: str = "127.0.0.1"
    port: int = 8080
    mllp_port: int = 2575
    url: str | None = None  # a hub already running
    seed: int = 2026
    exit: bool = False
    log: str = "hub-demo.log"


def last_month(community: Community) -> str:
    today = datetime.now(community.tz)
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year}-{month:02d}"


def _fresh_sqlite(url: str) -> None:
    """The demo's own store starts empty on every run (it is the demo's, not the user's)."""
    path = Path(make_url(url).database or "")
    for leftover in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm", ".admin.json"))):
        leftover.unlink(missing_ok=True)


class HubProcess:
    """``hub serve`` with the MLLP listener, in a process of its own."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log_path = settings, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def start(self) -> None:
        s = self.settings
        for what, port in (("HTTP", s.port), ("MLLP", s.mllp_port or 0)):
            if not port_free(s.host, port):
                raise SystemExit(f"port {port} ({what}) is in use: give --port/--mllp-port")
        command = [sys.executable, "-m", "hub.cli", "serve", "--db", s.db_url, "--host", s.host,
                   "--port", str(s.port), "--mllp-port", str(s.mllp_port)]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    async def ready(self, http: httpx.AsyncClient, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"hub serve stopped while starting:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz", timeout=2)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"hub serve did not become ready:\n{self.tail()}")
            await asyncio.sleep(0.2)

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[detail]}"), console=console,
    )  # fmt: skip


async def _play(plan: Plan, player: Player, console: Console) -> Stats:
    with _progress(console) as bar:
        setup = bar.add_task("archives", total=len(plan.setup), detail="residents' records")

        def registered(_e: Event) -> None:
            bar.advance(setup)

        player.on_done = registered
        with _phase(console, f"{len(plan.setup)} archive transactions"):
            await player.setup(plan)
        month = bar.add_task(plan.month, total=len(plan.events), detail="")
        seen = {"HL7": 0, "FHIR": 0}

        def played(e: Event) -> None:
            seen["HL7" if isinstance(e, Message) else "FHIR"] += 1
            detail = f"{e.at:%m-%d %H:%M}  HL7 v2 {seen['HL7']}  FHIR {seen['FHIR']}"
            bar.update(month, advance=1, detail=detail)

        player.on_done = played
        with _phase(console, "month played"):
            return await player.play(plan)


@contextlib.contextmanager
def _phase(console: Console, what: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    console.print(f"[green]demo[/] {what} in {time.monotonic() - began:.1f} s")


def _plan(options: DemoOptions, community: Community, console: Console) -> Plan:
    month = options.month or last_month(community)
    window_end = month_window(month, options.days, community.tz)[1]
    if window_end > datetime.now(community.tz):
        raise SystemExit(f"the demo plays a month gone by: {month} + {options.days} days ends "
                         f"{window_end:%Y-%m-%d}, after today")  # fmt: skip
    population = build_population(community, options.residents, options.seed)
    plan = build_plan(community, population, month, options.days, options.seed)
    console.print(
        f"[green]demo[/] {community.name}: {len(population.residents)} residents, "
        f"{len(community.members)} members; {month} days 1-{options.days}: "
        f"{plan.expected.messages} HL7 v2 messages, {plan.expected.requests} FHIR requests"
    )
    return plan


async def _main(options: DemoOptions, console: Console) -> int:
    started = time.monotonic()
    db = options.db or DEMO_DB
    settings = load_settings(
        None, db_url=db, host=options.host, port=options.port, mllp_port=options.mllp_port
    )
    community = load_community(settings.community) if settings.community else demo_community()
    plan = _plan(options, community, console)
    hub: HubProcess | None = None
    base = options.url.rstrip("/") if options.url else f"http://{options.host}:{options.port}"
    if options.url is None:
        if options.db is None and make_url(db).get_backend_name() == "sqlite":
            _fresh_sqlite(db)
        hub = HubProcess(settings, Path(options.log))
        hub.start()
        shown = make_url(db).render_as_string(hide_password=True)
        console.print(f"[green]demo[/] hub serve starting (store {shown}; log {options.log})")
    peers = Peers.of(community)
    access: Access | None = None
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            if hub is not None:
                await hub.ready(http)
            access = Access(settings, community)
            office_secret = access.office_secret()
            await peers.start()
            await access.point_endpoints(http, peers)
            await access.subscribe(http, peers.hooks.url, community)
            lines = Lines(httpx.URL(base).host or "127.0.0.1", options.mllp_port)
            player = Player(http, lines, access.headers, speed=options.speed)
            stats = await _play(plan, player, console)
            await lines.close()
            with _phase(console, "the hub settled"):
                await settle(http, access.headers, console)
            with _phase(console, "monthly feedback filed"):
                filed = await feedback(http, access.headers, plan.month, console)
            await archive_pull(http, access.headers, community, plan.month)
            await notified(access.notifications_pending, console)
            elapsed = time.monotonic() - started
            show(console, await summary(http, access.headers, plan.month, filed))
            _report(console, options, base, db, stats, office_secret, elapsed)
            code = 1 if stats.problems else 0
            if options.exit or hub is None:
                return code
            console.print("[green]demo[/] the hub keeps running: Ctrl-C stops it")
            await _wait(hub)
            return code
    finally:
        await peers.stop()
        if access is not None:
            access.engine.dispose()
        if hub is not None:
            hub.stop()


async def _wait(hub: HubProcess) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set() and hub.proc is not None and hub.proc.poll() is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1)


def _report(
    console: Console,
    options: DemoOptions,
    base: str,
    db: str,
    stats: Stats,
    office_secret: str | None,
    elapsed: float,
) -> None:
    if stats.problems:
        console.print(f"[red]{len(stats.problems)} events went wrong[/], the first ones:")
        for text in stats.problems[:8]:
            console.print(f"  {text}")
    console.print(f"[bold green]demo done in {elapsed:.1f} s[/] (start to feedback filed)")
    console.print(f"  dashboard  {base}/ui")
    console.print(f"  FHIR API   {base}/fhir    HL7 v2 over MLLP  "
                  f"{httpx.URL(base).host}:{options.mllp_port}")  # fmt: skip
    if office_secret:
        console.print("  log in as the office: client id [bold]ygt-office[/], secret (shown once, "
                      "the hub keeps only its hash):")  # fmt: skip
        console.print(f"  [bold]{office_secret}[/]", soft_wrap=True)
    shown = make_url(db).render_as_string(hide_password=True)
    db_flag = "" if db == "sqlite:///./hub.db" else f" --db {shown}"
    console.print(f"  a token for scripts: hub token --admin{db_flag}")


def run(options: DemoOptions) -> int:
    console = Console()
    try:
        return asyncio.run(_main(options, console))
    except KeyboardInterrupt:  # Ctrl-C while playing: the hub and the peers are stopped
        console.print("[yellow]demo[/] interrupted")
        return 130
