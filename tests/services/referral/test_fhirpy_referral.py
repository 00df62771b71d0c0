"""Both sides of a referral driven by a real FHIR client library (fhirpy) over a socket."""

from __future__ import annotations

from contextlib import suppress

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from tests.services.referral.conftest import REFERRAL, RESIDENT_ID, resident


@pytest.fixture
def fhir(live_server: str, request: pytest.FixtureRequest) -> SyncFHIRClient:
    headers = {"Content-Type": "application/fhir+json"}
    # Where the hub asks for bearer tokens, the suite's administrator token.
    with suppress(pytest.FixtureLookupError):
        headers.update(request.getfixturevalue("admin_headers"))
    return SyncFHIRClient(f"{live_server}/fhir", extra_headers=headers)


def test_refer_receive_accept_with_fhirpy(fhir: SyncFHIRClient) -> None:
    # The township centre's system: its patient and the referral.
    patient = fhir.resource(
        "Patient",
        identifier=[
            {"system": "https://ygt.example.org/fhir/sid/QSWSY/mrn", "value": "FP-REF-1"},
            {"system": RESIDENT_ID, "value": resident("19800101", "001")},
        ],
        name=[{"text": "张三"}],
    )
    patient.save()
    request = fhir.resource(
        "ServiceRequest",
        status="active",
        intent="order",
        category=[{"coding": [REFERRAL]}],
        priority="urgent",
        code={"coding": [REFERRAL]},
        subject=patient.to_reference(),
        requester={"reference": "Organization/QSWSY"},
        performer=[{"reference": "Organization/XRMYY"}],
        reasonCode=[{"text": "胸痛待查"}],
    )
    request.save()
    assert request["category"][1]["coding"][0]["code"] == "up"
    # The hospital's system: its work list, then the steps.
    work = fhir.resources("Task").search(owner="Organization/XRMYY", status="requested").fetch()
    assert [t["focus"]["reference"] for t in work] == [f"ServiceRequest/{request.id}"]
    task = work[0]
    task["status"] = "received"
    task.save()
    task["status"] = "completed"  # skipping ahead is refused
    with pytest.raises(OperationOutcome) as refused:
        task.save()
    assert "from received to completed" in str(refused.value)
    task = fhir.reference("Task", task.id).to_resource()
    task["status"] = "accepted"
    task.save()
    assert fhir.reference("Task", task.id).to_resource()["meta"]["versionId"] == "3"
    # The referring centre sees it accepted.
    mine = fhir.resources("Task").search(requester="Organization/QSWSY").fetch()
    assert [t["status"] for t in mine] == ["accepted"]
    month = task["authoredOn"][:7]
    report = fhir.execute("$referral-report", method="get", params={"month": month})
    total = next(p for p in report["parameter"] if p["name"] == "total")
    up = next(p for p in total["part"] if p["name"] == "up")
    figures = {p["name"]: p.get("valueInteger", p.get("valueDecimal")) for p in up["part"]}
    assert figures["referrals"] == 1 and figures["greenChannel"] == 1
    assert figures["accepted"] == 1
