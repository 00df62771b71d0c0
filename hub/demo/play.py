"""Plays a plan against a running hub: HL7 v2 over its MLLP port, FHIR over its API.

Events of one resident go in order, each once the one before has taken effect: an MLLP
message once acknowledged, and before a FHIR request that reads what earlier messages wrote
(a ``$recognize`` after the results, a down-referral after the discharge) once the hub's worker
has applied them (``GET /admin/inbox?status=pending``).  Different residents' events overlap,
up to ``concurrency`` at a time, each member's system on its own MLLP connections.  With a
``speed`` the simulated month runs that many times faster than the clock; without, as fast as
the hub takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from adapters.mllp.client import MLLPClient
from hub.demo import requests
from hub.demo.events import Check, Decide, Event, Message, Move, Transaction
from hub.demo.traffic import Plan

FHIR_JSON = "application/fhir+json"
_MSA = re.compile(rb"(?:^|\r)MSA\|([A-Z]{2})")
# Keep the hub's backlog of received-but-not-applied messages under this: a newcomer's
# dashboard shows a queue that moves, and the pending list stays short enough to read whole.
MAX_BACKLOG = 300
POLL_LIMIT = 1000
WAIT_LIMIT = 300.0  # seconds a resident's next event waits for the worker at most

Headers = Callable[[str], dict[str, str]]  # client (member code or "admin") → auth header


@dataclass
class Stats:
    messages: int = 0
    requests: int = 0
    acks: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # orders not placed because the clinician took a recognised result
    outcomes: dict[str, int] = field(default_factory=dict)  # checks: accepted, reordered, none
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)


class Lines:
    """Each member's MLLP connections to the hub (a few, reused)."""

    def __init__(self, host: str, port: int, per_member: int = 2) -> None:
        self.host, self.port, self.per_member = host, port, per_member
        self.idle: dict[str, asyncio.Queue[MLLPClient]] = {}
        self.made: dict[str, int] = {}

    async def send(self, member: str, payload: bytes) -> bytes:
        idle = self.idle.setdefault(member, asyncio.Queue())
        if idle.empty() and self.made.get(member, 0) < self.per_member:
            self.made[member] = self.made.get(member, 0) + 1
            client = MLLPClient(self.host, self.port, timeout=60)
        else:
            client = await idle.get()
        try:
            return await client.send(payload)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            await client.close()  # the hub dropped the connection: one fresh try
            return await client.send(payload)
        finally:
            idle.put_nowait(client)

    async def close(self) -> None:
        for idle in self.idle.values():
            while not idle.empty():
                await idle.get_nowait().close()


