"""The token endpoint: SMART Backend Services (private_key_jwt) and client secrets."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from hub.security import clients, scopes
from hub.security.keys import KeyRing
from hub.security.tokens import TokenError, verify

TOKEN_URL = "http://testserver/auth/token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _jwk(private: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    import json

    return {**json.loads(algo.to_jwk(private.public_key())), "kid": kid, "alg": alg}


def _assertion(private: Any, kid: str, alg: str, client_id: str, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240,
              "jti": uuid.uuid4().hex, **over}  # fmt: skip
    return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def lab(engine: sa.Engine, clean_db: None) -> Any:
    key = ec.generate_private_key(ec.SECP384R1())
    clients.put(
        engine, "xjyzx-lis", name="县临床检验中心 LIS", org="XJYZX", roles={"member"},
        scopes="system/DiagnosticReport.cruds system/Observation.cruds system/Patient.rs",
        jwks={"keys": [_jwk(key, "k1", "ES384")]},
    )  # fmt: skip
    return key


def _token(client: TestClient, **form: str) -> Any:
    return client.post("/auth/token", data={"grant_type": "client_credentials", **form},
                       headers=FORM)  # fmt: skip


def test_private_key_jwt_gets_a_short_lived_signed_token(
    client: TestClient, engine: sa.Engine, lab: Any
) -> None:
    res = _token(client, scope="system/DiagnosticReport.rs",
                 client_assertion_type=ASSERTION,
                 client_assertion=_assertion(lab, "k1", "ES384", "xjyzx-lis"))  # fmt: skip
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/DiagnosticReport.rs"
    assert res.headers["cache-control"] == "no-store"
    hub = "urn:county-records-hub"
    who = verify(KeyRing(engine), body["access_token"], audience=f"{hub}/fhir", issuer=hub)
    assert who.client_id == "xjyzx-lis" and who.org == "XJYZX"
    assert who.grants.allows("DiagnosticReport", "s") and not who.grants.allows("Patient", "r")


def test_rs384_keys_work_too(client: TestClient, engine: sa.Engine, clean_db: None) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    clients.put(engine, "his", name="HIS", org="XRMYY", roles={"member"},
                scopes="system/*.rs", jwks={"keys": [_jwk(key, "r1", "RS384")]})  # fmt: skip
    res = _token(client, client_assertion_type=ASSERTION,
                 client_assertion=_assertion(key, "r1", "RS384", "his"))  # fmt: skip
    assert res.status_code == 200 and res.json()["scope"] == "system/*.rs"


@pytest.mark.parametrize(
    "case",
    ["wrong-key", "wrong-audience", "replayed", "too-long", "sub-differs", "hs256", "expired"],
)
def test_bad_assertions_are_refused(client: TestClient, lab: Any, case: str) -> None:
    key, over, alg = lab, {}, "ES384"
    if case == "wrong-key":
        key = ec.generate_private_key(ec.SECP384R1())
    elif case == "wrong-audience":
        over = {"aud": "http://elsewhere/auth/token"}
    elif case == "too-long":
        over = {"exp": int(time.time()) + 3600}
    elif case == "sub-differs":
        over = {"sub": "someone-else"}
    elif case == "expired":
        over = {"exp": int(time.time()) - 120}
    if case == "hs256":
        claims = {"iss": "xjyzx-lis", "sub": "xjyzx-lis", "aud": TOKEN_URL,
                  "exp": int(time.time()) + 60, "jti": "x"}  # fmt: skip
        assertion = jwt.encode(claims, "secret-secret-secret-secret-secret!", algorithm="HS256")
    else:
        assertion = _assertion(key, "k1", alg, "xjyzx-lis", **over)
    if case == "replayed":
        assert _token(client, client_assertion_type=ASSERTION,
                      client_assertion=assertion).status_code == 200  # fmt: skip
    res = _token(client, client_assertion_type=ASSERTION, client_assertion=assertion)
    assert res.status_code == 401 and res.json()["error"] == "invalid_client"


def test_client_secret_basic_and_post(
    client: TestClient, engine: sa.Engine, clean_db: None
) -> None:
    clients.put(engine, "office", name="医共体办公室", org=None, roles={"office"},
                scopes="system/*.rs hub/admin", secret="s3cret")  # fmt: skip
    basic = base64.b64encode(b"office:s3cret").decode()
    res = client.post("/auth/token", data={"grant_type": "client_credentials"},
                      headers={**FORM, "Authorization": f"Basic {basic}"})  # fmt: skip
    assert res.status_code == 200 and res.json()["scope"] == "system/*.rs hub/admin"
    res = _token(client, client_id="office", client_secret="s3cret", scope="system/Patient.read")
    assert res.status_code == 200 and res.json()["scope"] == "system/Patient.read"
    bad = _token(client, client_id="office", client_secret="wrong")
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    wider = _token(client, client_id="office", client_secret="s3cret", scope="system/*.cruds")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    grant = client.post("/auth/token", data={"grant_type": "password"}, headers=FORM)
    assert grant.json()["error"] == "unsupported_grant_type"
    with engine.connect() as conn:
        stored = clients.get(conn, "office")
    assert stored is not None and "s3cret" not in (stored.secret_hash or "")


def test_tokens_expire_and_must_be_ours(engine: sa.Engine, clean_db: None) -> None:
    ring = KeyRing(engine)
    key = ring.current()
    now = int(time.time())
    claims = {"iss": "http://h", "aud": "http://h/fhir", "sub": "c", "iat": now - 600,
              "exp": now - 300, "scope": "system/*.rs"}  # fmt: skip
    old = jwt.encode(claims, key.private, algorithm="ES256", headers={"kid": key.kid})
    with pytest.raises(TokenError, match="expired"):
        verify(ring, old, audience="http://h/fhir", issuer="http://h")
    forged_key = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode({**claims, "exp": now + 60}, forged_key, algorithm="ES256",
                        headers={"kid": key.kid})  # fmt: skip
    with pytest.raises(TokenError):
        verify(ring, forged, audience="http://h/fhir", issuer="http://h")
    good = jwt.encode({**claims, "exp": now + 60}, key.private, algorithm="ES256",
                      headers={"kid": key.kid})  # fmt: skip
    with pytest.raises(TokenError, match="audience"):
        verify(ring, good, audience="http://other/fhir", issuer="http://h")
    ring.rotate()
    assert verify(ring, good, audience="http://h/fhir", issuer="http://h").client_id == "c"


def test_scopes_v1_and_v2() -> None:
    g = scopes.parse("system/DiagnosticReport.rs system/Observation.read system/Patient.cud")
    assert g.allows("DiagnosticReport", "r") and g.allows("DiagnosticReport", "s")
    assert not g.allows("DiagnosticReport", "c")
    assert (
        g.allows("Observation", "s") and g.allows("Patient", "u") and not g.allows("Patient", "r")
    )
    star = scopes.parse("system/*.cruds")
    assert star.allows("Composition", "d") and star.types_for("r") is None
    for bad in ("patient/*.read", "system/Observation.xyz", "system/Observation.sr",
                "user/Patient.rs", "system/Observation.rs?category=laboratory"):  # fmt: skip
        with pytest.raises(scopes.ScopeError):
            scopes.parse(bad)
    assert scopes.narrow("system/Observation.rs system/Patient.cruds", "system/*.rs") == (
        "system/Observation.rs"
    )


def test_smart_configuration(client: TestClient) -> None:
    conf = client.get("/.well-known/smart-configuration").json()
    assert conf["token_endpoint"] == "http://testserver/auth/token"
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
    assert set(conf["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert client.get("/fhir/.well-known/smart-configuration").status_code == 200
    keys = client.get("/auth/jwks").json()["keys"]
    assert keys and all("d" not in k for k in keys)
