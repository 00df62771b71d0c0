"""MLLP and HTTP feeds speak only for the member they are bound to; MLLP over TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ssl
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.feeds.config import demo_community
from adapters.mllp.client import MLLPClient
from adapters.mllp.framing import FramingError
from hub.feeds.service import FeedService
from hub.security.tls import server_context
from hub.store.schema import inbox
from tests.conftest import mint_token
from tests.feeds.helpers import ack_code, ack_of, send_all

ORU = (
    "MSH|^~\\&|LIS|{sender}|YGT_HUB|YGT|20261002103000+0800||ORU^R01^ORU_R01|{cid}|P|2.5.1"
    "||||||UNICODE UTF-8\r"
    "PID|1||JY-1^^^{sender}^MR||张三||19800101|M\r"
    "OBR|1|ORD-1^{sender}|F-1^{sender}|CBC^血常规^L|||20261002080000||||||||||||||20261002"
    "102500||LAB|F\r"
    "OBX|1|NM|WBC^白细胞计数^L||11.2|10*9/L^10*9/L^UCUM|3.5-9.5|H|||F\r"
)


def _oru(sender: str, cid: str) -> bytes:
    return ORU.format(sender=sender, cid=cid).encode()


def _rows(engine: sa.Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        return [
            (r.sender, r.status, r.error)
            for r in conn.execute(sa.select(inbox).order_by(inbox.c.id))
        ]


def test_a_sender_from_an_address_outside_its_sources_is_refused_and_recorded(
    engine: sa.Engine, clean_db: None
) -> None:
    community = demo_community()
    lab = dataclasses.replace(community.members["XJYZX"], sources=("10.20.0.0/16",))
    hospital = dataclasses.replace(community.members["XRMYY"], sources=("127.0.0.0/8",))
    # A copy: demo_community() is shared by the whole test session.
    community = dataclasses.replace(
        community, members={**community.members, "XJYZX": lab, "XRMYY": hospital}
    )
    service = FeedService(engine, community, mllp_port=0, run_worker=False)
    service.start()
    try:
        assert service.port is not None
        refused, accepted = send_all(service.port, [_oru("XJYZX", "B-1"), _oru("XRMYY", "B-2")])
    finally:
        service.stop()
    assert ack_code(refused) == "AR" and ack_code(accepted) == "AA"
    err = ack_of(refused).first("ERR")
    assert err is not None and "not accepted from this address" in err.value(8)
    rows = _rows(engine)
    assert [(s, st) for s, st, _ in rows] == [("XJYZX", "rejected"), ("XRMYY", "pending")]


def test_http_intake_is_bound_to_the_callers_member(app: FastAPI, engine: sa.Engine,
                                                     clean_db: None) -> None:  # fmt: skip
    token = mint_token(app, scopes="system/DiagnosticReport.cruds", org="XJYZX",
                       roles=frozenset({"member"}), client_id="xjyzx-lis")  # fmt: skip
    lis = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    own = lis.post("/hl7v2", content=_oru("XJYZX", "H-1"))
    assert ack_code(own.content) == "AA"
    forged = lis.post("/hl7v2", content=_oru("XRMYY", "H-2"))
    assert ack_code(forged.content) == "AR"
    assert "authenticated as (XJYZX)" in ack_of(forged.content).first("ERR").value(8)  # type: ignore[union-attr]
    assert [(s, st) for s, st, _ in _rows(engine)] == [("XJYZX", "pending"), ("XRMYY", "rejected")]
    archive = mint_token(app, scopes="system/Composition.rs", roles=frozenset({"archive"}),
                         client_id="nobody")  # fmt: skip
    res = TestClient(app, headers={"Authorization": f"Bearer {archive}"}).post(
        "/hl7v2", content=_oru("XJYZX", "H-3")
    )
    assert res.status_code == 403


def _self_signed(tmp: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp / "hub.pem", tmp / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    return str(cert_path), str(key_path)


def test_mllp_over_tls(engine: sa.Engine, clean_db: None, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    service = FeedService(engine, demo_community(), mllp_port=0, run_worker=False,
                          tls=server_context(cert, key))  # fmt: skip
    service.start()
    try:
        port = service.port
        assert port is not None
        trusted = ssl.create_default_context(cafile=cert)

        async def send(tls: ssl.SSLContext | None, cid: str) -> bytes:
            async with MLLPClient("localhost", port, timeout=10, tls=tls) as client:
                return await client.send(_oru("XJYZX", cid))

        assert ack_code(asyncio.run(send(trusted, "T-1"))) == "AA"
        # A plain-TCP sender gets no answer, and the listener keeps serving TLS ones.
        with pytest.raises((FramingError, ConnectionError, OSError, asyncio.TimeoutError)):
            asyncio.run(send(None, "T-2"))
        assert ack_code(asyncio.run(send(trusted, "T-3"))) == "AA"
    finally:
        service.stop()
    assert [s for s, _, _ in _rows(engine)] == ["XJYZX", "XJYZX"]
