"""Fuzzing the JSON intake: any body gets a 2xx or a 4xx OperationOutcome, never a 500,
and nothing is half-written."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FHIR = {"Content-Type": "application/fhir+json"}
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
VALID_OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2026-10-03T08:30:00+08:00",
    "valueQuantity": {"value": 135, "unit": "g/L"},
}


def _assert_clean_answer(res: Any) -> bool:
    assert res.status_code < 500, res.text
    if res.status_code >= 400:
        body = res.json()
        assert body["resourceType"] == "OperationOutcome"
        assert all(i["severity"] and i["code"] for i in body["issue"])
        return False
    return True


@FUZZ
@given(body=st.binary(max_size=300))
def test_arbitrary_bytes(client: TestClient, body: bytes) -> None:
    for path in ("/fhir/Patient", "/fhir"):
        res = client.post(path, content=body, headers=FHIR)
        assert res.status_code in (400, 413, 415, 422), res.text
        _assert_clean_answer(res)


@FUZZ
@given(value=json_values, res_type=st.sampled_from([None, "Patient", "Observation", "Bundle"]))
def test_arbitrary_json(client: TestClient, value: Any, res_type: str | None) -> None:
    if res_type and isinstance(value, dict):
        value = {**value, "resourceType": res_type}
    target = "/fhir" if res_type == "Bundle" else f"/fhir/{res_type or 'Patient'}"
    res = client.post(target, content=orjson.dumps(value), headers=FHIR)
    _assert_clean_answer(res)


mutations = st.sampled_from(
    [
        ("drop", "status", None),
        ("drop", "code", None),
        ("set", "status", 42),
        ("set", "status", "finished-ish"),
        ("set", "effectiveDateTime", "2026-02-30T08:00:00+08:00"),
        ("set", "effectiveDateTime", "yesterday"),
        ("set", "valueQuantity", {"value": "lots"}),
        ("set", "code", {"coding": {"system": "not-a-list"}}),
        ("set", "subject", "Patient/p1"),
        ("set", "madeUpElement", True),
        ("set", "note", [{"text": "x" * 20000}]),
    ]
)


@FUZZ
@given(mutation=mutations)
def test_mutated_observation(client: TestClient, mutation: tuple[str, str, Any]) -> None:
    action, key, value = mutation
    body = dict(VALID_OBSERVATION)
    if action == "drop":
        body.pop(key)
    else:
        body[key] = value
    res = client.post("/fhir/Observation", content=orjson.dumps(body), headers=FHIR)
    if key == "note":
        assert res.status_code == 201  # long text is valid
        return
    assert res.status_code in (400, 422), (mutation, res.text)
    issues = res.json()["issue"]
    if res.status_code == 422:
        paths = [e for i in issues for e in i.get("expression", [])]
        assert any(key in p for p in paths), (mutation, issues)


def test_only_accepted_writes_remain(client: TestClient) -> None:
    accepted = 0
    bodies = [
        b"{",
        b"[]",
        orjson.dumps({"resourceType": "Patient", "gender": "x"}),
        orjson.dumps({"resourceType": "Patient", "active": True}),
        orjson.dumps({"resourceType": "Patient", "birthDate": "1990-13-01"}),
        orjson.dumps({"resourceType": "Patient", "name": [{"family": "赵"}]}),
    ]
    for body in bodies * 5:
        res = client.post("/fhir/Patient", content=body, headers=FHIR)
        accepted += res.status_code == 201
    total = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
    assert total == accepted == 10
    history = client.get("/fhir/Patient/_history", params={"_count": 100}).json()
    # Each accepted record also made its person's master record (the patient index).
    records = [e for e in history["entry"] if not e["resource"]["id"].startswith("mpi-")]
    assert len(records) == accepted


def test_integer_beyond_64_bits_is_refused(client: TestClient) -> None:
    body = b'{"resourceType": "Patient", "multipleBirthInteger": 99999999999999999999999}'
    res = client.post("/fhir/Patient", content=body, headers=FHIR)
    assert res.status_code in (400, 422)
    assert res.json()["resourceType"] == "OperationOutcome"
