"""The audit trail: one AuditEvent for every access to patient data and every refused
credential, searchable by patient, agent and date, and never skipped silently."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent

from hub.search.values import DEFAULT_TZ
from hub.security import clients
from hub.security.audit import CLIENT_ID
from hub.security.audit_context import Interaction, classify
from hub.security.patient_data import patient_data_types, patients_of
from hub.services import audit_trail
from hub.services.export.runner import run_pending
from tests.conftest import mint_token
from tests.store_counts import live_count

FHIR = {"Content-Type": "application/fhir+json"}
LAB_SCOPES = "system/*.rs system/Observation.cruds system/DiagnosticReport.cruds"


def _member(app: FastAPI, client_id: str = "xjyzx-lis", org: str = "XJYZX",
            scopes: str = LAB_SCOPES, raise_errors: bool = True) -> TestClient:  # fmt: skip
    token = mint_token(app, scopes=scopes, org=org, roles=frozenset({"member"}),
                       client_id=client_id)  # fmt: skip
    return TestClient(app, headers={"Authorization": f"Bearer {token}", **FHIR},
                      raise_server_exceptions=raise_errors)  # fmt: skip


def _put(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    res = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}",
                     content=orjson.dumps(resource), headers=FHIR)  # fmt: skip
    assert res.status_code in (200, 201), res.text
    return dict(res.json())


def _observation(oid: str, patient: str, performer: str = "XJYZX") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "performer": [{"reference": f"Organization/{performer}"}],
            "valueQuantity": {"value": 5.2, "unit": "mmol/L"}}  # fmt: skip


@pytest.fixture
def people(client: TestClient) -> None:
    for pid in ("p1", "p2"):
        _put(client, {"resourceType": "Patient", "id": pid, "gender": "female"})
    _put(client, _observation("o1", "p1"))
    _put(client, _observation("o2", "p2"))


def _events(client: TestClient, **params: str) -> list[dict[str, Any]]:
    """AuditEvents, newest first (the office reading them is not itself audited)."""
    res = client.get("/fhir/AuditEvent", params={"_sort": "-date", "_count": "100", **params})
    assert res.status_code == 200, res.text
    found = [e["resource"] for e in res.json().get("entry", [])]
    for event in found:
        AuditEvent.model_validate(event)  # valid R4 (R4B is identical for AuditEvent)
    return found


def _by(event: dict[str, Any], role: str) -> list[str]:
    return [e["what"]["reference"] for e in _role(event, role)]


def _role(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Entities by object-role: 1 patient, 4 resource, 20 job, 24 query."""
    return [e for e in event.get("entity", []) if e.get("role", {}).get("code") == role]


def _client_agent(event: dict[str, Any]) -> dict[str, Any]:
    [agent] = [a for a in event["agent"] if a["requestor"]]
    return dict(agent)


# --- reads and searches --------------------------------------------------------------------


def test_a_read_is_recorded_with_who_what_when_and_where(
    app: FastAPI, client: TestClient, people: None
) -> None:
    lab = _member(app)
    res = lab.get("/fhir/Observation/o1")
    assert res.status_code == 200
    [event] = _events(client, agent="Organization/XJYZX")
    assert event["type"]["code"] == "rest"
    assert [c["code"] for c in event["subtype"]] == ["read"]
    assert (event["action"], event["outcome"]) == ("R", "0")
    agent = _client_agent(event)
    assert agent["who"]["identifier"] == {"system": CLIENT_ID, "value": "xjyzx-lis"}
    assert agent["network"] == {"address": "testclient", "type": "2"}
    assert agent["policy"][0].startswith("urn:ietf:params:oauth:jti:")
    assert {"reference": "Organization/XJYZX"} in [a.get("who") for a in event["agent"]]
    assert _by(event, "1") == ["Patient/p1"]
    assert _by(event, "4") == ["Observation/o1"]
    # The same event, found by the patient, by the client, and by the day.
    assert [e["id"] for e in _events(client, patient="Patient/p1", subtype="read")] == [event["id"]]
    by_client = _events(client, **{"agent:identifier": f"{CLIENT_ID}|xjyzx-lis"})
    assert [e["id"] for e in by_client] == [event["id"]]
    # A bare day is the hub's local (+08:00) day, as FHIR asks of dates without a zone; the
    # recorded instant is UTC, so between 16:00 and 24:00 UTC the two days differ.
    recorded = datetime.fromisoformat(event["recorded"].replace("Z", "+00:00"))
    day = recorded.astimezone(DEFAULT_TZ).date().isoformat()
    assert event["id"] in [e["id"] for e in _events(client, date=day)]
    assert not _events(client, date=f"lt{day}")
    assert not _events(client, patient="Patient/p2", subtype="read")


