"""Push: a health-archive system subscribed to its centre's feedback documents hears of new
and amended ones over a real rest-hook, and of nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from hub.services.feedback.model import composition_id
from hub.services.feedback.run import run_month
from hub.services.subscriptions.delivery import deliver_due
from hub.services.subscriptions.observer import invalidate
from tests.services.feedback.conftest import HGB_OK, MONTH, ZHANG, Feed
from tests.services.feedback.messages import oru
from tests.services.feedback.test_month import COMMUNITY, _encounter_id
from tests.services.subscriptions.receiver import Receiver


@pytest.fixture(autouse=True)
def fresh_subscription_cache() -> Iterator[None]:
    invalidate()
    yield
    invalidate()


def _subscribe(client: TestClient, url: str, org: str) -> None:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": f"{org} 居民健康档案: 住院信息每月反馈",
        "criteria": f"Composition?type=http://loinc.org|18842-5&addressee=Organization/{org}",
        "channel": {
            "type": "rest-hook", "endpoint": url, "payload": "application/fhir+json",
            "header": ["Authorization: Bearer archive-token"],
        },
    }  # fmt: skip
    res = client.post("/fhir/Subscription", json=body)
    assert res.status_code == 201, res.text
    assert res.json()["status"] == "active"


def _deliver_all(engine: sa.Engine) -> None:
    while deliver_due(engine):
        pass


def test_new_and_amended_documents_reach_the_subscribed_archive(
    client: TestClient, engine: sa.Engine, month: Any, feed: Feed
) -> None:
    with Receiver() as qswsy, Receiver() as other:
        _subscribe(client, qswsy.url, "QSWSY")
        _subscribe(client, other.url, "LTWSY")  # no resident of 柳塘 was in hospital
        run_month(engine, COMMUNITY, MONTH, trigger="test")
        _deliver_all(engine)
        assert other.received == []
        got = [(r.method, r.path.split("/hooks/")[1]) for r in qswsy.received]
        assert len(got) == 2 and all(m == "PUT" and p.startswith("Composition/") for m, p in got)
        assert qswsy.received[0].headers["authorization"] == "Bearer archive-token"
        # A rerun on unchanged data notifies nobody; a corrected result notifies once.
        run_month(engine, COMMUNITY, MONTH, trigger="test")
        _deliver_all(engine)
        assert len(qswsy.received) == 2
        corrected = ("WBC", "白细胞计数", "9.1", "10*9/L", "3.5-9.5", "N")
        feed(oru(ZHANG, "V-ZHANG", "ORD-Z3", "20261002093000", [corrected, HGB_OK], status="C"))
        run_month(engine, COMMUNITY, MONTH, trigger="test")
        _deliver_all(engine)
        assert len(qswsy.received) == 3
        last = orjson.loads(qswsy.received[-1].body)
        assert last["id"] == composition_id(_encounter_id(engine, "V-ZHANG"))
        assert last["status"] == "amended"
