"""The durable outbox: outbound HL7 v2 messages kept until their destination acknowledges them.

``enqueue`` runs inside the caller's transaction, so a routed order is queued exactly when the
write that caused it commits.  The delivery thread sends each destination's messages in order:
the oldest undelivered message of a destination blocks the ones behind it, so a receiver never
sees a result before the order it belongs to.  ACKs are checked: AA/CA is delivered; AE/CE is
an application error that a resend would only repeat, so it stops there for the office (and
unblocks the queue); AR/CR, no answer, a refused or broken connection are retried with
exponential back-off up to ``max_attempts``, then marked failed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import OperationalError

from adapters.hl7v2.errors import HL7ParseError
from adapters.hl7v2.parse import parse
from adapters.hl7v2.text import msh_fields
from adapters.mllp.framing import FramingError
from adapters.mllp.sync_client import send_once
from hub.store.repository import now_micros
from hub.store.schema import outbox

log = logging.getLogger("hub.outbox")
_SECOND = 1_000_000


def enqueue(conn: Connection, destination: str, payload: bytes) -> int:
    """Queue a message for ``destination`` (mllp://host:port) in the caller's transaction."""
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
    }
    return int(conn.execute(insert(outbox).returning(outbox.c.id), row).scalar_one())


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 12
    first_delay: float = 1.0  # seconds; doubles per attempt
    max_delay: float = 600.0
    timeout: float = 30.0

    def delay(self, attempts: int) -> float:
        return float(min(self.first_delay * 2 ** max(attempts - 1, 0), self.max_delay))


Sender = Callable[[str, bytes, float], bytes]


def _default_sender(url: str, payload: bytes, timeout: float) -> bytes:
    return send_once(url, payload, timeout=timeout)


def _ack_code(answer: bytes) -> str:
    try:
        msa = parse(answer).first("MSA")
    except HL7ParseError:
        return ""
    return msa.value(1).upper() if msa is not None else ""


def deliver_due(engine: Engine, policy: Policy = Policy(), sender: Sender = _default_sender) -> int:
    """One pass: for each destination, try its oldest pending message if it is due."""
    now = now_micros()
    with engine.connect() as conn:
        heads = conn.execute(
            select(func.min(outbox.c.id))
            .where(outbox.c.status == "pending")
            .group_by(outbox.c.destination)
        ).scalars()
        ids = sorted(int(i) for i in heads)
        due = conn.execute(
            select(outbox).where(outbox.c.id.in_(ids), outbox.c.next_attempt_at <= now)
        ).all()
    for row in due:
        _attempt(engine, row, policy, sender)
    return len(due)


def _attempt(engine: Engine, r: Any, policy: Policy, sender: Sender) -> None:
    """One delivery attempt of outbox row ``r``, and its outcome recorded."""
    attempts = r.attempts + 1
    values: dict[str, object] = {"attempts": attempts}
    try:
        answer = sender(r.destination, r.payload, policy.timeout)
    except (OSError, FramingError) as exc:
        code, answer, error = "", None, f"{type(exc).__name__}: {exc}"
    else:
        code, error = _ack_code(answer), None
    if code in ("AA", "CA"):
        values.update(status="sent", sent_at=now_micros(), ack=answer, last_error=None)
    elif code in ("AE", "CE"):
        values.update(status="failed", ack=answer, last_error=f"{code} from the destination")
    else:
        reason = error or (f"{code} from the destination" if code else "no valid ACK")
        if attempts >= policy.max_attempts:
            values.update(status="failed", last_error=f"{reason}; gave up after {attempts}")
        else:
            delay = int(policy.delay(attempts) * _SECOND)
            values.update(next_attempt_at=now_micros() + delay, last_error=reason, ack=answer)
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == r.id).values(**values))


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
        self._thread.join(timeout)

    def deliver_once(self) -> int:
        """One pass over what is due; how many were tried (0: wait for a wake or the poll)."""
        return deliver_due(self.engine, self.policy)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_once()
            except OperationalError:
                log.warning("%s: store unavailable; retrying", self.name)
                sent = 0
            if not sent:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
