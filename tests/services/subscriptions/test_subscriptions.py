"""Subscriptions end to end on the real store: accepted through the FHIR API, matched on every
write path, delivered to a real HTTP receiver with retries, after a restart, and given up."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.fhir import interactions
from hub.fhir.interactions import Unit
from hub.queue.outbox import Policy
from hub.services.subscriptions import observer
from hub.services.subscriptions.delivery import SubscriptionDelivery, deliver_due
from hub.store.schema import subscription_notifications as notes
from tests.services.subscriptions.receiver import Receiver

CRITERIA = "Composition?type=http://loinc.org|18842-5&subject=Patient/p1"
FAST = Policy(max_attempts=3, first_delay=0.05, max_delay=0.4, timeout=2)


def composition(
    subject: str = "Patient/p1", code: str = "18842-5", title: str = "出院小结"
) -> dict:
    return {
        "resourceType": "Composition",
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        "date": "2026-11-01",
        "author": [{"reference": "Organization/XRMYY"}],
        "title": title,
    }


def subscription(endpoint: str, **channel: Any) -> dict[str, Any]:
    criteria = channel.pop("criteria", CRITERIA)
    status = channel.pop("status", "requested")
    return {
        "resourceType": "Subscription",
        "status": status,
        "reason": "住院信息每月反馈 for the health archive",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def subscribe(client: TestClient, endpoint: str, **channel: Any) -> dict[str, Any]:
    answer = client.post("/fhir/Subscription", json=subscription(endpoint, **channel))
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def write(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def notifications(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(notes).order_by(notes.c.id)))


def settle(engine: sa.Engine, policy: Policy = FAST, seconds: float = 15) -> None:
    """Deliver until nothing is pending."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        deliver_due(engine, policy)
        if all(n.status != "pending" for n in notifications(engine)):
            return
        time.sleep(0.02)
    raise AssertionError(f"still pending: {notifications(engine)}")


def wait_for(check: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- accepting Subscriptions -----------------------------------------------------------------


def test_requested_becomes_active(client: TestClient) -> None:
    created = subscribe(client, "https://archive.example.org/hooks")
    assert created["status"] == "active"
    stored = client.get(f"/fhir/Subscription/{created['id']}").json()
    assert stored["status"] == "active" and stored["meta"]["versionId"] == "1"
    # An update asking again is accepted again; off stays off.
    body = {**stored, "status": "requested"}
    assert client.put(f"/fhir/Subscription/{created['id']}", json=body).json()["status"] == "active"
    body = {**stored, "status": "off"}
    assert client.put(f"/fhir/Subscription/{created['id']}", json=body).json()["status"] == "off"


@pytest.mark.parametrize(
    ("change", "expression", "says"),
    [
        ({"type": "websocket"}, "Subscription.channel.type", "not supported"),
        (
            {"type": "email", "endpoint": "mailto:x@qswsy.example"},
            "Subscription.channel.type",
            "email",
        ),
        ({"endpoint": "ftp://archive.example.org/in"}, "Subscription.channel.endpoint", "http"),
        ({"endpoint": "archive.example.org"}, "Subscription.channel.endpoint", "http"),
        ({"payload": "application/fhir+xml"}, "Subscription.channel.payload", "not supported"),
        ({"header": ["Authorization Bearer x"]}, "Subscription.channel.header[0]", "Name: value"),
        ({"criteria": "Composition?nonsense=1"}, "Subscription.criteria", "'nonsense'"),
        ({"criteria": "Composition"}, "Subscription.criteria", "no '?'"),
        ({"criteria": "Widget?x=1"}, "Subscription.criteria", "'Widget'"),
        ({"criteria": "Observation?value-quantity=5"}, "Subscription.criteria", "value-quantity"),
        ({"criteria": "Composition?subject.name=Li"}, "Subscription.criteria", "chained"),
    ],
)
def test_refused_with_operation_outcome(
    client: TestClient, change: dict[str, Any], expression: str, says: str
) -> None:
    body = subscription("https://archive.example.org/hooks")
    for key, value in change.items():
        if key == "criteria":
            body["criteria"] = value
        else:
            body["channel"][key] = value
    answer = client.post("/fhir/Subscription", json=body)
    assert answer.status_code == 422, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["expression"] == [expression]
    assert says in issue["diagnostics"]
    assert not client.get("/fhir/Subscription").json().get("entry")


def test_capability_statement_says_what_is_supported(client: TestClient) -> None:
    rest = client.get("/fhir/metadata").json()["rest"][0]
    entry = next(r for r in rest["resource"] if r["type"] == "Subscription")
    assert "rest-hook" in entry["documentation"]


# --- matching and delivery -------------------------------------------------------------------


def test_matching_write_notifies_once_without_payload(
    client: TestClient, engine: sa.Engine
) -> None:
    with Receiver() as archive:
        sub = subscribe(client, archive.url)
        matching = write(client, composition())
        write(client, composition(subject="Patient/p2"))
        write(client, composition(code="11488-4"))
        write(client, {"resourceType": "Patient", "id": "p1", "active": True})
        queued = notifications(engine)
        assert [(n.subscription_id, n.res_type, n.res_id, n.version_id) for n in queued] == [
            (sub["id"], "Composition", matching["id"], 1)
        ]
        settle(engine)
    assert len(archive.received) == 1
    hook = archive.received[0]
    assert (hook.method, hook.path, hook.body) == ("POST", "/hooks", b"")
    (sent,) = notifications(engine)
    assert sent.status == "sent" and sent.attempts == 1 and sent.sent_at is not None


def test_payload_is_the_matching_version_in_order_with_headers(
    client: TestClient, engine: sa.Engine
) -> None:
    with Receiver() as archive:
        subscribe(
            client,
            archive.url + "/",
            payload="application/fhir+json",
            header=["Authorization: Bearer s3cret", "X-Archive-Member: QSWSY"],
        )
        first = write(client, composition())
        amended = {**first, "title": "出院小结（更正）"}
        answer = client.put(f"/fhir/Composition/{first['id']}", json=amended)
        assert answer.status_code == 200
        settle(engine)
    assert [h.method for h in archive.received] == ["PUT", "PUT"]
    assert {h.path for h in archive.received} == {f"/hooks/Composition/{first['id']}"}
    versions = [orjson.loads(h.body) for h in archive.received]
    assert [v["meta"]["versionId"] for v in versions] == ["1", "2"]
    assert [v["title"] for v in versions] == ["出院小结", "出院小结（更正）"]
    for hook in archive.received:
        assert hook.headers["authorization"] == "Bearer s3cret"
        assert hook.headers["x-archive-member"] == "QSWSY"
        assert hook.headers["content-type"] == "application/fhir+json"


def test_transaction_bundle_notifies_its_matching_entry(
    client: TestClient, engine: sa.Engine
) -> None:
    with Receiver() as archive:
        subscribe(client, archive.url, payload="application/fhir+json")
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    # Matched as stored: the urn:uuid reference resolved to Patient/p1.
                    "resource": composition(
                        subject="urn:uuid:7f0f2a52-8a3a-4b8e-9d54-1c6f9b3b2a01"
                    ),
                    "request": {"method": "POST", "url": "Composition"},
                },
                {
                    "resource": composition(subject="Patient/p9"),
                    "request": {"method": "POST", "url": "Composition"},
                },
                {
                    "fullUrl": "urn:uuid:7f0f2a52-8a3a-4b8e-9d54-1c6f9b3b2a01",
                    "resource": {"resourceType": "Patient", "id": "p1", "active": True},
                    "request": {"method": "PUT", "url": "Patient/p1"},
                },
            ],
        }
        answer = client.post("/fhir", json=bundle)
        assert answer.status_code == 200, answer.text
        location = answer.json()["entry"][0]["response"]["location"]
        created_id = location.split("/")[1]
        (queued,) = notifications(engine)
        assert (queued.res_type, queued.res_id, queued.version_id) == (
            "Composition",
            created_id,
            1,
        )
        settle(engine)
    (hook,) = archive.received
    assert hook.path == f"/hooks/Composition/{created_id}"


