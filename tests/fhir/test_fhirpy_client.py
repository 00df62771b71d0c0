"""The hub driven by a real FHIR client library (fhirpy) over a real socket."""

from __future__ import annotations

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

LOINC = "http://loinc.org"
MRN = "urn:oid:2.16.156.XRMYY.mrn"


@pytest.fixture
def fhir(live_server: str, admin_headers: dict[str, str]) -> SyncFHIRClient:
    return SyncFHIRClient(
        f"{live_server}/fhir",
        authorization=admin_headers["Authorization"],
        extra_headers={"Content-Type": "application/fhir+json"},
    )


def test_crud_with_fhirpy(fhir: SyncFHIRClient) -> None:
    patient = fhir.resource(
        "Patient",
        identifier=[{"system": MRN, "value": "FP-001"}],
        name=[{"family": "王", "given": ["小明"], "text": "王小明"}],
        gender="male",
        birthDate="1980-01-01",
    )
    patient.save()
    assert patient.id
    assert patient["meta"]["versionId"] == "1"
    patient["gender"] = "other"
    patient.save()
    fetched = fhir.reference("Patient", patient.id).to_resource()
    assert fetched["gender"] == "other"
    assert fetched["meta"]["versionId"] == "2"
    fetched.delete()
    with pytest.raises((ResourceNotFound, OperationOutcome)):
        fhir.reference("Patient", patient.id).to_resource()


def test_search_paging_include_sort_with_fhirpy(fhir: SyncFHIRClient) -> None:
    patient = fhir.resource(
        "Patient",
        identifier=[{"system": MRN, "value": "FP-002"}],
        name=[{"family": "张", "given": ["三"]}],
    )
    patient.save()
    for i in range(47):
        fhir.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": LOINC, "code": "718-7"}]},
            subject=patient.to_reference(),
            effectiveDateTime=f"2026-10-{1 + i % 28:02d}T08:00:00+08:00",
            valueQuantity={
                "value": 100 + i,
                "unit": "g/L",
                "system": "http://unitsofmeasure.org",
                "code": "g/L",
            },
        ).save()
    search = fhir.resources("Observation").search(patient=patient.id, code=f"{LOINC}|718-7")
    assert search.count() == 47
    everything = search.limit(10).fetch_all()
    assert len(everything) == 47
    assert len({o.id for o in everything}) == 47
    newest = search.sort("-date").limit(5).fetch()
    dates = [o["effectiveDateTime"] for o in newest]
    assert dates == sorted(dates, reverse=True)
    high = fhir.resources("Observation").search(**{"value-quantity": "gt140"}).fetch_all()
    assert len(high) == 6
    chained = fhir.resources("Observation").search(
        **{"subject:Patient.identifier": f"{MRN}|FP-002"}
    )
    assert chained.count() == 47
    by_name = fhir.resources("Patient").search(name="张").fetch()
    assert [p.id for p in by_name] == [patient.id]
    with_patient = (
        fhir.resources("Observation")
        .search(patient=patient.id)
        .include("Observation", "subject")
        .limit(3)
        .fetch_raw()
    )
    types = [e["resource"]["resourceType"] for e in with_patient["entry"]]
    assert types.count("Patient") == 1


def test_errors_reach_fhirpy_as_operation_outcome(fhir: SyncFHIRClient) -> None:
    bad = fhir.resource("Patient", gender="robot")
    with pytest.raises(OperationOutcome):
        bad.save()
