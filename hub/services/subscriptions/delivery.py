"""Rest-hook delivery of the notifications the matcher queued (``subscription_notifications``).

The table is the record: whatever is ``pending`` is delivered by whichever delivery thread runs
next, after a restart too.  Per Subscription the oldest pending notification goes first and
holds back the ones behind it, so a receiver sees versions in the order they were written.
R4 rest-hook: with no ``channel.payload`` an empty POST to the endpoint; with a JSON payload a
PUT of the matching version to ``{endpoint}/{Type}/{id}``; ``channel.header`` lines go as HTTP
headers.  A 2xx answer is delivered; any other answer, a refused connection or a timeout is
retried with the outbox's exponential back-off (hub.queue.outbox.Policy) up to
``max_attempts``; then the notification is failed and the Subscription is set to ``error`` with
the reason (a new version, written through the Writer).  Notifications of a Subscription that
is not active wait for it to be active again; those of a deleted one are failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.exc import OperationalError

from hub.fhir.errors import FhirError
from hub.ops.metrics import SUBSCRIPTION_DELIVERIES
from hub.queue.outbox import OutboxDelivery, Policy
from hub.services.subscriptions.observer import is_live
from hub.store import repository as repo
from hub.store.locks import lock_keys
from hub.store.repository import now_micros
from hub.store.schema import resource_history, resources, subscription_notifications

log = logging.getLogger("hub.subscriptions")
_SECOND = 1_000_000
# A claimed notification is not due again for the request's timeout plus this: another
# delivery thread (another process) leaves it alone, and a crash mid-send frees it after that.
_LEASE_MARGIN = 5 * _SECOND

_n = subscription_notifications.c

# Services that must know a notification reached its endpoint (order routing counts a result
# delivered to a member that speaks FHIR once its rest-hook took it): called with the
# notification row and its Subscription, in the transaction that records the delivery.
DeliveredHook = Callable[[Connection, Any, dict[str, Any]], None]
delivered_hooks: list[DeliveredHook] = []


def deliver_due(
    engine: Engine,
    policy: Policy = Policy(),
    client: httpx.Client | None = None,
    *,
    subscription_id: str | None = None,
) -> int:
    """One pass: each Subscription's (or only this one's) oldest pending notification, if
    due; how many were tried."""
    own = client is None
    http = client or httpx.Client(timeout=policy.timeout)
    try:
        now = now_micros()
        with engine.connect() as conn:
            conn.execution_options(readonly=True)  # SQLite: a read needs no write lock
            pending = select(func.min(_n.id)).where(_n.status == "pending")
            if subscription_id is not None:
                pending = pending.where(_n.subscription_id == subscription_id)
            heads = pending.group_by(_n.subscription_id).scalar_subquery()
            due = conn.execute(
                select(subscription_notifications)
                .where(_n.id.in_(heads), _n.next_attempt_at <= now)
                .order_by(_n.id)
            ).all()
            subscriptions = _subscriptions(conn, {r.subscription_id for r in due})
        tried = 0
        for row in due:
            subscription = subscriptions.get(row.subscription_id)
            if subscription is None:
                _drop(engine, row.subscription_id)
                tried += 1
            elif is_live(subscription, now) and _claim(engine, row, policy):
                _attempt(engine, http, row, subscription, policy)
                tried += 1
        return tried
    finally:
        if own:
            http.close()


def _subscriptions(conn: Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The current Subscriptions by id; deleted ones are absent."""
    if not ids:
        return {}
    rows = conn.execute(
        select(resources.c.res_id, resources.c.content).where(
            resources.c.res_type == "Subscription",
            resources.c.res_id.in_(sorted(ids)),
            resources.c.deleted.is_(False),
        )
    )
    return {r.res_id: orjson.loads(r.content) for r in rows if r.content}


def _drop(engine: Engine, subscription_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(subscription_notifications)
            .where(_n.subscription_id == subscription_id, _n.status == "pending")
            .values(status="failed", last_error=f"Subscription/{subscription_id} was deleted")
        )


def _claim(engine: Engine, row: Any, policy: Policy) -> bool:
    """Take the notification for one attempt, unless another delivery thread just did."""
    lease = now_micros() + int(policy.timeout * _SECOND) + _LEASE_MARGIN
    with engine.begin() as conn:
        claimed = conn.execute(
            update(subscription_notifications)
            .where(
                _n.id == row.id,
                _n.status == "pending",
                _n.next_attempt_at == row.next_attempt_at,
            )
            .values(next_attempt_at=lease)
        ).rowcount
    return bool(claimed == 1)


