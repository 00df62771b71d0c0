"""Rate limits per client (in memory and in Redis), login floods, and request size limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.security import clients
from hub.security.ratelimit import (
    Blocks,
    MemoryLimiter,
    Rate,
    RateLimits,
    RedisLimiter,
    community_limits,
)
from tests.conftest import mint_token

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _caller(app: FastAPI, client_id: str, **kw: Any) -> TestClient:
    token = mint_token(app, scopes="system/*.rs", org="QSWSY", roles=frozenset({"member"}),
                       client_id=client_id)  # fmt: skip
    return TestClient(app, headers={"Authorization": f"Bearer {token}"}, **kw)


def _limits(app: FastAPI, **rates: Rate) -> None:
    app.state.rate_limits = replace(app.state.rate_limits, **rates)


def _throttled(res: Any) -> int:
    assert res.status_code == 429, res.text
    body = res.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "throttled"
    return int(res.headers["Retry-After"])


def _flood(caller: TestClient, n: int, path: str = "/fhir/Organization") -> list[int]:
    return [caller.get(path).status_code for _ in range(n)]


# --- per client ---------------------------------------------------------------------------


def test_a_flood_from_one_client_is_throttled_and_another_client_is_not(app: FastAPI) -> None:
    _limits(app, member=Rate(0.5, 5))
    flooding, other = _caller(app, "c-flood"), _caller(app, "c-calm")
    assert _flood(flooding, 5) == [200] * 5
    retry = _throttled(flooding.get("/fhir/Organization"))
    assert 1 <= retry <= 2  # one token back at 0.5 a second
    assert _flood(other, 5) == [200] * 5  # its own bucket
    assert _flood(flooding, 3) == [429] * 3


def test_rates_follow_the_role_and_the_named_client(app: FastAPI) -> None:
    _limits(app, member=Rate(0.1, 2), office=Rate(0.1, 4), clients={"c-big": Rate(0.1, 6)})
    assert _flood(_caller(app, "c-small"), 3) == [200, 200, 429]
    assert _flood(_caller(app, "c-big"), 7) == [200] * 6 + [429]
    office = TestClient(app, headers={"Authorization": f"Bearer {mint_token(app)}"})
    assert _flood(office, 5) == [200] * 4 + [429]


def test_the_open_paths_are_limited_per_address_and_probes_never(app: FastAPI) -> None:
    _limits(app, anonymous=Rate(0.1, 3))
    anon = TestClient(app)
    assert _flood(anon, 4, "/fhir/metadata") == [200, 200, 200, 429]
    assert _flood(anon, 10, "/healthz") == [200] * 10


def test_the_token_endpoint_is_limited_per_client_and_per_address(
    app: FastAPI, engine: sa.Engine
) -> None:
    clients.put(engine, "qswsy-his", name="QSWSY HIS", org="QSWSY", roles={"member"},
                scopes="system/*.rs", secret="s3cret")  # fmt: skip
    _limits(app, token_client=Rate(0.1, 2), token_address=Rate(0.1, 4))
    anon = TestClient(app)

    def ask(client_id: str) -> int:
        form = {"grant_type": "client_credentials", "client_id": client_id,
                "client_secret": "s3cret"}  # fmt: skip
        return anon.post("/auth/token", data=form, headers=FORM).status_code

    assert [ask("qswsy-his") for _ in range(3)] == [200, 200, 429]
    assert ask("other-his") == 401  # another client id: its own bucket (and no such client)
    assert ask("third-his") == 429  # the address's bucket is empty now


def test_a_login_flood_is_refused_before_it_costs_a_check_or_an_audit(
    app: FastAPI, client: TestClient, engine: sa.Engine
) -> None:
    _limits(app, login_failures=Rate(0.01, 3))
    anon = TestClient(app)
    bad = {"Authorization": "Bearer not.a.jwt"}
    assert [anon.get("/fhir/Patient", headers=bad).status_code for _ in range(4)] == [401] * 4
    audited = _audit_count(engine)
    assert audited == 4  # each refused token recorded, the one that emptied the bucket too
    retry = _throttled(anon.get("/fhir/Patient", headers=bad))
    assert retry > 60  # one failure back every 100 s
    _throttled(anon.get("/fhir/metadata"))  # the address, whatever it asks
    assert _audit_count(engine) == audited
    assert client.get("/healthz").status_code == 200


def _audit_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        query = sa.text("SELECT count(*) FROM resources WHERE res_type = 'AuditEvent'")
        return int(conn.execute(query).scalar_one())


def test_wrong_secrets_for_one_client_block_that_client_at_the_token_endpoint(
    app: FastAPI, engine: sa.Engine
) -> None:
    clients.put(engine, "qswsy-his", name="QSWSY HIS", org="QSWSY", roles={"member"},
                scopes="system/*.rs", secret="s3cret")  # fmt: skip
    _limits(app, login_failures=Rate(0.01, 2))
    blocks: Blocks = app.state.login_blocks

    def ask(secret: str) -> int:
        form = {"grant_type": "client_credentials", "client_id": "qswsy-his",
                "client_secret": secret}  # fmt: skip
        return TestClient(app).post("/auth/token", data=form, headers=FORM).status_code

    assert [ask("guess-1"), ask("guess-2"), ask("guess-3")] == [401, 401, 401]
    assert blocks.blocked("client:qswsy-his") > 0
    blocks.block("addr:testclient", 0)  # as if the guesses came from many addresses
    assert ask("s3cret") == 429  # the client id itself is refused for a while


# --- the bucket -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    limiter, rate = MemoryLimiter(clock), Rate(2.0, 3)
    assert [limiter.hit("k", rate).allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.hit("k", rate)
    assert refused.retry_after == pytest.approx(0.5) and refused.retry_after_header == "1"
    clock.now += 0.5
    assert limiter.hit("k", rate).allowed and not limiter.hit("k", rate).allowed
    clock.now += 100  # never more than the burst
    assert [limiter.hit("k", rate).allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("k", rate, cost=0).allowed is False  # asking takes nothing


def test_the_community_rates_are_data() -> None:
    limits = community_limits()
    assert isinstance(limits, RateLimits)
    assert limits.office.per_second > limits.member.per_second > limits.archive.per_second
    assert limits.for_client("x", frozenset({"archive"})) == limits.archive
    assert limits.for_client("x", frozenset({"office"})) == limits.office


# --- Redis ----------------------------------------------------------------------------------


@pytest.fixture
def redis_apps(redis_url: str, db_url: str, clean_db: None) -> Iterator[tuple[FastAPI, FastAPI]]:
    """Two API processes (apps) sharing one Redis, as replicas behind a load balancer do."""
    from hub.app import create_app
    from hub.config import Settings

    apps = tuple(create_app(Settings(db_url=db_url, redis_url=redis_url)) for _ in range(2))
    for app in apps:
        assert isinstance(app.state.limiter, RedisLimiter)
        _limits(app, member=Rate(0.2, 6))
    yield apps  # type: ignore[misc]
    for app in apps:
        app.state.engine.dispose()


def test_redis_buckets_are_shared_by_every_api_process(
    redis_apps: tuple[FastAPI, FastAPI], redis_url: str
) -> None:
    import redis

    one, two = redis_apps
    client_id = f"c-{uuid.uuid4().hex[:8]}"  # buckets outlive a test run in Redis
    on_one, on_two = _caller(one, client_id), _caller(two, client_id)
    assert _flood(on_one, 3) + _flood(on_two, 3) == [200] * 6
    retry = _throttled(on_two.get("/fhir/Organization"))
    assert 1 <= retry <= 5
    _throttled(on_one.get("/fhir/Organization"))
    assert _flood(_caller(two, f"{client_id}-other"), 2) == [200, 200]
    ttl = redis.Redis.from_url(redis_url).pttl(f"hub:rl:client:{client_id}")
    assert 0 < ttl <= 31_000  # gone once it would be full again: no state for idle clients


def test_the_redis_script_refills_atomically_under_concurrency(redis_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    limiter, rate = RedisLimiter(redis_url), Rate(0.001, 50)
    key = f"test:{uuid.uuid4().hex}"
    with ThreadPoolExecutor(8) as pool:
        allowed = sum(d.allowed for d in pool.map(lambda _: limiter.hit(key, rate), range(200)))
    assert allowed == 50  # no two processes took the same token


def test_without_redis_the_limits_hold_per_process(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter("redis://127.0.0.1:1/0", timeout=0.2)
    rate = Rate(0.1, 2)
    assert [limiter.hit("k", rate).allowed for _ in range(3)] == [True, True, False]
    assert "Redis unavailable" in caplog.text


# --- sizes ----------------------------------------------------------------------------------


@pytest.fixture
def small(db_url: str, clean_db: None) -> Iterator[FastAPI]:
    from hub.app import create_app
    from hub.config import Settings

    app = create_app(Settings(db_url=db_url, max_body_bytes=2048))
    yield app
    app.state.engine.dispose()


@pytest.mark.parametrize(("path", "content_type"), [
    ("/fhir/Observation", "application/fhir+json"),
    ("/fhir", "application/fhir+json"),
    ("/hl7v2", "x-application/hl7-v2+er7"),
    ("/admin/inbox/replay", "application/json"),
    ("/admin/feedback/runs", "application/json"),
])  # fmt: skip
def test_a_body_over_the_limit_is_refused_before_it_is_read(
    small: FastAPI, path: str, content_type: str
) -> None:
    caller = TestClient(small, headers={"Authorization": f"Bearer {mint_token(small)}"})
    res = caller.post(path, content=b"x" * 3000, headers={"Content-Type": content_type})
    assert res.status_code == 413, res.text
    assert res.json()["issue"][0]["code"] == "too-costly"


def test_a_token_request_is_limited_to_64_kib(small: FastAPI) -> None:
    big = {"grant_type": "client_credentials", "client_assertion": "x" * 70_000}
    res = TestClient(small).post("/auth/token", data=big, headers=FORM)
    assert res.status_code == 413


def test_a_chunked_body_is_read_only_up_to_the_limit(small: FastAPI) -> None:
    caller = TestClient(small, headers={"Authorization": f"Bearer {mint_token(small)}",
                                        "Content-Type": "application/fhir+json"})  # fmt: skip

    def chunks(body: bytes) -> Iterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    too_big = b'{"resourceType":"Organization","name":"' + b"x" * 3000 + b'"}'
    assert caller.post("/fhir/Organization", content=chunks(too_big)).status_code == 413
    fits = b'{"resourceType":"Organization","name":"county lab"}'
    assert caller.post("/fhir/Organization", content=chunks(fits)).status_code == 201