def test_services_writing_through_the_writer_are_matched(
    client: TestClient, engine: sa.Engine
) -> None:
    sub = subscribe(client, "https://archive.example.org/hooks")
    with engine.begin() as conn:
        unit = Unit.on(conn)
        stored = unit.writer.create(composition(), "feedback-2026-10-p1")
        unit.writer.flush()
    (queued,) = notifications(engine)
    assert (queued.subscription_id, queued.res_id) == (sub["id"], stored.res_id)


def test_a_rolled_back_write_leaves_no_notification(client: TestClient, engine: sa.Engine) -> None:
    subscribe(client, "https://archive.example.org/hooks")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": composition(), "request": {"method": "POST", "url": "Composition"}},
            {
                "resource": {"resourceType": "Observation", "status": "nonsense"},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert client.post("/fhir", json=bundle).status_code >= 400
    assert notifications(engine) == []


# --- retries, restarts and giving up ---------------------------------------------------------


def test_receiver_down_is_retried_with_back_off_then_delivered(
    client: TestClient, engine: sa.Engine
) -> None:
    port = free_port()  # nothing listens yet: connections are refused
    policy = Policy(max_attempts=8, first_delay=0.5, max_delay=5, timeout=2)
    subscribe(client, f"http://127.0.0.1:{port}/hooks")
    write(client, composition())
    gaps = []
    for attempt in (1, 2):
        wait_for(lambda: deliver_due(engine, policy) > 0)
        (row,) = notifications(engine)
        assert row.status == "pending" and row.attempts == attempt
        assert "ConnectError" in row.last_error
        gaps.append(row.next_attempt_at)
    assert deliver_due(engine, policy) == 0  # the third is not due yet
    with Receiver(port=port) as archive:
        settle(engine, policy)
    (row,) = notifications(engine)
    assert row.status == "sent" and row.attempts == 3
    assert len(archive.received) == 1
    # Back-off: the second wait (1 s) is twice the first (0.5 s).
    assert gaps[1] - gaps[0] >= 900_000


def test_error_answers_are_retried(client: TestClient, engine: sa.Engine) -> None:
    with Receiver(answer=lambda n: 503 if n <= 2 else 204) as archive:
        subscribe(client, archive.url)
        write(client, composition())
        settle(engine)
    assert len(archive.received) == 3
    (row,) = notifications(engine)
    assert row.status == "sent" and row.attempts == 3


def test_a_new_delivery_thread_delivers_what_the_last_one_left(
    client: TestClient, engine: sa.Engine
) -> None:
    port = free_port()
    policy = Policy(max_attempts=20, first_delay=0.05, max_delay=0.2, timeout=2)
    subscribe(client, f"http://127.0.0.1:{port}/hooks", payload="application/fhir+json")
    first = SubscriptionDelivery(engine, policy=policy, poll_seconds=0.05)
    first.start()
    written = [write(client, composition(title=f"第{i}份")) for i in range(3)]
    wait_for(lambda: notifications(engine)[0].attempts >= 2)
    first.stop()  # the hub stops with three notifications pending
    assert {n.status for n in notifications(engine)} == {"pending"}
    with Receiver(port=port) as archive:
        second = SubscriptionDelivery(engine, policy=policy, poll_seconds=0.05)
        second.start()
        try:
            wait_for(lambda: all(n.status == "sent" for n in notifications(engine)))
        finally:
            second.stop()
    assert [h.path.rsplit("/", 1)[1] for h in archive.received] == [w["id"] for w in written]


def test_out_of_attempts_sets_the_subscription_to_error(
    client: TestClient, engine: sa.Engine
) -> None:
    with Receiver(answer=lambda _n: 500) as archive:
        sub = subscribe(client, archive.url)
        write(client, composition())
        write(client, composition(title="第二份"))
        settle_or_held(engine)
        assert len(archive.received) == FAST.max_attempts  # the second waits behind the first
    first, second = notifications(engine)
    assert first.status == "failed" and "HTTP 500" in first.last_error
    assert second.status == "pending" and second.attempts == 0
    stored = client.get(f"/fhir/Subscription/{sub['id']}").json()
    assert stored["status"] == "error" and stored["meta"]["versionId"] == "2"
    assert "HTTP 500" in stored["error"] and "gave up after 3 attempts" in stored["error"]
    history = client.get(f"/fhir/Subscription/{sub['id']}/_history").json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["error", "active"]
    # No longer active: nothing more is queued; set back to requested, it resumes.
    write(client, composition(title="第三份"))
    assert len(notifications(engine)) == 2
    with Receiver(port=archive.port) as back:
        answer = client.put(
            f"/fhir/Subscription/{sub['id']}", json={**stored, "status": "requested"}
        )
        assert answer.json()["status"] == "active"
        settle(engine)
    assert len(back.received) == 1
    assert [n.status for n in notifications(engine)] == ["failed", "sent"]


def settle_or_held(engine: sa.Engine, seconds: float = 15) -> None:
    """Deliver until what is pending is held (its Subscription no longer active)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tried = deliver_due(engine, FAST)
        if not tried and all(
            n.status != "pending" or n.attempts == 0 for n in notifications(engine)
        ):
            return
        time.sleep(0.05)
    raise AssertionError("delivery did not settle")


def test_a_deleted_subscription_drops_what_it_had_pending(
    client: TestClient, engine: sa.Engine
) -> None:
    sub = subscribe(client, "http://127.0.0.1:9/hooks")
    write(client, composition())
    assert client.delete(f"/fhir/Subscription/{sub['id']}").status_code in (200, 204)
    write(client, composition())
    settle(engine)
    (row,) = notifications(engine)
    assert row.status == "failed" and "deleted" in row.last_error


# --- the per-process cache -------------------------------------------------------------------


def test_writes_nobody_subscribed_to_do_not_query_for_subscriptions(
    client: TestClient, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    real = observer.load_active
    monkeypatch.setattr(observer, "load_active", lambda conn: loads.append(1) or real(conn))
    with engine.begin() as conn:
        unit = Unit.on(conn)
        for i in range(200):
            interactions.create(unit, "Observation", {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": f"血糖 {i}"},
            })  # fmt: skip
        unit.writer.flush()
    assert len(loads) == 1
    assert notifications(engine) == []


def test_a_subscription_stored_elsewhere_is_seen_within_the_cache_lifetime(
    client: TestClient, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(observer.ACTIVE, "ttl", 0.3)
    write(client, composition())  # loads the cache: no Subscriptions
    # Another process's write: stored without passing through this process's observer.
    with engine.begin() as conn:
        unit = Unit.on(conn)
        body = {**subscription("https://archive.example.org/hooks"), "status": "active"}
        unit.writer.create(body, "from-elsewhere", observe=False)
        unit.writer.flush()
    write(client, composition())
    assert notifications(engine) == []  # this process still trusts its cache
    time.sleep(0.35)
    write(client, composition())
    (row,) = notifications(engine)
    assert row.subscription_id == "from-elsewhere"