def test_a_search_names_its_query_and_the_patients_it_returned(
    app: FastAPI, client: TestClient, people: None
) -> None:
    lab = _member(app)
    res = lab.get("/fhir/Observation", params={"code": "http://loinc.org|2345-7"})
    assert res.status_code == 200 and res.json()["total"] == 2
    [event] = _events(client, agent="Organization/XJYZX")
    assert ([c["code"] for c in event["subtype"]], event["action"]) == (["search-type"], "E")
    assert sorted(_by(event, "1")) == ["Patient/p1", "Patient/p2"]
    [query] = _role(event, "24")
    assert (
        base64.b64decode(query["query"]).decode()
        == "Observation?code=http%3A%2F%2Floinc.org%7C2345-7"
    )
    for pid in ("p1", "p2"):
        assert [e["id"] for e in _events(client, patient=f"Patient/{pid}",
                                         subtype="search-type")] == [event["id"]]  # fmt: skip


def test_a_search_for_a_patient_that_matches_nothing_still_names_the_patient(
    app: FastAPI, client: TestClient, people: None
) -> None:
    res = _member(app).post(
        "/fhir/Observation/_search",
        data={"patient": "Patient/p2", "code": "nothing|x"},
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert res.status_code == 200 and res.json()["total"] == 0
    [event] = _events(client, agent="Organization/XJYZX")
    assert _by(event, "1") == ["Patient/p2"]
    [query] = _role(event, "24")
    assert "patient=Patient%2Fp2" in base64.b64decode(query["query"]).decode()


def test_a_refused_read_is_recorded_as_a_failure(
    app: FastAPI, client: TestClient, people: None
) -> None:
    narrow = _member(app, client_id="tool", scopes="system/Patient.rs")
    assert narrow.get("/fhir/Observation/o1").status_code == 403
    assert narrow.get("/fhir/Patient/nobody").status_code == 404
    events = _events(client, agent="Organization/XJYZX")
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in events] == [
        ("read", "4"),
        ("read", "4"),
    ]
    assert _by(events[0], "1") == ["Patient/nobody"]
    assert _by(events[1], "4") == ["Observation/o1"]
    assert "403" in events[1]["outcomeDesc"]


