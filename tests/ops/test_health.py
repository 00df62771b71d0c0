"""/healthz (liveness: no I/O) and /readyz (store, Redis, inbox backlog) on the API and on the
ops endpoint of processes without HTTP."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from hub.app import create_app
from hub.config import Settings
from hub.ops import health
from hub.ops.server import OpsServer
from hub.queue.intake import receive
from hub.store.schema import inbox
from tests.ops.messages import oru


def _ready(settings: Settings) -> httpx.Response:
    with TestClient(create_app(settings)) as client:
        return client.get("/readyz")


def test_healthz_answers_without_touching_the_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A store that cannot be opened: the process is still alive.
    settings = Settings(db_url=f"sqlite:///{tmp_path}/missing/dir/hub.db", auth_required=False)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        res = client.get("/readyz")
    assert res.status_code == 503
    body = res.json()
    assert body["status"] == "not ready"
    assert body["failed"] == ["database", "inbox"]
    assert body["checks"]["database"]["ok"] is False
    assert "OperationalError" in body["checks"]["database"]["error"]


def test_ready_with_an_empty_inbox(client: TestClient) -> None:
    res = client.get("/readyz")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["inbox"]["depth"] == 0
    assert "redis" not in body["checks"]  # not configured: not checked


def test_redis_checked_when_configured(settings: Settings, clean_db: None, redis_url: str) -> None:
    assert _ready(settings.model_copy(update={"redis_url": redis_url})).status_code == 200
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    res = _ready(down)
    assert res.status_code == 503
    assert res.json()["failed"] == ["redis"]


def test_redis_down_is_reported_even_without_a_test_redis(
    settings: Settings, clean_db: None
) -> None:
    res = _ready(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    assert res.status_code == 503
    check = res.json()["checks"]["redis"]
    assert check["ok"] is False and "ConnectionError" in check["error"]
    assert "127.0.0.1" not in check["error"]  # the type only, not the driver's text


def test_inbox_depth_over_the_limit(settings: Settings, engine: sa.Engine, clean_db: None) -> None:
    for n in range(3):
        assert receive(engine, oru(f"D{n}"), demo_community(), transport="test").code == "AA"
    assert _ready(settings.model_copy(update={"ready_max_inbox_depth": 3})).status_code == 200
    res = _ready(settings.model_copy(update={"ready_max_inbox_depth": 2}))
    assert res.status_code == 503
    body = res.json()
    assert body["failed"] == ["inbox"]
    assert body["checks"]["inbox"]["depth"] == 3
    assert "3 pending messages (limit 2)" in body["checks"]["inbox"]["error"]
    # 0 turns the limit off.
    assert _ready(settings.model_copy(update={"ready_max_inbox_depth": 0})).status_code == 200


def test_oldest_pending_message_too_old(
    settings: Settings, engine: sa.Engine, clean_db: None
) -> None:
    receive(engine, oru("OLD1"), demo_community(), transport="test")
    with engine.begin() as conn:
        # Received an hour ago and still not applied (the worker is down).
        conn.execute(sa.update(inbox).values(received_at=inbox.c.received_at - 3600 * 10**6))
    res = _ready(settings.model_copy(update={"ready_max_inbox_age": 600}))
    assert res.status_code == 503
    check = res.json()["checks"]["inbox"]
    assert check["oldest_age_seconds"] >= 3600
    assert "limit 600" in check["error"]


def test_a_hung_check_fails_after_the_timeout(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    release = threading.Event()
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.2)
    monkeypatch.setattr(health, "_ping_store", lambda _engine: release.wait(5))
    try:
        result = health.check(engine)
    finally:
        release.set()
    assert not result.ready
    assert result.checks["database"]["error"] == "no answer in 0.2 s"


def test_ops_endpoint_of_a_process_without_http(engine: sa.Engine, clean_db: None) -> None:
    server = OpsServer(engine, port=0, thresholds=health.Thresholds(max_inbox_depth=1))
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz").status_code == 200
        for n in range(2):
            receive(engine, oru(f"O{n}"), demo_community(), transport="test")
        res = httpx.get(f"{base}/readyz")
        assert res.status_code == 503 and res.json()["failed"] == ["inbox"]
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "hub_inbox_depth 2.0" in metrics.text
        assert httpx.get(f"{base}/nothing").status_code == 404
    finally:
        server.stop()