def _attempt(
    engine: Engine, http: httpx.Client, row: Any, subscription: dict[str, Any], policy: Policy
) -> None:
    attempts = row.attempts + 1
    try:
        error = _send(engine, http, row, subscription)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        error = f"{type(exc).__name__}: {exc}"
    values: dict[str, object] = {"attempts": attempts}
    with engine.begin() as conn:
        if error is None:
            values.update(status="sent", sent_at=now_micros(), last_error=None)
            _tell(conn, row, subscription)
        elif attempts >= policy.max_attempts:
            reason = f"{error}; gave up after {attempts} attempts"
            values.update(status="failed", last_error=reason)
            try:
                _set_error(conn, row.subscription_id, f"rest-hook delivery failed: {reason}")
            except FhirError:
                # A Subscription the hub can no longer store as it is: the failure stays on
                # the notification, which must not be retried for ever because of it.
                log.exception("Subscription/%s: could not set status error", row.subscription_id)
        else:
            delay = int(policy.delay(attempts) * _SECOND)
            values.update(next_attempt_at=now_micros() + delay, last_error=error)
        conn.execute(update(subscription_notifications).where(_n.id == row.id).values(**values))
    # Counted once the outcome is committed: sent, failed (gave up) or retry.
    SUBSCRIPTION_DELIVERIES.labels(values.get("status", "retry")).inc()


def _tell(conn: Connection, row: Any, subscription: dict[str, Any]) -> None:
    for hook in delivered_hooks:
        # In a savepoint: a hook that fails must not make the notification go out again.
        try:
            with conn.begin_nested():
                hook(conn, row, subscription)
        except Exception:
            log.exception("notification %s: a delivered hook failed", row.id)


def _send(engine: Engine, http: httpx.Client, row: Any, subscription: dict[str, Any]) -> str | None:
    """One request; None when the endpoint answered 2xx, else why not."""
    channel = subscription.get("channel") or {}
    endpoint: str = channel["endpoint"]
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in channel.get("header") or [])
    ]
    payload = channel.get("payload")
    if payload is None:
        answer = http.post(endpoint, content=b"", headers=headers)
    else:
        with engine.connect() as conn:
            conn.execution_options(readonly=True)
            content = conn.execute(
                select(resource_history.c.content).where(
                    resource_history.c.res_type == row.res_type,
                    resource_history.c.res_id == row.res_id,
                    resource_history.c.version_id == row.version_id,
                )
            ).scalar()
        if content is None:
            return f"{row.res_type}/{row.res_id} version {row.version_id} is not stored"
        headers.append(("Content-Type", payload))
        url = f"{endpoint.rstrip('/')}/{row.res_type}/{row.res_id}"
        answer = http.put(url, content=content.encode("utf-8"), headers=headers)
    if 200 <= answer.status_code < 300:
        return None
    return f"HTTP {answer.status_code} from the endpoint"


def _set_error(conn: Connection, subscription_id: str, text: str) -> None:
    """Subscription.status ``error`` with the reason, as a new version (R4: the server stops
    sending until the client sets it back to ``requested`` or ``active``)."""
    from hub.fhir import interactions
    from hub.fhir.interactions import Unit

    lock_keys(conn, [f"Subscription/{subscription_id}"])
    current = repo.read_current(conn, "Subscription", subscription_id)
    if current is None or current.deleted or current.content is None:
        return
    body = orjson.loads(current.content)
    if body.get("status") != "active":
        return  # the client turned it off meanwhile: its word stands
    body.update(status="error", error=text)
    unit = Unit.on(conn)
    interactions.update(unit, "Subscription", subscription_id, body, locked=True)
    unit.writer.flush()


class SubscriptionDelivery(OutboxDelivery):
    """The background thread that delivers rest-hooks while the hub runs (start/stop/wake)."""

    name = "subscriptions"

    def __init__(
        self, engine: Engine, *, policy: Policy = Policy(), poll_seconds: float = 0.5
    ) -> None:
        super().__init__(engine, policy=policy, poll_seconds=poll_seconds)
        self._http = httpx.Client(timeout=policy.timeout)  # kept-alive connections per endpoint

    def deliver_once(self) -> int:
        try:
            return deliver_due(self.engine, self.policy, self._http)
        except OperationalError:
            raise  # the loop waits for the store
        except Exception:
            # A pass that failed on something unforeseen must not end delivery for good.
            log.exception("subscriptions: delivery pass failed; retrying at the next poll")
            return 0

    def deliver_to(self, key: str) -> int:
        """This Subscription's due notification (a stream entry named it)."""
        return deliver_due(self.engine, self.policy, self._http, subscription_id=key)

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        self._http.close()
