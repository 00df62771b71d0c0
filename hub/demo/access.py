"""Who the demo speaks as: each member's own client (profiles/security/clients.json), and the
hub's local admin client for the office's work.

Tokens are minted from the store with the hub's signing keys, as ``hub token`` does on the
hub's host, so no member needs credentials for the demo; the office client gets a fresh secret
for the dashboard's login (printed once), unless it already has credentials.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import func, select

from adapters.feeds.config import Community
from hub.config import Settings
from hub.db import make_engine
from hub.demo.requests import subscription
from hub.security import clients
from hub.security.admin_client import ADMIN_CLIENT_ID
from hub.security.keys import KeyRing
from hub.security.tokens import issue, token_issuer
from hub.store.schema import subscription_notifications

if TYPE_CHECKING:
    from hub.demo.peers import Peers

OFFICE_CLIENT = "ygt-office"
TOKEN_REUSE = 240.0  # seconds a minted token is reused (they live 300)
FHIR_JSON = "application/fhir+json"


class Access:
    def __init__(self, settings: Settings, community: Community) -> None:
        self.engine = make_engine(settings.db_url)
        self.ring = KeyRing(self.engine)
        self.issuer = token_issuer(settings)
        self.community = community
        self._tokens: dict[str, tuple[float, str]] = {}
        with self.engine.connect() as conn:
            every = clients.all_clients(conn)
        self.clients = {c.client_id: c for c in every}
        # A member's system: the first client of that organisation, a "member" one first (the
        # health-archive system's client has the "archive" role instead).
        self.of_member: dict[str, str] = {}
        for c in sorted(every, key=lambda c: "member" not in c.roles):
            if c.org:
                self.of_member.setdefault(c.org, c.client_id)

    def client_id(self, who: str) -> str:
        if who == "admin":
            return ADMIN_CLIENT_ID
        if who in self.of_member:
            return self.of_member[who]
        if who in self.clients:
            return who
        raise KeyError(f"no client for {who!r} (profiles/security/clients.json)")

    def headers(self, who: str) -> dict[str, str]:
        """``Authorization`` for a member (by code), a client (by id) or ``admin``."""
        client_id = self.client_id(who)
        held = self._tokens.get(client_id)
        if held is None or time.monotonic() - held[0] > TOKEN_REUSE:
            client = self.clients.get(client_id)
            if client is None:  # made after we read the table (the local admin client)
                with self.engine.connect() as conn:
                    client = clients.get(conn, client_id)
                if client is None:
                    raise KeyError(f"client {client_id!r} is not registered")
                self.clients[client_id] = client
            minted = issue(self.ring, client, None, issuer=self.issuer,
                           audience=f"{self.issuer}/fhir")  # fmt: skip
            held = (time.monotonic(), str(minted["access_token"]))
            self._tokens[client_id] = held
        return {"Authorization": f"Bearer {held[1]}"}

    def office_secret(self) -> str | None:
        """A fresh secret for the office's client when it has no credentials yet."""
        office = self.clients.get(OFFICE_CLIENT)
        if office is None or office.secret_hash or office.jwks:
            return None
        secret = clients.new_secret()
        clients.put(
            self.engine, OFFICE_CLIENT, name=office.name, org=office.org, roles=set(office.roles),
            scopes=office.scopes, secret=secret, serves=set(office.serves),
        )  # fmt: skip
        return secret

    def notifications_pending(self) -> int:
        """Subscription notifications the hub has yet to deliver (read from the store: the
        office's API does not list them)."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(func.count()).where(subscription_notifications.c.status == "pending")
            )
            return int(found.scalar_one())

    async def point_endpoints(self, http: httpx.AsyncClient, peers: Peers) -> None:
        """The office re-points the Endpoint of each member system that listens elsewhere."""
        admin = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON, **self.headers("admin")}
        for peer in peers.mllp:
            found = await http.get(f"/fhir/Endpoint/{peer.member}", headers=admin)
            found.raise_for_status()
            endpoint = found.json()
            if endpoint.get("address") == peer.address:
                continue
            endpoint.pop("meta", None)
            endpoint["address"] = peer.address
            (await http.put(f"/fhir/Endpoint/{peer.member}", json=endpoint,
                            headers=admin)).raise_for_status()  # fmt: skip

    async def subscribe(self, http: httpx.AsyncClient, hooks: str, community: Community) -> None:
        """The FHIR-speaking township centre hears of its routed orders by rest-hook (each
        order's Task completes when the result is in); the health-archive system hears of
        each discharge document addressed to a centre it serves.  The office sets up the
        archive's Subscriptions: the security rules let an archive client read its centres'
        documents but not write a Subscription of its own."""
        wanted = [
            (m.code, f"Task?requester=Organization/{m.code}", "检查检验结果回传", hooks)
            for m in community.members.values()
            if m.endpoint is not None and m.endpoint.connection == "hl7-fhir-rest"
        ]
        archive = next((c for c in self.clients.values() if "archive" in c.roles), None)
        for centre in sorted(archive.serves if archive else ()):
            criteria = f"Composition?type=http://loinc.org|18842-5&addressee=Organization/{centre}"
            archive_hooks = hooks.replace("/fhir-hooks", "/archive-hooks")
            wanted.append(("admin", criteria, f"住院信息每月反馈 {centre}", archive_hooks))
        for who, criteria, reason, endpoint in wanted:
            found = await http.get(
                "/fhir/Subscription",
                params={"criteria": criteria, "url": endpoint},
                headers={"Accept": FHIR_JSON, **self.headers("admin")},
            )
            if found.status_code == 200 and found.json().get("total"):
                continue  # subscribed on an earlier run
            answer = await http.post(
                "/fhir/Subscription", json=subscription(criteria, endpoint, reason),
                headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON, **self.headers(who)},
            )  # fmt: skip
            answer.raise_for_status()