def test_a_read_that_fails_on_the_hubs_side_is_recorded_as_a_serious_failure(
    app: FastAPI, client: TestClient, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.fhir import interactions

    monkeypatch.setattr(interactions, "read", _failing)
    res = _member(app, raise_errors=False).get("/fhir/Observation/o1")
    assert res.status_code == 500
    [event] = _events(client, agent="Organization/XJYZX")
    assert (event["subtype"][0]["code"], event["outcome"]) == ("read", "8")
    assert _by(event, "4") == ["Observation/o1"]


def test_the_office_reading_the_trail_and_non_patient_data_leave_no_event(
    app: FastAPI, client: TestClient, engine: sa.Engine, people: None
) -> None:
    before = live_count(engine, "AuditEvent")
    _events(client)
    _put(client, {"resourceType": "Organization", "id": "XJYZX", "name": "县临床检验中心"})
    assert client.get("/fhir/Organization/XJYZX").status_code == 200
    assert client.get("/fhir/metadata").status_code == 200
    assert live_count(engine, "AuditEvent") == before
    # A member reading the trail is an access to the patients it names.
    assert _member(app).get("/fhir/AuditEvent", params={"patient": "Patient/p1"}).status_code == 200
    [event] = _events(client, agent="Organization/XJYZX")
    assert event["subtype"][0]["code"] == "search-type" and _by(event, "1") == ["Patient/p1"]


def test_what_a_caller_typed_is_stored_safely_in_its_event(
    app: FastAPI, client: TestClient, people: None
) -> None:
    # A NUL byte cannot be stored in PostgreSQL text: the event must still be written (else
    # the answer is withheld), with the typed text kept only as the base64 query.
    lab = _member(app)
    assert lab.get("/fhir/Patient", params={"_id": "\x00"}).status_code == 400
    assert lab.get("/fhir/Patient", params={"family": "王\x00"}).status_code == 400
    assert lab.get("/fhir/$export-file/no-such-job/1").status_code == 404
    events = _events(client, agent="Organization/XJYZX")
    assert [e["outcome"] for e in events] == ["4", "4", "4"]
    assert all("\x00" not in orjson.dumps(e).decode() for e in events)
    queries = [base64.b64decode(q["query"]).decode() for e in events for q in _role(e, "24")]
    assert "Patient?_id=%00" in queries


# --- writes --------------------------------------------------------------------------------


def test_a_create_and_an_update_are_recorded_in_their_own_transaction(
    app: FastAPI, client: TestClient, people: None
) -> None:
    lab = _member(app)
    res = lab.post("/fhir/Observation", content=orjson.dumps(_observation("x", "p1")))
    assert res.status_code == 201, res.text
    created = res.json()
    created["valueQuantity"]["value"] = 6.0
    assert (
        lab.put(f"/fhir/Observation/{created['id']}", content=orjson.dumps(created)).status_code
        == 200
    )
    update, create = _events(client, agent="Organization/XJYZX")
    assert (create["subtype"][0]["code"], create["action"]) == ("create", "C")
    assert (update["subtype"][0]["code"], update["action"]) == ("update", "U")
    for event in (create, update):
        assert _by(event, "1") == ["Patient/p1"]
        assert _by(event, "4") == [f"Observation/{created['id']}"]
        assert _client_agent(event)["who"]["identifier"]["value"] == "xjyzx-lis"
    # Written by the unit of work itself: stamped with the instant of the version it wrote.
    assert create["recorded"] == created["meta"]["lastUpdated"]


def test_a_transaction_is_one_event_naming_its_patients(
    app: FastAPI, client: TestClient, people: None
) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{n}", "resource": {**_observation("-", pid), "id": None},
         "request": {"method": "POST", "url": "Observation"}}
        for n, pid in (("a", "p1"), ("b", "p2"), ("c", "p1"))
    ]}  # fmt: skip
    for entry in bundle["entry"]:
        entry["resource"].pop("id")
    res = _member(app).post("/fhir", content=orjson.dumps(bundle))
    assert res.status_code == 200, res.text
    [event] = _events(client, agent="Organization/XJYZX")
    assert ([c["code"] for c in event["subtype"]], event["action"]) == (["transaction"], "E")
    assert sorted(_by(event, "1")) == ["Patient/p1", "Patient/p2"]
    written = sorted(e["response"]["location"].split("/_history")[0] for e in res.json()["entry"])
    assert sorted(_by(event, "4")) == written


def test_a_refused_write_is_recorded_and_nothing_is_written(
    app: FastAPI, client: TestClient, engine: sa.Engine, people: None
) -> None:
    as_other = _observation("forged", "p1", performer="QSWSY")
    res = _member(app).put("/fhir/Observation/forged", content=orjson.dumps(as_other))
    assert res.status_code == 403
    [event] = _events(client, agent="Organization/XJYZX")
    assert (event["subtype"][0]["code"], event["outcome"]) == ("update", "4")
    assert _by(event, "4") == ["Observation/forged"]
    assert client.get("/fhir/Observation/forged").status_code == 404


# --- exports -------------------------------------------------------------------------------


def test_an_export_kick_off_and_each_file_download_are_recorded(
    app: FastAPI, client: TestClient, engine: sa.Engine, people: None
) -> None:
    res = client.get("/fhir/Patient/$export", params={"_type": "Observation"},
                     headers={"Prefer": "respond-async"})  # fmt: skip
    assert res.status_code == 202, res.text
    job = res.headers["Content-Location"].rsplit("/", 1)[1]
    [kick] = _events(client, subtype="$export")
    assert kick["subtype"][0]["code"] == "operation" and kick["outcome"] == "0"
    [entity] = _role(kick, "20")
    assert entity["what"]["identifier"]["value"] == job
    [query] = _role(kick, "24")
    assert base64.b64decode(query["query"]).decode() == "Patient?_type=Observation"
    assert run_pending(engine) == 1
    manifest = client.get(res.headers["Content-Location"]).json()
    [output] = manifest["output"]
    assert _events(client, subtype="$export-status") == []  # status: no patient data
    path = output["url"].removeprefix("http://testserver")
    download = client.get(path)
    assert download.status_code == 200 and len(download.text.splitlines()) == 2
    [file_event] = _events(client, subtype="$export-file")
    [entity] = _role(file_event, "20")
    assert entity["what"]["identifier"]["value"] == job
    assert entity["name"].endswith("2 Observation")


