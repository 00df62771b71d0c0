"""The hub's token-signing key: ES256, made on first use and kept in the store.

In the store (not a file) so every API process and host signs and verifies with the same key;
the private key never leaves the database and the process.  A rotation adds a new current key
and keeps the old one to verify tokens it signed until they expire.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.store.repository import now_micros
from hub.store.schema import auth_keys

ALGORITHM = "ES256"
_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def _load(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _new_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip


class KeyRing:
    """The current signing key and the keys still trusted, cached for a minute per process."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._current: SigningKey | None = None
        self._loaded = 0.0

    def _refresh(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(select(auth_keys).order_by(auth_keys.c.created_at)).all()
        if not rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        insert(auth_keys).values(
                            kid=uuid.uuid4().hex, private_pem=_new_pem(), created_at=now_micros()
                        )
                    )
            except IntegrityError:
                pass  # another process made the first key at the same moment
            with self.engine.connect() as conn:
                rows = conn.execute(select(auth_keys).order_by(auth_keys.c.created_at)).all()
        self._keys = {r.kid: SigningKey(r.kid, _load(r.private_pem)) for r in rows}
        live = [r for r in rows if r.retired_at is None]
        self._current = self._keys[(live or rows)[-1].kid]
        self._loaded = time.monotonic()

    def _fresh(self) -> None:
        with self._lock:
            if self._current is None or time.monotonic() - self._loaded > _CACHE_SECONDS:
                self._refresh()

    def current(self) -> SigningKey:
        self._fresh()
        assert self._current is not None
        return self._current

    def get(self, kid: str) -> SigningKey | None:
        self._fresh()
        if kid not in self._keys:
            with self._lock:
                self._refresh()  # a key made by another process since the last load
        return self._keys.get(kid)

    def jwks(self) -> dict[str, Any]:
        self._fresh()
        return {"keys": [k.public_jwk() for k in self._keys.values()]}

    def rotate(self) -> str:
        """A new current key; the old ones stay trusted (tokens live minutes)."""
        kid = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                update(auth_keys)
                .where(auth_keys.c.retired_at.is_(None))
                .values(retired_at=now_micros())
            )
            conn.execute(
                insert(auth_keys).values(kid=kid, private_pem=_new_pem(), created_at=now_micros())
            )
        with self._lock:
            self._refresh()
        return kid
