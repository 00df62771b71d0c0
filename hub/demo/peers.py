"""The members' systems that take what the hub sends: the lab centre's LIS and the imaging
centre's RIS take routed orders, township HIS take results back (MLLP, answering AA), and the
FHIR-speaking township centre hears of its results by rest-hook (HTTP, answering 200).

Each listens where community.json's Endpoint says when that port is free; otherwise on a port
of its own, and the office re-points the Endpoint through the FHIR API (``Endpoint/<member>``),
as it would for a system that moved.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from adapters.feeds.config import Community
from adapters.hl7v2.ack import build_ack
from adapters.hl7v2.parse import parse
from adapters.hl7v2.text import CHARSETS
from adapters.mllp.listener import MLLPServer

log = logging.getLogger("hub.demo")
MLLP = "hl7v2-mllp"
HOOKS_PORT = 8611  # where community.json puts 柳塘镇卫生院's rest-hook receiver


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class MllpPeer:
    """One member's system on MLLP: takes every message and answers AA."""

    member: str
    configured: str  # the Endpoint's address in community.json
    received: int = 0
    server: MLLPServer | None = None

    async def _handle(self, payload: bytes, _peer: str) -> bytes:
        message = parse(payload)
        self.received += 1
        ack = build_ack(message, "AA", control_id=f"{self.member}-{self.received}",
                        sending_app="LIS", sending_facility=self.member)  # fmt: skip
        charset = CHARSETS.get(message.msh.value(18).strip().upper(), "utf-8")
        return ack.encode(charset)

    async def start(self) -> None:
        where = urlparse(self.configured)
        host, port = where.hostname or "127.0.0.1", where.port or 0
        if not port_free(host, port):
            host, port = "127.0.0.1", 0
        self.server = MLLPServer(self._handle, host=host, port=port)
        await self.server.start()

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"mllp://{self.server.host}:{self.server.port}"

    @property
    def moved(self) -> bool:
        return self.address != self.configured

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


class _Hooks(BaseHTTPRequestHandler):
    counter: list[int]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.counter[0] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        return  # the demo's terminal shows the progress bar, not each notification


@dataclass
class HookReceiver:
    """A FHIR-speaking HIS's rest-hook endpoint for its Subscriptions."""

    count: list[int] = field(default_factory=lambda: [0])
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        handler = type("Hooks", (_Hooks,), {"counter": self.count})
        port = HOOKS_PORT if port_free("127.0.0.1", HOOKS_PORT) else 0
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/fhir-hooks"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Peers:
    mllp: list[MllpPeer]
    hooks: HookReceiver

    @classmethod
    def of(cls, community: Community) -> Peers:
        found = [
            MllpPeer(m.code, m.endpoint.address)
            for m in community.members.values()
            if m.endpoint is not None and m.endpoint.connection == MLLP
        ]
        return cls(found, HookReceiver())

    async def start(self) -> None:
        for peer in self.mllp:
            await peer.start()
        self.hooks.start()

    async def stop(self) -> None:
        for peer in self.mllp:
            await peer.stop()
        self.hooks.stop()

    @property
    def received(self) -> int:
        return sum(p.received for p in self.mllp) + self.hooks.count[0]
