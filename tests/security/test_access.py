"""Every way in, refused unless it is a member acting as itself within its scopes."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import mint_token

FHIR = {"Content-Type": "application/fhir+json"}
ARCHIVE_QS = "system/Composition.rs system/List.rs"
LAB = "system/DiagnosticReport.cruds system/Observation.cruds system/Patient.rs"


def _as(app: FastAPI, scopes: str, org: str | None = None, roles: set[str] | None = None) -> Any:
    token = mint_token(app, scopes=scopes, org=org, roles=frozenset(roles or {"member"}),
                       client_id=f"c-{org}")  # fmt: skip
    return TestClient(app, headers={"Authorization": f"Bearer {token}", **FHIR})


def _report(performer: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "DiagnosticReport", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "performer": [{"reference": f"Organization/{performer}"}], **extra}  # fmt: skip


def _outcome(res: Any, status: int) -> dict[str, Any]:
    assert res.status_code == status, res.text
    body = res.json()
    assert body["resourceType"] == "OperationOutcome"
    return dict(body)


def test_without_a_token_only_the_open_paths_answer(app: FastAPI, clean_db: None) -> None:
    anon = TestClient(app)
    for path in ("/fhir/metadata", "/.well-known/smart-configuration", "/healthz"):
        assert anon.get(path).status_code == 200, path
    for method, path in (("GET", "/fhir/Patient"), ("GET", "/fhir/Patient/x"),
                         ("POST", "/fhir"), ("GET", "/admin/inbox"), ("GET", "/openapi.json"),
                         ("GET", "/fhir/$export"), ("POST", "/hl7v2"),
                         ("GET", "/feedback/Composition/x/print")):  # fmt: skip
        res = anon.request(method, path)
        assert res.status_code == 401, (method, path, res.status_code)
        assert res.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("case", ["expired", "wrong-signature", "wrong-audience", "garbage"])
def test_bad_tokens_are_401(app: FastAPI, clean_db: None, case: str) -> None:
    from hub.auth.routes import key_ring

    class R:
        def __init__(self) -> None:
            self.app = app

    key = key_ring(R()).current()  # type: ignore[arg-type]
    now = int(time.time())
    claims = {"iss": "urn:county-records-hub", "aud": "urn:county-records-hub/fhir",
              "sub": "x", "iat": now, "exp": now + 60, "scope": "system/*.rs"}  # fmt: skip
    signer: Any = key.private
    if case == "expired":
        claims.update(iat=now - 700, exp=now - 400)
    elif case == "wrong-signature":
        signer = ec.generate_private_key(ec.SECP256R1())
    elif case == "wrong-audience":
        claims["aud"] = "https://other-hub.example/fhir"
    token = (
        "not.a.jwt" if case == "garbage"
        else jwt.encode(claims, signer, algorithm="ES256", headers={"kid": key.kid})
    )  # fmt: skip
    res = TestClient(app).get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    _outcome(res, 401)


def test_a_scope_too_narrow_is_403(app: FastAPI, clean_db: None) -> None:
    lab = _as(app, "system/DiagnosticReport.rs", "XJYZX")
    assert lab.get("/fhir/DiagnosticReport").status_code == 200
    assert "Patient" in _outcome(lab.get("/fhir/Patient"), 403)["issue"][0]["diagnostics"]
    _outcome(lab.post("/fhir/DiagnosticReport", json=_report("XJYZX")), 403)
    _outcome(lab.get("/admin/inbox"), 403)
    _outcome(lab.post("/fhir/Patient/$merge", json={"resourceType": "Parameters"}), 403)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient?name=王"}}]}  # fmt: skip
    res = lab.post("/fhir", json=bundle)
    entry = res.json()["entry"][0]["response"]
    assert entry["status"].startswith("403")


def test_a_member_writes_only_as_itself(app: FastAPI, clean_db: None) -> None:
    lab = _as(app, LAB, "XJYZX")
    mine = lab.post("/fhir/DiagnosticReport", json=_report("XJYZX"))
    assert mine.status_code == 201, mine.text
    _outcome(lab.post("/fhir/DiagnosticReport", json=_report("XRMYY")), 403)
    _outcome(lab.post("/fhir/DiagnosticReport", json={**_report("XJYZX"), "performer": []}), 403)
    both = _report("XJYZX")
    both["performer"].append({"reference": "Organization/XRMYY"})
    _outcome(lab.post("/fhir/DiagnosticReport", json=both), 403)
    # Another member's report can be neither replaced nor deleted by this one.
    admin = TestClient(app, headers={"Authorization": f"Bearer {mint_token(app)}", **FHIR})
    theirs = admin.post("/fhir/DiagnosticReport", json=_report("XRMYY")).json()
    forged = {**_report("XJYZX"), "id": theirs["id"]}
    _outcome(lab.put(f"/fhir/DiagnosticReport/{theirs['id']}", json=forged), 403)
    _outcome(lab.delete(f"/fhir/DiagnosticReport/{theirs['id']}"), 403)
    # Inside a transaction too, and nothing of it is written.
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _report("XJYZX"), "request": {"method": "POST", "url": "DiagnosticReport"}},
        {"resource": _report("XRMYY"), "request": {"method": "POST", "url": "DiagnosticReport"}},
    ]}  # fmt: skip
    _outcome(lab.post("/fhir", json=tx), 403)
    total = admin.get("/fhir/DiagnosticReport?_total=accurate&_count=0").json()["total"]
    assert total == 2
    # A type the rules give members no say over.
    org = {"resourceType": "Organization", "name": "冒名机构"}
    _outcome(_as(app, "system/*.cruds", "XJYZX").post("/fhir/Organization", json=org), 403)


def _composition(app: FastAPI, addressee: str) -> str:
    admin = TestClient(app, headers={"Authorization": f"Bearer {mint_token(app)}", **FHIR})
    body = {
        "resourceType": "Composition", "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5"}]},
        "date": "2026-10-05", "title": "出院小结", "author": [{"reference": "Organization/XRMYY"}],
        "extension": [{"url": "https://ygt.example.org/fhir/StructureDefinition/feedback-addressee",
                       "valueReference": {"reference": f"Organization/{addressee}"}}],
    }  # fmt: skip
    res = admin.post("/fhir/Composition", json=body)
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


def test_a_health_archive_reads_only_its_centres_documents(app: FastAPI, clean_db: None) -> None:
    own, other = _composition(app, "QSWSY"), _composition(app, "BSWSY")
    archive = _as(app, ARCHIVE_QS, "QSWSY", {"archive"})
    found = archive.get("/fhir/Composition?addressee=Organization/QSWSY").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [own]
    _outcome(archive.get("/fhir/Composition"), 403)
    _outcome(archive.get("/fhir/Composition?addressee=Organization/BSWSY"), 403)
    assert archive.get(f"/fhir/Composition/{own}").status_code == 200
    _outcome(archive.get(f"/fhir/Composition/{other}"), 403)
    _outcome(archive.get(f"/fhir/Composition/{other}/_history/1"), 403)
    _outcome(archive.get("/fhir/Patient"), 403)


def test_sensitive_results_need_their_own_scope(app: FastAPI, clean_db: None) -> None:
    admin = TestClient(app, headers={"Authorization": f"Bearer {mint_token(app)}", **FHIR})
    label = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}
    hiv = _report("XJYZX", meta={"security": [label]})
    hidden = admin.post("/fhir/DiagnosticReport", json=hiv).json()["id"]
    plain = admin.post("/fhir/DiagnosticReport", json=_report("XJYZX")).json()["id"]
    reader = _as(app, "system/DiagnosticReport.rs", "XRMYY")
    seen = reader.get("/fhir/DiagnosticReport?_total=accurate").json()
    assert [e["resource"]["id"] for e in seen["entry"]] == [plain] and seen["total"] == 1
    _outcome(reader.get(f"/fhir/DiagnosticReport/{hidden}"), 403)
    trusted = _as(app, "system/DiagnosticReport.rs system/sensitive.r", "XRMYY")
    assert trusted.get(f"/fhir/DiagnosticReport/{hidden}").status_code == 200
    assert trusted.get("/fhir/DiagnosticReport?_total=accurate").json()["total"] == 2


INJECTIONS = ["' OR '1'='1", "1; DROP TABLE resources; --", "\\' OR 1=1 --", "%' --", "_%",
              "\x00", "Patient/x' OR 'a'='a", "ge2026-01-01' OR '1'='1", "5||' or 1=1"]  # fmt: skip


@pytest.mark.parametrize(
    "param",
    ["name", "_id", "identifier", "birthdate", "general-practitioner", "_lastUpdated",
     "address-postalcode", "_tag", "telecom"],
)  # fmt: skip
def test_injection_attempts_in_every_kind_of_parameter(
    app: FastAPI, engine: sa.Engine, clean_db: None, param: str
) -> None:
    admin = TestClient(app, headers={"Authorization": f"Bearer {mint_token(app)}", **FHIR})
    admin.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"text": "王伟"}]})
    for value in INJECTIONS:
        res = admin.get("/fhir/Patient", params={param: value})
        assert res.status_code in (200, 400), (param, value, res.status_code)
        if res.status_code == 200:
            assert res.json().get("entry", []) == [], (param, value)
    obs = admin.get("/fhir/Observation", params={"value-quantity": "5||' or 1=1"})
    assert obs.status_code in (200, 400)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM resources")).scalar_one() >= 1


@pytest.mark.parametrize(
    "path",
    ["/fhir/$export-file/../../etc/passwd", "/fhir/$export-file/x/..%2F..%2Fetc%2Fpasswd",
     "/fhir/$export-file/%2e%2e/%2e%2e", "/fhir/$export-status/..%2F..%2Fadmin",
     "/fhir/$export-file/%00/1", "/fhir/$export-status/%00"],
)  # fmt: skip
def test_path_tricks_in_export_file_names(app: FastAPI, clean_db: None, path: str) -> None:
    admin = TestClient(app, headers={"Authorization": f"Bearer {mint_token(app)}"})
    res = admin.get(path)
    assert res.status_code in (400, 404), (path, res.status_code)
    assert b"root:" not in res.content


def test_an_export_belongs_to_whoever_asked_for_it(app: FastAPI, clean_db: None) -> None:
    asking = _as(app, "system/*.rs", "XRMYY")
    other = _as(app, "system/*.rs", "XZYY")
    res = asking.get("/fhir/Patient/$export", headers={"Prefer": "respond-async"})
    assert res.status_code == 202, res.text
    status = res.headers["content-location"].split("/fhir")[1]
    assert asking.get(f"/fhir{status}").status_code in (200, 202)
    _outcome(other.get(f"/fhir{status}"), 404)
    _outcome(other.delete(f"/fhir{status}"), 404)
    _outcome(other.get("/fhir/$export", headers={"Prefer": "respond-async"}), 403)  # office's
    assert asking.delete(f"/fhir{status}").status_code == 202


def test_an_archive_subscribes_only_to_its_centres_documents(app: FastAPI, clean_db: None) -> None:
    archive = _as(app, "system/Composition.rs system/Subscription.cruds", "DAXT", {"archive"})

    def subscribe(criteria: str) -> Any:
        return archive.post("/fhir/Subscription", json={
            "resourceType": "Subscription", "status": "requested", "reason": "档案",
            "criteria": criteria,
            "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}})  # fmt: skip

    own = "Composition?type=http://loinc.org|18842-5&addressee=Organization/DAXT"
    assert subscribe(own).status_code == 201
    _outcome(subscribe("Composition?addressee=Organization/QSWSY"), 403)
    _outcome(subscribe("DiagnosticReport?status=final"), 403)
