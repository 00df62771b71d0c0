"""Members' systems on real MLLP sockets: a centre's LIS/RIS taking orders, a township HIS
taking results back.  Each answers as its ``behaviour`` says, per message."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from adapters.hl7v2.ack import ErrorDetail, build_ack
from adapters.hl7v2.parse import Message, parse
from adapters.hl7v2.text import CHARSETS
from adapters.mllp.listener import MLLPServer


@dataclass(frozen=True)
class Answer:
    """What a peer does with a message: ACK it (code, ERR text), or ``hang`` (never answer)."""

    code: str = "AA"
    text: str = ""
    hang: bool = False


ACCEPT = Answer()
HANG = Answer(hang=True)

Behaviour = Callable[[Message, int], Answer]  # the message, how often this control id came


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Peer:
    """An MLLP peer in a thread of its own; ``received`` holds what reached it, parsed."""

    def __init__(self, behaviour: Behaviour = lambda _m, _n: ACCEPT, *, port: int = 0) -> None:
        self.behaviour = behaviour
        self.received: list[Message] = []
        self.raw: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.server = MLLPServer(self._handle, port=port)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._lock = threading.Lock()
        self._release = asyncio.Event()  # ends the hung answers when the peer stops

    async def _handle(self, payload: bytes, _peer: str) -> bytes | None:
        message = parse(payload)
        with self._lock:
            self.received.append(message)
            self.raw.append(payload)
            seen = sum(1 for m in self.received if m.control_id == message.control_id)
        answer = self.behaviour(message, seen)
        if answer.hang:
            await self._release.wait()
            return None
        errors = [ErrorDetail(answer.text, "207")] if answer.text else None
        ack = build_ack(message, answer.code, errors=errors, control_id="P1")
        # In the character set the message named (and the ACK repeats in MSH-18).
        return ack.encode(CHARSETS.get(message.msh.value(18).strip().upper(), "utf-8"))

    def start(self) -> Peer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._release.set)
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"mllp://127.0.0.1:{self.server.port}"

    def messages(self) -> list[Message]:
        with self._lock:
            return list(self.received)

    def orders(self) -> list[tuple[str, str, str]]:
        """(message type, ORC-1, placer number) of each message received, in order."""
        out = []
        for m in self.messages():
            orc = m.first("ORC")
            kind = f"{m.message_type[0]}^{m.message_type[1]}"
            out.append((kind, orc.value(1) if orc else "", orc.value(2) if orc else ""))
        return out
