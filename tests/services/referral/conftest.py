"""Two-way referral on the real store: the members' FHIR clients, the receiving hospital's ADT
feed over MLLP, and rest-hook receivers for each side."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from adapters.feeds.resident_id import check_character
from hub.feeds.bootstrap import load_community_resources
from hub.feeds.service import FeedService
from hub.queue.worker import drain
from hub.services.subscriptions.observer import invalidate
from tests.feeds.helpers import ack_code, send_all

COMMUNITY = demo_community()
TZ = COMMUNITY.tz
SNOMED = "http://snomed.info/sct"
DIRECTION = "https://ygt.example.org/fhir/CodeSystem/referral-direction"
RESIDENT_ID = "https://ygt.example.org/fhir/sid/resident-id"
REFERRAL = {"system": SNOMED, "code": "3457005", "display": "Patient referral"}

Feed = Callable[..., None]


@pytest.fixture(autouse=True)
def fresh_subscription_cache() -> Iterator[None]:
    invalidate()
    yield
    invalidate()


@pytest.fixture
def feed(engine: sa.Engine, clean_db: None) -> Iterator[Feed]:
    """Send HL7 v2 messages over MLLP (each must be accepted) and apply them."""
    load_community_resources(engine, COMMUNITY)
    service = FeedService(engine, COMMUNITY, mllp_port=0, run_worker=False)
    service.start()

    def send(*messages: bytes) -> None:
        assert service.port is not None
        for answer in send_all(service.port, list(messages)):
            assert ack_code(answer) in ("AA", "CA"), answer
        drain(engine)

    yield send
    service.stop()


def resident(birth: str, serial: str) -> str:
    first = f"330521{birth}{serial}"
    return first + check_character(first)


def hl7_time(moment: datetime) -> str:
    return moment.astimezone(TZ).strftime("%Y%m%d%H%M%S")


def fhir_time(moment: datetime) -> str:
    return moment.astimezone(TZ).isoformat(timespec="seconds")


def now() -> datetime:
    return datetime.now(TZ).replace(microsecond=0)


def ago(**delta: float) -> datetime:
    return now() - timedelta(**delta)


def patient(client: TestClient, member: str, mrn: str, resident_id: str, **extra: Any) -> str:
    """A member's own record of a person; returns its id."""
    body = {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"https://ygt.example.org/fhir/sid/{member}/mrn", "value": mrn},
            {"system": RESIDENT_ID, "value": resident_id},
        ],
        "name": [{"text": "张三", "family": "张", "given": ["三"]}],
        "gender": "male",
        "birthDate": "1980-01-01",
        **extra,
    }
    answer = client.post("/fhir/Patient", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def report(client: TestClient, patient_id: str, performer: str, when: datetime) -> str:
    body = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "58410-2", "display": "血常规"}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": fhir_time(when),
        "performer": [{"reference": f"Organization/{performer}"}],
    }
    answer = client.post("/fhir/DiagnosticReport", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def referral(
    patient_id: str,
    requester: str,
    performer: str,
    *,
    priority: str = "routine",
    direction: str | None = None,
    authored: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    category = [{"coding": [REFERRAL]}]
    if direction:
        category.append({"coding": [{"system": DIRECTION, "code": direction}]})
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": category,
        "priority": priority,
        "code": {"coding": [REFERRAL]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "requester": {"reference": f"Organization/{requester}"},
        "performer": [{"reference": f"Organization/{performer}"}],
        "reasonCode": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10",
                        "code": "I20.0",
                        "display": "不稳定型心绞痛",
                    }
                ]
            }
        ],
    }
    if authored is not None:
        body["authoredOn"] = fhir_time(authored)
    return {**body, **extra}


def refer(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/fhir/ServiceRequest", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def task_of(client: TestClient, request_id: str) -> dict[str, Any]:
    found = client.get("/fhir/Task", params={"focus": f"ServiceRequest/{request_id}"}).json()
    assert found.get("total", len(found.get("entry", []))) == 1, found
    task: dict[str, Any] = found["entry"][0]["resource"]
    return task


def move(
    client: TestClient, task: dict[str, Any], status: str, *, expect: int = 200, **extra: Any
) -> dict[str, Any]:
    """The Task's owner (or requester) sets its status; returns the stored Task or the
    OperationOutcome."""
    body = {k: v for k, v in task.items() if k != "meta"}
    body.update(status=status, **extra)
    answer = client.put(f"/fhir/Task/{task['id']}", json=body)
    assert answer.status_code == expect, answer.text
    result: dict[str, Any] = answer.json()
    return result
