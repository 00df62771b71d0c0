"""The durable outbox: outbound HL7 v2 messages kept until their destination acknowledges them.

``enqueue`` runs inside the caller's transaction, so a routed order is queued exactly when the
write that caused it commits.  The delivery thread sends each destination's messages in order:
the oldest undelivered message of a destination blocks the ones behind it, so a receiver never
sees a result before the order it belongs to.

A destination is ``mllp://host:port`` or ``Endpoint/<id>`` (hub.queue.destinations), resolved
at each attempt, so an Endpoint changed through the FHIR API is followed without a restart.
Before each attempt the row is claimed with a lease (its ``next_attempt_at`` moved past the
send's timeout), so two delivery threads, in one process or several, never send it twice.

ACKs are checked:
- AA/CA: delivered.
- AE/AR/CE/CR: the receiver read the message and refused it.  It is failed at once, a dead
  letter with the receiver's own words (ERR-8, ERR-3 or ERR-1 text, else MSA-3).  AR used to
  be retried; it no longer is: HL7 gives AR for a message the receiver will not take as it is
  (unsupported type, version or processing id, a rejected field), so resending the same bytes
  only repeats the refusal, up to ``max_attempts`` times over hours, while every message
  behind it for that destination waits.  The office sees the reason at once
  (``GET /admin/outbox?status=failed``), fixes the cause and replays it (``replay``).
- No answer, a timeout, a refused or broken connection, an answer that is no ACK: retried with
  exponential back-off; after ``max_attempts`` the message is a dead letter too.

A row may name a ``topic`` (route-order, route-result ...) and the id of that topic's own row;
the hook registered for the topic (``on_outcome``) sees every final outcome and every replay in
the same transaction that records it, so a routed order's status never disagrees with its
message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import OperationalError

from adapters.hl7v2.errors import HL7ParseError
from adapters.hl7v2.parse import parse, parse_text
from adapters.hl7v2.text import msh_fields
from adapters.mllp.framing import FramingError
from adapters.mllp.sync_client import send_once
from hub.queue.destinations import resolve
from hub.queue.streams import OUTBOX, announce_after_commit
from hub.store.repository import now_micros
from hub.store.schema import outbox

log = logging.getLogger("hub.outbox")
_SECOND = 1_000_000
# A claimed row is not due again for the send's timeout plus this (a crash mid-send frees it).
_LEASE_MARGIN = 5 * _SECOND
_DELIVERED = frozenset({"AA", "CA"})
_REFUSED = frozenset({"AE", "AR", "CE", "CR"})


def enqueue(
    conn: Connection,
    destination: str,
    payload: bytes,
    *,
    topic: str | None = None,
    topic_id: int | None = None,
) -> int:
    """Queue a message for ``destination`` (mllp://host:port or Endpoint/<id>) in the caller's
    transaction; ``topic``/``topic_id`` say whose outcome hook hears how it went."""
    header = msh_fields(payload)
    now = now_micros()
    row = {
        "destination": destination,
        "control_id": (header[9] if len(header) >= 10 else "")[:64],
        "payload": payload,
        "created_at": now,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "topic": topic,
        "topic_id": topic_id,
        "replays": 0,
    }
    row_id = int(conn.execute(insert(outbox).returning(outbox.c.id), row).scalar_one())
    # With Redis: a delivery worker in any process hears of it once this transaction commits.
    announce_after_commit(conn, OUTBOX, row_id, destination)
    return row_id


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 12  # then a dead letter (HUB_OUTBOX_MAX_ATTEMPTS)
    first_delay: float = 1.0  # seconds; doubles per attempt
    max_delay: float = 600.0
    timeout: float = 30.0  # connect and wait for the ACK (HUB_OUTBOX_TIMEOUT)
    hold: float = 5.0  # how often a suspended Endpoint is looked at again

    def delay(self, attempts: int) -> float:
        return float(min(self.first_delay * 2 ** max(attempts - 1, 0), self.max_delay))


@dataclass(frozen=True)
class Outcome:
    """What a topic's hook hears: a final outcome (sent, failed) or a replay (pending)."""

    row_id: int
    topic: str
    topic_id: int | None
    status: str  # sent | failed | pending (replayed by the office)
    code: str  # the ACK code, "" without one
    error: str | None
    at: int  # µs


OutcomeHook = Callable[[Connection, Outcome], None]
_hooks: dict[str, OutcomeHook] = {}


def on_outcome(topic: str, hook: OutcomeHook) -> None:
    """Register the hook of a topic (one per topic; registering again replaces it)."""
    _hooks[topic] = hook


def _tell(conn: Connection, row: Any, outcome: Outcome) -> None:
    hook = _hooks.get(row.topic or "")
    if hook is None:
        return
    # In a savepoint: a hook that fails must not undo the record of what was sent, or the
    # message would go out again.  Its failure is logged; the delivery record stands.
    try:
        with conn.begin_nested():
            hook(conn, outcome)
    except Exception:
        log.exception("outbox %s: the %s hook failed", row.id, row.topic)


Sender = Callable[[str, bytes, float], bytes]


def _default_sender(url: str, payload: bytes, timeout: float) -> bytes:
    return send_once(url, payload, timeout=timeout)


def read_ack(answer: bytes) -> tuple[str, str]:
    """(MSA-1 code, the receiver's reason text) of an ACK; ("", "") if it is no ACK."""
    try:
        message = parse(answer)
    except HL7ParseError:
        # An ACK in another character set than its MSH-18 says: MSA-1 is ASCII in all of
        # them, so the code still counts; the reason text may come out mangled.
        try:
            message = parse_text(answer.decode("utf-8", errors="replace"))
        except HL7ParseError:
            return "", ""
    msa = message.first("MSA")
    if msa is None:
        return "", ""
    texts: list[str] = []
    for err in message.all("ERR"):
        # v2.5+: ERR-8 user message, ERR-3.2 text; v2.3.1/2.4: ERR-1 ELD, its code's text.
        for text in (err.value(8), err.value(3, 2), err.value(1, 4, sub=2)):
            if text.strip() and text.strip() not in texts:
                texts.append(text.strip())
                break
    if not texts and msa.value(3).strip():
        texts.append(msa.value(3).strip())
    return msa.value(1).strip().upper(), "; ".join(texts)


def deliver_due(
    engine: Engine,
    policy: Policy = Policy(),
    sender: Sender = _default_sender,
    *,
    destination: str | None = None,
) -> int:
    """One pass: for each destination (or only this one), try its oldest pending message if
    it is due."""
    now = now_micros()
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        pending = select(func.min(outbox.c.id)).where(outbox.c.status == "pending")
        if destination is not None:
            pending = pending.where(outbox.c.destination == destination)
        heads = pending.group_by(outbox.c.destination).scalar_subquery()
        due = conn.execute(
            select(outbox)
            .where(outbox.c.id.in_(heads), outbox.c.next_attempt_at <= now)
            .order_by(outbox.c.id)
        ).all()
    tried = 0
    for row in due:
        if _claim(engine, row, policy):
            _attempt(engine, row, policy, sender)
            tried += 1
    return tried


def _claim(engine: Engine, row: Any, policy: Policy) -> bool:
    """Take the row for one attempt, unless another delivery thread just did."""
    lease = now_micros() + int(policy.timeout * _SECOND) + _LEASE_MARGIN
    with engine.begin() as conn:
        claimed = conn.execute(
            update(outbox)
            .where(
                outbox.c.id == row.id,
                outbox.c.status == "pending",
                outbox.c.next_attempt_at == row.next_attempt_at,
            )
            .values(next_attempt_at=lease)
        ).rowcount
    return bool(claimed == 1)


def _attempt(engine: Engine, r: Any, policy: Policy, sender: Sender) -> None:
    """One delivery attempt of outbox row ``r``, and its outcome recorded."""
    with engine.connect() as conn:
        conn.execution_options(readonly=True)
        with conn.begin():
            target = resolve(conn, r.destination)
    if target.hold is not None:
        with engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == r.id)
                .values(
                    next_attempt_at=now_micros() + int(policy.hold * _SECOND),
                    last_error=f"held: {target.hold}",
                )
            )
        return
    attempts = r.attempts + 1
    values: dict[str, object] = {"attempts": attempts}
    code, answer, error = "", None, target.error
    if target.url is not None:
        try:
            answer = sender(target.url, r.payload, policy.timeout)
        except (OSError, FramingError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            code, text = read_ack(answer)
            if code in _REFUSED:
                error = f"{code} from the destination" + (f": {text}" if text else "")
            elif code not in _DELIVERED:
                error = f"{code} from the destination" if code else "no valid ACK"
    now = now_micros()
    final: str | None = None
    if code in _DELIVERED:
        final = "sent"
        values.update(status="sent", sent_at=now, ack=answer, last_error=None)
    elif code in _REFUSED:
        final = "failed"
        values.update(status="failed", failed_at=now, ack=answer, last_error=error)
    elif attempts >= policy.max_attempts:
        final = "failed"
        values.update(
            status="failed", failed_at=now, ack=answer,
            last_error=f"{error}; gave up after {attempts} attempts",
        )  # fmt: skip
    else:
        delay = int(policy.delay(attempts) * _SECOND)
        values.update(next_attempt_at=now + delay, last_error=error, ack=answer)
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == r.id).values(**values))
        if final is not None and r.topic:
            last_error = values.get("last_error")
            outcome = Outcome(
                r.id, r.topic, r.topic_id, final, code,
                str(last_error) if last_error else None, now,
            )  # fmt: skip
            _tell(conn, r, outcome)