# --- refused credentials -------------------------------------------------------------------


def test_a_wrong_client_secret_and_a_bad_token_are_recorded(
    app: FastAPI, client: TestClient, engine: sa.Engine
) -> None:
    clients.put(engine, "qswsy-his", name="QSWSY HIS", org="QSWSY", roles={"member"},
                scopes="system/*.rs", secret="right")  # fmt: skip
    anon = TestClient(app)
    form = {"grant_type": "client_credentials", "client_id": "qswsy-his",
            "client_secret": "Guess-7f3a"}  # fmt: skip
    res = anon.post("/auth/token", data=form)
    assert res.status_code == 401
    assert (
        anon.get("/fhir/Patient", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401
    )
    token_failure, secret_failure = _events(client, subtype="110122")
    for event in (token_failure, secret_failure):
        assert event["type"]["code"] == "110114" and event["outcome"] == "4"
        assert _client_agent(event)["network"]["address"] == "testclient"
    assert _client_agent(secret_failure)["who"]["identifier"]["value"] == "qswsy-his"
    assert "invalid_client" in secret_failure["outcomeDesc"]
    assert "Guess-7f3a" not in orjson.dumps(secret_failure).decode()  # no secret kept
    assert "GET /fhir/Patient" in token_failure["outcomeDesc"]
    found = _events(client, **{"agent:identifier": "qswsy-his", "outcome": "4"})
    assert [e["id"] for e in found] == [secret_failure["id"]]


def test_an_expired_token_names_the_client_it_claimed(app: FastAPI, client: TestClient) -> None:
    import time

    import jwt

    from hub.auth.routes import key_ring

    class R:
        def __init__(self) -> None:
            self.app = app

    key = key_ring(R()).current()  # type: ignore[arg-type]
    now = int(time.time())
    claims = {"iss": "urn:county-records-hub", "aud": "urn:county-records-hub/fhir",
              "sub": "qswsy-his", "iat": now - 700, "exp": now - 400,
              "scope": "system/*.rs"}  # fmt: skip
    token = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
    res = TestClient(app).get("/fhir/Patient/p1", headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 401
    [event] = _events(client, subtype="110122")
    agent = _client_agent(event)
    assert agent["who"]["identifier"]["value"] == "qswsy-his"
    assert agent["who"]["display"] == "claimed, not verified"
    assert "expired" in event["outcomeDesc"]


# --- an audit that cannot be written ------------------------------------------------------


def _failing(*_args: Any, **_kw: Any) -> Any:
    raise RuntimeError("the audit table is gone")


def test_a_read_is_not_answered_when_its_event_cannot_be_written(
    app: FastAPI, client: TestClient, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_trail, "store_event", _failing)
    lab = _member(app)
    for res in (lab.get("/fhir/Observation/o1"), lab.get("/fhir/Observation?patient=p1"),
                lab.get("/fhir/Patient/p1/$everything")):  # fmt: skip
        assert res.status_code == 500
        body = res.json()
        assert body["resourceType"] == "OperationOutcome"
        assert "audit" in body["issue"][0]["diagnostics"]
        assert "p1" not in res.text and "2345-7" not in res.text
    # Nor a CDS Hooks call: its cards would tell of the patient's results.
    drafts = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "ServiceRequest", "status": "draft", "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}}]}  # fmt: skip
    res = lab.post("/cds-services/recognition-order-select", json={
        "hook": "order-select", "context": {"patientId": "p1", "draftOrders": drafts}})  # fmt: skip
    assert res.status_code == 500 and "cards" not in res.json()


def test_a_write_fails_and_leaves_nothing_when_its_event_cannot_be_written(
    app: FastAPI, client: TestClient, engine: sa.Engine, people: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    observations, audits = live_count(engine, "Observation"), live_count(engine, "AuditEvent")
    monkeypatch.setattr(audit_trail, "store_event", _failing)
    lab = _member(app, raise_errors=False)
    res = lab.post("/fhir/Observation", content=orjson.dumps(_observation("n", "p1")))
    assert res.status_code == 500
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _observation("t1", "p2"), "request": {"method": "PUT",
                                                           "url": "Observation/t1"}}]}  # fmt: skip
    assert lab.post("/fhir", content=orjson.dumps(bundle)).status_code == 500
    assert live_count(engine, "Observation") == observations
    assert live_count(engine, "AuditEvent") == audits


