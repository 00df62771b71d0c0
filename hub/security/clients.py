"""The clients that may call the hub, and how each proves who it is at the token endpoint.

SMART Backend Services (private_key_jwt: a JWT signed RS384 or ES384 with a key from the
client's JWKS, iss = sub = client id, aud = the token endpoint, at most 5 minutes to live,
each jti once) is the preferred method; a client secret (HTTP Basic or form) the simple one,
stored only as a scrypt hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.security import scopes as smart
from hub.store.repository import now_micros
from hub.store.schema import auth_assertions, auth_clients

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_SECONDS = 300
ROLES = frozenset({"admin", "office", "member", "archive"})
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class AuthError(Exception):
    """An OAuth 2.0 error answer (RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    org: str | None
    roles: frozenset[str]
    scopes: str
    secret_hash: str | None
    jwks: dict[str, Any] | None
    disabled: bool
    serves: frozenset[str] = frozenset()  # an archive system's centres


def hash_secret(secret: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)  # type: ignore[arg-type]
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_secret(secret: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt, digest = stored.split("$")
    got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), **_SCRYPT)  # type: ignore[arg-type]
    return hmac.compare_digest(got, base64.b64decode(digest))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _row(r: Any) -> Client:
    return Client(
        r.client_id, r.name, r.org, frozenset(json.loads(r.roles)), r.scopes, r.secret_hash,
        json.loads(r.jwks) if r.jwks else None, bool(r.disabled),
        frozenset(json.loads(r.serves)) if r.serves else frozenset(),
    )  # fmt: skip


def get(conn: Connection, client_id: str) -> Client | None:
    row = conn.execute(select(auth_clients).where(auth_clients.c.client_id == client_id)).first()
    return _row(row) if row else None


def all_clients(conn: Connection) -> list[Client]:
    return [_row(r) for r in conn.execute(select(auth_clients).order_by(auth_clients.c.client_id))]


def put(
    engine: Engine,
    client_id: str,
    *,
    name: str,
    org: str | None,
    roles: set[str],
    scopes: str,
    secret: str | None = None,
    secret_hash: str | None = None,
    jwks: dict[str, Any] | None = None,
    serves: set[str] | None = None,
    keep_credentials: bool = False,
) -> Client:
    """Create or replace a client (the CLI, and the community's clients from profiles/).

    ``keep_credentials``: change what the client may do but keep how it proves itself (the
    profiles name clients and scopes; credentials are given by the office, never in files)."""
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
    smart.parse(scopes)  # refuse what could never be granted
    if secret is None and secret_hash is None and jwks is None and not keep_credentials:
        raise ValueError("a client needs a secret or a JWKS")
    for key in (jwks or {}).get("keys", []):
        if key.get("d") is not None:
            raise ValueError("the JWKS holds a private key: give the public keys only")
    values: dict[str, Any] = {
        "name": name, "org": org, "roles": json.dumps(sorted(roles)), "scopes": scopes,
        "serves": json.dumps(sorted(serves)) if serves else None, "disabled": False,
    }  # fmt: skip
    if not keep_credentials or secret or secret_hash or jwks:
        values["secret_hash"] = secret_hash or (hash_secret(secret) if secret else None)
        values["jwks"] = json.dumps(jwks) if jwks is not None else None
    with engine.begin() as conn:
        done = conn.execute(
            update(auth_clients).where(auth_clients.c.client_id == client_id).values(**values)
        )
        if not done.rowcount:
            conn.execute(
                insert(auth_clients).values(client_id=client_id, created_at=now_micros(), **values)
            )
        client = get(conn, client_id)
    assert client is not None
    return client


def _verify_assertion(conn: Connection, assertion: str, token_urls: list[str]) -> Client:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError("invalid_client", "the client assertion is not a JWT", 401) from exc
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        raise AuthError(
            "invalid_client", f"assertion alg must be one of {ASSERTION_ALGORITHMS}", 401
        )
    client_id = claims.get("iss")
    client = get(conn, str(client_id)) if isinstance(client_id, str) else None
    if client is None or client.disabled or not client.jwks:
        raise AuthError("invalid_client", "unknown client, or no JWKS registered for it", 401)
    keys = [k for k in client.jwks.get("keys", []) if header.get("kid") in (None, k.get("kid"))]
    checked = None
    for jwk in keys:
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
            checked = jwt.decode(
                assertion, key, algorithms=[alg], audience=token_urls, issuer=client.client_id,
                options={"require": ["exp", "iss", "sub", "aud", "jti"]}, leeway=30,
            )  # fmt: skip
            break
        except (jwt.PyJWTError, ValueError):
            continue
    if checked is None:
        raise AuthError(
            "invalid_client", "the client assertion's signature or claims do not verify", 401
        )
    if checked.get("sub") != client.client_id:
        raise AuthError("invalid_client", "assertion sub must equal iss (the client id)", 401)
    now = now_micros() // 1_000_000
    if int(checked["exp"]) - now > MAX_ASSERTION_SECONDS:
        raise AuthError("invalid_client", "assertion lifetime exceeds 5 minutes", 401)
    try:
        with conn.begin_nested():
            conn.execute(
                insert(auth_assertions).values(
                    client_id=client.client_id, jti=str(checked["jti"])[:255],
                    expires_at=int(checked["exp"]) * 1_000_000,
                )
            )  # fmt: skip
    except IntegrityError as exc:
        raise AuthError("invalid_client", "this client assertion was used before", 401) from exc
    conn.execute(delete(auth_assertions).where(auth_assertions.c.expires_at < now_micros()))
    return client


def authenticate(
    engine: Engine,
    form: dict[str, str],
    basic: tuple[str, str] | None,
    token_urls: list[str],
) -> Client:
    """The client a token request comes from, or AuthError."""
    with engine.begin() as conn:
        if form.get("client_assertion_type") or form.get("client_assertion"):
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise AuthError(
                    "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}"
                )
            return _verify_assertion(conn, form.get("client_assertion", ""), token_urls)
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        client = get(conn, client_id) if client_id else None
        if client is None or client.disabled or not check_secret(secret, client.secret_hash):
            raise AuthError("invalid_client", "unknown client or wrong secret", 401)
        return client


def load_profile_clients(engine: Engine) -> int:
    """The community's clients from profiles/security/clients.json: created, or their scopes
    and roles brought up to date; their credentials (given by the office) are kept."""
    from adapters.feeds.config import profiles_dir

    path = profiles_dir() / "security" / "clients.json"
    if not path.exists():
        return 0
    changed = 0
    for entry in json.loads(path.read_text(encoding="utf-8"))["clients"]:
        with engine.connect() as conn:
            held = get(conn, entry["clientId"])
        wanted = (entry["name"], entry.get("org"), frozenset(entry["roles"]), entry["scopes"],
                  frozenset(entry.get("serves") or ()))  # fmt: skip
        if held is not None and (held.name, held.org, held.roles, held.scopes, held.serves) == (
            wanted
        ):
            continue
        put(
            engine, entry["clientId"], name=entry["name"], org=entry.get("org"),
            roles=set(entry["roles"]), scopes=entry["scopes"],
            serves=set(entry.get("serves") or ()), keep_credentials=True,
        )  # fmt: skip
        changed += 1
    return changed
