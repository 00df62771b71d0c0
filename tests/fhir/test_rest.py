"""The FHIR RESTful interactions over raw HTTP: status codes, headers, bodies, versions."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

FHIR = "application/fhir+json"


def patient(mrn: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.156.XRMYY.mrn", "value": mrn or uuid.uuid4().hex}],
        "name": [{"text": "张三", "family": "张", "given": ["三"]}],
        "gender": "male",
        "birthDate": "1960-03-15",
        **extra,
    }


def post(client: TestClient, body: Any, path: str = "/fhir/Patient", **headers: str) -> Any:
    return client.post(path, content=orjson.dumps(body), headers={"Content-Type": FHIR, **headers})


def put(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    return client.put(path, content=orjson.dumps(body), headers={"Content-Type": FHIR, **headers})


def test_create_sets_location_etag_and_meta(client: TestClient) -> None:
    res = post(client, patient("A1"))
    assert res.status_code == 201
    assert res.headers["content-type"].startswith(FHIR)
    body = res.json()
    assert body["meta"]["versionId"] == "1"
    assert res.headers["ETag"] == 'W/"1"'
    assert res.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert "GMT" in res.headers["Last-Modified"]
    read = client.get(f"/fhir/Patient/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body


def test_create_ignores_client_id(client: TestClient) -> None:
    res = post(client, {**patient(), "id": "client-chosen"})
    assert res.status_code == 201
    assert res.json()["id"] != "client-chosen"


def test_update_versions_and_vread(client: TestClient) -> None:
    created = post(client, patient("A2")).json()
    pid = created["id"]
    changed = {**created, "gender": "female"}
    res = put(client, f"/fhir/Patient/{pid}", changed)
    assert res.status_code == 200
    assert res.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["gender"] == "male"
    assert client.get(f"/fhir/Patient/{pid}/_history/2").json()["gender"] == "female"
    assert client.get(f"/fhir/Patient/{pid}/_history/9").status_code == 404


def test_update_as_create_with_client_id(client: TestClient) -> None:
    res = put(client, "/fhir/Patient/qs-004512", {**patient(), "id": "qs-004512"})
    assert res.status_code == 201
    assert res.json()["id"] == "qs-004512"
    again = put(client, "/fhir/Patient/qs-004512", {**patient(), "id": "qs-004512"})
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "2"


def test_update_id_mismatch_is_400(client: TestClient) -> None:
    res = put(client, "/fhir/Patient/abc", {**patient(), "id": "xyz"})
    assert res.status_code == 400
    assert res.json()["resourceType"] == "OperationOutcome"


def test_if_match_stale_version_is_412(client: TestClient) -> None:
    created = post(client, patient("A3")).json()
    pid = created["id"]
    assert put(client, f"/fhir/Patient/{pid}", created, **{"If-Match": 'W/"1"'}).status_code == 200
    stale = put(client, f"/fhir/Patient/{pid}", created, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"


def test_json_patch(client: TestClient) -> None:
    created = post(client, patient("A4")).json()
    ops = [{"op": "replace", "path": "/gender", "value": "female"}]
    res = client.patch(
        f"/fhir/Patient/{created['id']}",
        content=orjson.dumps(ops),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert res.status_code == 200, res.text
    assert res.json()["gender"] == "female"
    assert res.json()["meta"]["versionId"] == "2"
    bad = [{"op": "replace", "path": "/gender", "value": "robot"}]
    res = client.patch(
        f"/fhir/Patient/{created['id']}",
        content=orjson.dumps(bad),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert res.status_code in (400, 422)
    assert client.get(f"/fhir/Patient/{created['id']}").json()["gender"] == "female"


def test_delete_then_read_is_gone(client: TestClient) -> None:
    pid = post(client, patient("A5")).json()["id"]
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 200
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    # Deleted resources are no longer found by search.
    found = client.get("/fhir/Patient", params={"identifier": "A5"}).json()
    assert found.get("total", 0) == 0


def test_read_unknown_is_404(client: TestClient) -> None:
    res = client.get("/fhir/Patient/does-not-exist")
    assert res.status_code == 404
    assert res.json()["issue"][0]["code"] == "not-found"


def test_history_instance_type_and_since(client: TestClient) -> None:
    created = post(client, patient("H1")).json()
    pid = created["id"]
    for gender in ("female", "other", "unknown"):
        put(client, f"/fhir/Patient/{pid}", {**created, "gender": gender})
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["type"] == "history"
    versions = [e["resource"]["meta"]["versionId"] for e in hist["entry"]]
    assert versions == ["4", "3", "2", "1"]
    assert hist["entry"][-1]["request"]["method"] == "POST"
    # Paging through type history two at a time reaches every version exactly once.
    seen: list[str] = []
    url: str | None = "/fhir/Patient/_history?_count=2"
    while url:
        page = client.get(url).json()
        # The patient index's master record has versions of its own in the type history.
        seen += [
            e["resource"]["meta"]["versionId"]
            for e in page.get("entry", [])
            if e["resource"]["id"] == pid
        ]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].split("/fhir", 1)[1] and "/fhir" + nxt[0].split("/fhir", 1)[1] if nxt else None
    assert sorted(seen) == ["1", "2", "3", "4"]
    future = client.get("/fhir/Patient/_history", params={"_since": "2999-01-01"}).json()
    assert not future.get("entry")


def test_prefer_return(client: TestClient) -> None:
    minimal = post(client, patient(), Prefer="return=minimal")
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["Location"]
    oo = post(client, patient(), Prefer="return=OperationOutcome")
    assert oo.json()["resourceType"] == "OperationOutcome"


def test_conditional_create(client: TestClient) -> None:
    first = post(
        client, patient("C1"), **{"If-None-Exist": "identifier=urn:oid:2.16.156.XRMYY.mrn|C1"}
    )
    assert first.status_code == 201
    second = post(
        client, patient("C1"), **{"If-None-Exist": "identifier=urn:oid:2.16.156.XRMYY.mrn|C1"}
    )
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]


def test_conditional_update_and_delete(client: TestClient) -> None:
    res = put(client, "/fhir/Patient?identifier=urn:oid:2.16.156.XRMYY.mrn|U1", patient("U1"))
    assert res.status_code == 201
    pid = res.json()["id"]
    res = put(
        client,
        "/fhir/Patient?identifier=urn:oid:2.16.156.XRMYY.mrn|U1",
        {**patient("U1"), "gender": "female"},
    )
    assert res.status_code == 200 and res.json()["id"] == pid
    post(client, patient("DUP"))
    post(client, patient("DUP"))
    assert put(client, "/fhir/Patient?identifier=DUP", patient("DUP")).status_code == 412
    assert client.delete("/fhir/Patient?identifier=DUP").status_code == 412
    assert client.delete("/fhir/Patient?identifier=U1").status_code == 200
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"", 400),
        (b"[]", 400),
        (b'{"name": []}', 400),
        (b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}', 400),
        (b'{"resourceType": "Banana"}', 400),
    ],
)
def test_bad_bodies(client: TestClient, body: bytes, status: int) -> None:
    res = client.post("/fhir/Patient", content=body, headers={"Content-Type": FHIR})
    assert res.status_code == status
    assert res.json()["resourceType"] == "OperationOutcome"


def test_unknown_element_is_422_with_path(client: TestClient) -> None:
    res = post(client, {**patient(), "favouriteColour": "red"})
    assert res.status_code == 422
    issue = res.json()["issue"][0]
    assert issue["expression"] == ["Patient.favouriteColour"]


def test_nested_invalid_value_names_its_path(client: TestClient) -> None:
    res = post(client, {**patient(), "name": [{"given": [3]}], "birthDate": "1960-02-30"})
    assert res.status_code == 422
    paths = {e for i in res.json()["issue"] for e in i.get("expression", [])}
    assert "Patient.birthDate" in paths
    assert any(p.startswith("Patient.name[0].given") for p in paths)


def test_impossible_date_is_422(client: TestClient) -> None:
    res = post(client, {**patient(), "birthDate": "2026-13-45"})
    assert res.status_code == 422


def test_body_too_large_is_413(client: TestClient) -> None:
    big = {**patient(), "name": [{"text": "x" * (17 * 1024 * 1024)}]}
    res = post(client, big)
    assert res.status_code == 413


def test_wrong_content_type_is_415(client: TestClient) -> None:
    res = client.post(
        "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/xml"}
    )
    assert res.status_code == 415


def test_unknown_type_is_404_and_bad_method_405(client: TestClient) -> None:
    assert client.get("/fhir/Banana").status_code == 404
    res = client.put("/fhir/Patient", content=b"{}", headers={"Content-Type": FHIR})
    assert res.status_code == 405
    assert res.json()["resourceType"] == "OperationOutcome"


def test_nothing_half_written_after_failed_write(client: TestClient) -> None:
    before = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
    post(client, {**patient(), "birthDate": "bad"})
    after = client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"]
    assert before == after
    hist = client.get("/fhir/Patient/_history").json()
    assert len(hist.get("entry", [])) == before


def test_capability_statement_lists_what_is_served(client: TestClient) -> None:
    cap = client.get("/fhir/metadata").json()
    assert cap["resourceType"] == "CapabilityStatement"
    assert cap["fhirVersion"] == "4.0.1"
    types = {r["type"]: r for r in cap["rest"][0]["resource"]}
    assert {"Patient", "Observation", "DiagnosticReport", "StructureDefinition"} <= set(types)
    obs_params = {p["name"] for p in types["Observation"]["searchParam"]}
    assert {"patient", "code", "date", "code-value-quantity", "value-quantity"} <= obs_params
    assert {"code": "transaction"} in cap["rest"][0]["interaction"]