def test_a_refused_login_is_not_hidden_when_its_event_cannot_be_written(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_trail, "store_event", _failing)
    res = TestClient(app, raise_server_exceptions=False).get(
        "/fhir/Patient", headers={"Authorization": "Bearer not.a.jwt"}
    )
    assert res.status_code == 500


def test_reads_arriving_together_share_a_commit_and_a_bad_event_fails_only_itself(
    engine: sa.Engine, clean_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hub.services.audit_trail import GroupWriter
    from hub.store.repository import Writer

    real = audit_trail.store_event

    def picky(writer: Writer, event: dict[str, Any]) -> Any:
        if event.get("outcomeDesc") == "bad":
            raise ValueError("cannot store this one")
        return real(writer, event)

    monkeypatch.setattr(audit_trail, "store_event", picky)
    group = GroupWriter(engine)
    event = {"resourceType": "AuditEvent", "recorded": "2026-11-23T10:00:00.000Z"}

    def together(descriptions: str) -> list[BaseException | None]:
        with group._wake:  # hold the writer back so that all of them wait for one commit
            waiting = [group.submit({**event, "outcomeDesc": d}) for d in descriptions]
        return [f.exception(timeout=30) for f in waiting]

    def stamps() -> list[int]:
        query = sa.text("SELECT last_updated FROM resources WHERE res_type = 'AuditEvent'")
        with engine.connect() as conn:
            return list(conn.execute(query).scalars())

    assert together("xyz") == [None, None, None]
    assert len(stamps()) == 3 and len(set(stamps())) == 1  # one Writer, one commit
    results = together(["a", "b", "bad", "c"])
    assert [type(r).__name__ if r else None for r in results] == [None, None, "ValueError", None]
    assert len(stamps()) == 6  # the good ones, retried one by one after the batch failed


# --- the pure parts ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/fhir/Observation/o1", Interaction("read", "Observation", "o1")),
    ("HEAD", "/fhir/Observation/o1", Interaction("read", "Observation", "o1")),
    ("GET", "/fhir/Observation/o1/_history/2", Interaction("vread", "Observation", "o1", "2")),
    ("GET", "/fhir/Observation", Interaction("search-type", "Observation")),
    ("POST", "/fhir/Observation/_search", Interaction("search-type", "Observation")),
    ("POST", "/fhir/Observation", Interaction("create", "Observation")),
    ("PUT", "/fhir/Observation", Interaction("update", "Observation")),
    ("PATCH", "/fhir/Observation/o1", Interaction("patch", "Observation", "o1")),
    ("DELETE", "/fhir/Observation/o1", Interaction("delete", "Observation", "o1")),
    ("POST", "/fhir", Interaction("transaction")),
    ("GET", "/fhir/_history", Interaction("history-system")),
    ("GET", "/fhir/Patient/p1/$everything",
     Interaction("operation", "Patient", "p1", operation="$everything")),
    ("GET", "/fhir/$export", Interaction("operation", operation="$export")),
    ("GET", "/fhir/$export-file/j/1", Interaction("operation", operation="$export-file")),
    ("GET", "/fhir/$export-status/j", None),
    ("GET", "/fhir/metadata", None),
])  # fmt: skip
def test_requests_are_classified_as_fhir_interactions(
    method: str, path: str, expected: Interaction | None
) -> None:
    assert classify(method, path) == expected


def test_the_patients_of_a_resource() -> None:
    assert patients_of({"resourceType": "Patient", "id": "p"}) == ["Patient/p"]
    assert patients_of({"resourceType": "Observation",
                        "subject": {"reference": "http://x/fhir/Patient/p/_history/3"}}) == [
        "Patient/p"
    ]  # fmt: skip
    assert patients_of({"resourceType": "Task", "for": {"reference": "Patient/q"}}) == ["Patient/q"]
    assert patients_of({"resourceType": "Observation",
                        "subject": {"reference": "Group/g"}}) == []  # fmt: skip
    assert "Organization" not in patient_data_types()
    assert {"Patient", "Observation", "Composition", "AuditEvent"} <= patient_data_types()