class Inbox:
    """What the hub's worker has yet to apply, polled from the office's inbox list."""

    def __init__(self, http: httpx.AsyncClient, headers: Headers) -> None:
        self.http, self.headers = http, headers
        self.pending: set[tuple[str, str]] = set()
        self.complete = False  # the last poll saw every pending message
        self.polled_at = 0.0  # when the last poll started (monotonic)
        self.depth = 0
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def poll(self) -> None:
        started = time.monotonic()
        answer = await self.http.get(
            "/admin/inbox",
            params={"status": "pending", "limit": POLL_LIMIT},
            headers=self.headers("admin"),
        )
        answer.raise_for_status()
        found = answer.json()["messages"]
        self.pending = {(m["sender"], m["control_id"]) for m in found}
        self.depth, self.complete = len(found), len(found) < POLL_LIMIT
        self.polled_at = started
        self.changed.set()
        self.changed = asyncio.Event()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError):  # the hub is busy: ask again
                await self.poll()
            await asyncio.sleep(0.1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def done(self, sent: list[tuple[str, str, float]]) -> bool:
        return self.complete and all(
            at < self.polled_at and (sender, cid) not in self.pending for sender, cid, at in sent
        )

    async def applied(self, sent: list[tuple[str, str, float]]) -> None:
        """Until the worker has applied these messages (TimeoutError if it never does)."""
        async with asyncio.timeout(WAIT_LIMIT):
            while not self.done(sent):
                await self.changed.wait()

    async def room(self) -> None:
        """Wait while the backlog is full (not forever: a hub that stopped answering the
        office's list must not stall the demo; its sends then fail and are reported)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT_LIMIT):
                while self.depth >= MAX_BACKLOG:
                    await self.changed.wait()


def _ack_code(answer: bytes) -> str:
    found = _MSA.search(answer)
    return found.group(1).decode() if found else "??"


def _id_from_location(location: str) -> str:
    return location.split("/_history")[0].rsplit("/", 1)[-1]


class Player:
    def __init__(
        self,
        http: httpx.AsyncClient,
        lines: Lines,
        headers: Headers,
        *,
        speed: float | None = None,
        concurrency: int = 12,
        on_done: Callable[[Event], None] | None = None,
    ) -> None:
        self.http, self.lines, self.headers = http, lines, headers
        self.speed, self.concurrency = speed, concurrency
        self.on_done = on_done or (lambda _e: None)
        self.inbox = Inbox(http, headers)
        self.stats = Stats()
        self.ids: dict[str, str] = {}  # Transaction keys → the ids the hub gave
        self.outcomes: dict[str, str] = {}  # Check keys → accepted | reordered | none | failed
        self.issues: dict[str, str] = {}  # Check keys → DetectedIssue reference
        self.unapplied: dict[str, list[tuple[str, str, float]]] = {}

    # -- the plan --

    async def setup(self, plan: Plan, parallel: int = 2) -> None:
        """The centres' archive records, before anything refers to them."""
        slots = asyncio.Semaphore(parallel)

        async def one(t: Transaction) -> None:
            async with slots:
                await self._transaction(t)
                self.on_done(t)

        await asyncio.gather(*(one(t) for t in plan.setup))

    async def play(self, plan: Plan) -> Stats:
        self.inbox.start()
        slots = asyncio.Semaphore(self.concurrency)
        last: dict[str, asyncio.Task[None]] = {}
        wall0: float | None = None  # when the month's first instant was played
        try:
            for event in plan.events:
                # Paced from the month's start; what began before it (stays under way) at once.
                if self.speed and event.at >= plan.start:
                    wall0 = wall0 or time.monotonic()
                    due = wall0 + (event.at - plan.start).total_seconds() / self.speed
                    if (wait := due - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                await slots.acquire()
                task = asyncio.create_task(self._after(last.get(event.person), event))
                task.add_done_callback(lambda _t: slots.release())
                last[event.person] = task
            await asyncio.gather(*last.values())
        finally:
            await self.inbox.stop()
        return self.stats

    async def _after(self, before: asyncio.Task[None] | None, event: Event) -> None:
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        try:
            await self._play(event)
        except Exception as exc:  # one event going wrong must not stop the month
            self.stats.problem(f"{_describe(event)}: {type(exc).__name__}: {exc}")
        self.on_done(event)

    async def _play(self, event: Event) -> None:
        if isinstance(event, Message):
            return await self._message(event)
        sent = self.unapplied.pop(event.person, [])
        if sent:  # what this request reads must have been applied first
            await self.inbox.applied(sent)
        actions: dict[type, Callable[[Any], Awaitable[None]]] = {
            Transaction: self._transaction, Check: self._check, Decide: self._decide,
            Move: self._move,
        }  # fmt: skip
        await actions[type(event)](event)

    # -- HL7 v2 over MLLP --

    async def _message(self, m: Message) -> None:
        if m.unless_accepted and self.outcomes.get(m.unless_accepted) == "accepted":
            self.stats.skipped += 1
            return
        await self.inbox.room()
        answer = await self.lines.send(m.sender, m.payload)
        code = _ack_code(answer)
        self.stats.messages += 1
        self.stats.acks[code] = self.stats.acks.get(code, 0) + 1
        if code not in m.expect:
            self.stats.problem(f"{_describe(m)} was answered {code}, not {'/'.join(m.expect)}")
        elif code == "AA":
            self.unapplied.setdefault(m.person, []).append(
                (m.sender, m.control_id, time.monotonic())
            )

    # -- FHIR --

    async def _fhir(self, method: str, path: str, client: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": FHIR_JSON, **self.headers(client)}
        if "json" in kwargs:
            headers["Content-Type"] = FHIR_JSON
        answer = await self.http.request(method, f"/fhir/{path}", headers=headers, **kwargs)
        self.stats.requests += 1
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path} → {answer.status_code} {answer.text[:300]}")
        return answer

    async def _transaction(self, t: Transaction) -> None:
        if t.unless_accepted and self.outcomes.get(t.unless_accepted) == "accepted":
            self.stats.skipped += 1
            return
        answer = await self._fhir("POST", "", t.client, json=requests.transaction(list(t.entries)))
        for key, entry in zip(t.keys, answer.json().get("entry", []), strict=False):
            if key:
                self.ids[key] = _id_from_location(entry["response"]["location"])

    async def _check(self, c: Check) -> None:
        body = requests.recognize_parameters(*c.identifier, list(c.codes), c.client, c.at)
        try:
            answer = await self._fhir("POST", "ServiceRequest/$recognize", c.client, json=body)
        except RuntimeError:
            self.outcomes[c.key] = "failed"
            raise
        issue = next(
            (
                part["valueReference"]["reference"]
                for item in answer.json()["parameter"]
                if item["name"] == "item"
                for part in item.get("part", [])
                if part["name"] == "issue"
            ),
            None,
        )
        if issue is None:
            outcome = "none"
        elif c.decision == "accept":
            await self._finalise(issue, c.client, "accepted", None, c.at)
            outcome = "accepted"
        else:
            self.issues[c.key] = issue  # the order follows; a Decide says why
            outcome = "reordered"
        self.outcomes[c.key] = outcome
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1

    async def _finalise(
        self, issue: str, client: str, decision: str, reason: str | None, at: datetime
    ) -> None:
        current = (await self._fhir("GET", issue, client)).json()
        await self._fhir("PUT", issue, client, json=requests.decided(current, decision, reason, at))

    async def _decide(self, d: Decide) -> None:
        issue = self.issues.get(d.check)
        if self.outcomes.get(d.check) == "reordered" and issue is not None:
            await self._finalise(issue, d.client, "reordered", d.reason, d.at)

    async def _move(self, m: Move) -> None:
        request = self.ids.get(m.referral)
        if request is None:
            raise RuntimeError(f"no referral {m.referral} to move (its creation failed)")
        found = await self._fhir(
            "GET", "Task", m.client, params={"focus": f"ServiceRequest/{request}"}
        )
        entries = found.json().get("entry") or []
        if not entries:
            raise RuntimeError(f"the referral {m.referral} has no Task")
        task = {k: v for k, v in entries[0]["resource"].items() if k != "meta"}
        task["status"] = m.status
        task["lastModified"] = requests.instant(m.at)
        if m.reason:
            task["statusReason"] = {"text": m.reason}
        await self._fhir("PUT", f"Task/{task['id']}", m.client, json=task)


def _describe(event: Event) -> str:
    if isinstance(event, Message):
        return f"{event.kind} {event.control_id} from {event.sender}"
    if isinstance(event, Transaction):
        return f"{event.kind} from {event.client} at {event.at:%m-%d %H:%M}"
    return f"{type(event).__name__.lower()} by {event.client} at {event.at:%m-%d %H:%M}"
