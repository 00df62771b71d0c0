"""Access tokens: short-lived JWTs the hub signs (ES256) and checks on every request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from hub.security import scopes as smart
from hub.security.clients import AuthError, Client
from hub.security.keys import ALGORITHM, KeyRing
from hub.store.repository import now_micros

ACCESS_SECONDS = 300


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token says."""

    client_id: str
    org: str | None
    roles: frozenset[str]
    scope: str
    grants: smart.Grants
    token_id: str
    serves: frozenset[str] = frozenset()  # an archive system's centres

    @property
    def is_office(self) -> bool:
        return bool(self.roles & {"admin", "office"})


def issue(ring: KeyRing, client: Client, requested: str | None, *, issuer: str,
          audience: str, seconds: int = ACCESS_SECONDS) -> dict[str, Any]:  # fmt: skip
    """The token response for ``client`` asking for ``requested`` scopes (all it may have when
    it asks for none); ``seconds`` to live (the dashboard's session sets its own)."""
    try:
        scope = smart.narrow(requested, client.scopes) if requested else client.scopes
    except smart.ScopeError as exc:
        raise AuthError("invalid_scope", str(exc)) from exc
    if not scope:
        raise AuthError("invalid_scope", "none of the requested scopes is allowed to this client")
    now = now_micros() // 1_000_000
    key = ring.current()
    claims = {
        "iss": issuer, "aud": audience, "sub": client.client_id, "iat": now,
        "exp": now + seconds, "jti": uuid.uuid4().hex, "scope": scope,
        "org": client.org, "roles": sorted(client.roles),
    }  # fmt: skip
    if client.serves:
        claims["serves"] = sorted(client.serves)
    token = jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
    return {
        "access_token": token, "token_type": "bearer", "expires_in": seconds,
        "scope": scope,
    }  # fmt: skip


def token_issuer(settings: Any) -> str:
    """The issuer every process names in and expects of tokens: HUB_AUTH_ISSUER, else the
    public base URL, else a name of this hub (not a host name a client happened to use)."""
    if getattr(settings, "auth_issuer", None):
        return str(settings.auth_issuer).rstrip("/")
    if getattr(settings, "base_url", None):
        return str(settings.base_url).rstrip("/").removesuffix("/fhir")
    return "urn:county-records-hub"


class TokenError(Exception):
    pass


def verify(ring: KeyRing, token: str, *, audience: str, issuer: str) -> Principal:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as exc:
        raise TokenError("the bearer token is not a JWT") from exc
    key = ring.get(str(kid)) if kid else None
    if key is None:
        raise TokenError("the token was not signed by this hub")
    try:
        claims = jwt.decode(
            token, key.private.public_key(), algorithms=[ALGORITHM], audience=audience,
            issuer=issuer, options={"require": ["exp", "iat", "sub", "scope"]},
        )  # fmt: skip
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("the token has expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenError("the token is for another audience") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"the token does not verify ({type(exc).__name__})") from exc
    return Principal(
        claims["sub"], claims.get("org"), frozenset(claims.get("roles") or ()), claims["scope"],
        smart.parse(claims["scope"]), str(claims.get("jti", "")),
        frozenset(claims.get("serves") or ()),
    )  # fmt: skip