def replay(
    conn: Connection, ids: Sequence[int] | None = None, *, destination: str | None = None
) -> list[int]:
    """Put dead letters back in the queue (all of them, or these ids, or one destination's),
    attempts reset, in the caller's transaction; the ids replayed.  A replayed message keeps
    its place: it is older than what was queued after it, so it goes first again."""
    query = select(outbox).where(outbox.c.status == "failed").order_by(outbox.c.id)
    if ids is not None:
        query = query.where(outbox.c.id.in_(list(ids)))
    if destination is not None:
        query = query.where(outbox.c.destination == destination)
    rows = conn.execute(query).all()
    now = now_micros()
    for row in rows:
        conn.execute(
            update(outbox)
            .where(outbox.c.id == row.id, outbox.c.status == "failed")
            .values(
                status="pending", attempts=0, next_attempt_at=now, failed_at=None,
                replays=outbox.c.replays + 1,
            )
        )  # fmt: skip
        if row.topic:
            _tell(conn, row, Outcome(row.id, row.topic, row.topic_id, "pending", "", None, now))
    return [int(row.id) for row in rows]


class OutboxDelivery:
    """A background thread that keeps delivering while the hub runs.

    Other durable queues (Subscription rest-hooks) reuse the thread by overriding
    ``deliver_once`` and ``name``."""

    name = "outbox"

    def __init__(
        self, engine: Engine, *, policy: Policy = Policy(), poll_seconds: float = 0.5
    ) -> None:
        self.engine, self.policy, self.poll_seconds = engine, policy, poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():  # never started when a stream consumer ran it instead
            self._thread.join(timeout)

    def deliver_once(self) -> int:
        """One pass over what is due; how many were tried (0: wait for a wake or the poll)."""
        return deliver_due(self.engine, self.policy)

    def deliver_to(self, key: str) -> int:
        """This destination's due message, if any (a stream entry named it: the Redis
        transport, hub.queue.stream_workers)."""
        return deliver_due(self.engine, self.policy, destination=key)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_once()
            except OperationalError:
                log.warning("%s: store unavailable; retrying", self.name)
                sent = 0
            except Exception:
                # A pass that failed on something unforeseen must not end delivery for good.
                log.exception("%s: delivery pass failed; retrying at the next poll", self.name)
                sent = 0
            if not sent:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
