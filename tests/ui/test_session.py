"""The dashboard's session and its guards, without a browser: who may log in, what the cookie
is, where it is accepted, the CSRF checks, and what the pages escape."""

from __future__ import annotations

import re
import time
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hub.auth.enforce import SESSION_COOKIE
from hub.security import clients
from hub.store.schema import inbox, resources
from tests.conftest import mint_token
from tests.ui.conftest import OFFICE_SECRET


@pytest.fixture
def browser_like(app: FastAPI) -> TestClient:
    """A client without a bearer token: it has only what the dashboard gives it."""
    return TestClient(app, follow_redirects=False)


def _nonce(client: TestClient, path: str = "/ui/login") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def log_in(client: TestClient, client_id: str, secret: str, next_path: str = "/ui") -> Any:
    nonce = _nonce(client)
    return client.post(
        "/ui/login",
        data={"nonce": nonce, "client_id": client_id, "client_secret": secret, "next": next_path},
    )


def _csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def test_pages_ask_for_a_login_and_the_stylesheet_does_not(browser_like: TestClient) -> None:
    answer = browser_like.get("/ui/messages?status=failed")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Fmessages%3Fstatus%3Dfailed"
    css = browser_like.get("/ui/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert browser_like.get("/ui/static/..%2Fsession.py").status_code == 404
    assert browser_like.get("/ui/static/session.py").status_code == 404


def test_an_office_client_logs_in_and_the_cookie_is_strict(
    browser_like: TestClient, office: tuple[str, str]
) -> None:
    answer = log_in(browser_like, *office, next_path="/ui/reviews")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/reviews"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "=")
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/ui" in cookie.lower()
    token = cookie.split(";")[0].split("=", 1)[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"].endswith("/ui") and claims["sub"] == office[0]
    assert 0 < claims["exp"] - time.time() <= 30 * 60
    page = browser_like.get("/ui/reviews")
    assert page.status_code == 200 and office[0] in page.text
    headers = page.headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"


def test_wrong_secrets_other_clients_and_stale_forms_are_refused(
    app: FastAPI, browser_like: TestClient, office: tuple[str, str]
) -> None:
    refused = log_in(browser_like, office[0], "wrong")
    assert refused.status_code == 401 and "密钥错误" in refused.text
    assert SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    # Recorded as a refused credential, naming the client it claimed to be.
    with app.state.engine.connect() as conn:
        events = conn.execute(
            sa.select(resources.c.content).where(resources.c.res_type == "AuditEvent")
        ).scalars()
        assert any("110114" in e and office[0] in e for e in events)
    assert log_in(browser_like, "nobody", OFFICE_SECRET).status_code == 401
    clients.put(app.state.engine, "qswsy-his", name="青山镇卫生院 HIS", org="QSWSY",
                roles={"member"}, scopes="system/Patient.rs", secret="member-secret")  # fmt: skip
    member = log_in(browser_like, "qswsy-his", "member-secret")
    assert member.status_code == 401 and "不是办公室" in member.text
    # No double-submit value: a form posted from elsewhere.
    stale = browser_like.post(
        "/ui/login", data={"client_id": office[0], "client_secret": office[1]}
    )
    assert stale.status_code == 400
    # Never back to another site after logging in.
    away = log_in(browser_like, *office, next_path="https://evil.example/ui")
    assert away.headers["location"] == "/ui"


def test_the_session_is_for_the_dashboard_only(
    app: FastAPI, browser_like: TestClient, office: tuple[str, str]
) -> None:
    log_in(browser_like, *office)
    token = browser_like.cookies[SESSION_COOKIE]
    # The cookie's token is no API token, sent as a cookie or as a bearer token.
    as_cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
    assert browser_like.get("/admin/inbox", headers=as_cookie).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert browser_like.get("/fhir/Patient", headers=bearer).status_code == 401
    # And an API token is no session.
    api_token = mint_token(app)
    browser_like.cookies.clear()
    browser_like.cookies.set(SESSION_COOKIE, api_token)
    answer = browser_like.get("/ui")
    assert answer.status_code == 303 and "expired=1" in answer.headers["location"]


def test_an_expired_session_goes_back_to_the_login(
    app: FastAPI, browser_like: TestClient, office: tuple[str, str]
) -> None:
    from hub.auth.routes import key_ring
    from hub.security.tokens import issue, token_issuer

    class _Request:
        def __init__(self) -> None:
            self.app = app

    with app.state.engine.connect() as conn:
        client = clients.get(conn, office[0])
    assert client is not None
    issuer = token_issuer(app.state.settings)
    ring = key_ring(_Request())  # type: ignore[arg-type]  # it only reads .app
    old = issue(ring, client, None, issuer=issuer, audience=f"{issuer}/ui",
                seconds=-60)["access_token"]  # fmt: skip
    browser_like.cookies.set(SESSION_COOKIE, old)
    answer = browser_like.get("/ui/feedback")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=%2Fui%2Ffeedback&expired=1"
    assert "会话已过期" in browser_like.get(answer.headers["location"]).text


def test_forms_need_the_sessions_csrf_token(
    browser_like: TestClient, office: tuple[str, str], engine: sa.Engine
) -> None:
    log_in(browser_like, *office)
    with engine.begin() as conn:
        inbox_id = conn.execute(
            sa.insert(inbox).returning(inbox.c.id),
            {"transport": "http", "sender": "XRMYY", "application": "HIS", "control_id": "C1",
             "message_type": "ADT^A08", "content_hash": "x", "raw": b"MSH|^~\\&|HIS|XRMYY",
             "received_at": 0, "accepted": False, "status": "rejected", "error": "bad",
             "attempts": 0},
        ).scalar_one()  # fmt: skip
    for sent in ({}, {"csrf": "0" * 64}):
        refused = browser_like.post(f"/ui/messages/{inbox_id}/replay", data=sent)
        assert refused.status_code == 403 and "CSRF" in refused.text
        review = browser_like.post("/ui/reviews/t1", data={**sent, "verdict": "same-person"})
        assert review.status_code == 403
        assert browser_like.post("/ui/logout", data=sent).status_code == 403
    token = _csrf(browser_like, f"/ui/messages/{inbox_id}")
    done = browser_like.post(f"/ui/messages/{inbox_id}/replay", data={"csrf": token})
    assert done.status_code == 303 and "replayed=" in done.headers["location"]
    out = browser_like.post("/ui/logout", data={"csrf": token})
    assert out.status_code == 303 and SESSION_COOKIE not in browser_like.cookies


def test_what_members_send_is_escaped(
    browser_like: TestClient, office: tuple[str, str], client: TestClient
) -> None:
    hostile = (
        b"MSH|^~\\&|HIS|XRMYY|YGT_HUB|YGT|20261020090000||ADT^A08|XSS-1|P|2.4\r"
        b"PID|1||<script>alert(1)</script>^^^XRMYY^MR||<img src=x onerror=alert(2)>^^||19600315|M\r"
    )
    client.post("/hl7v2", content=hostile)
    log_in(browser_like, *office)
    listing = browser_like.get("/ui/messages", params={"control_id": "XSS-1"})
    [row_id] = re.findall(r'data-id="(\d+)"', listing.text)
    shown = browser_like.get(f"/ui/messages/{row_id}").text
    assert "<script>alert(1)" not in shown and "&lt;script&gt;alert(1)" in shown
    assert "<img src=x" not in shown
    found = browser_like.get("/ui/messages", params={"patient": "<script>"}).text
    assert f'data-id="{row_id}"' in found
