"""Sending over real sockets, and reading ACKs back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from adapters.hl7v2.ack import build_ack
from adapters.hl7v2.parse import Message, parse
from adapters.mllp.client import MLLPClient
from adapters.mllp.listener import MLLPServer
from hub.store.schema import inbox


def send_all(port: int, messages: list[bytes], *, connections: int = 1) -> list[bytes]:
    """Send messages over ``connections`` sockets (round robin, each waits for its ACK)."""

    async def run() -> list[bytes]:
        answers: list[bytes] = [b""] * len(messages)

        async def sender(lane: int) -> None:
            async with MLLPClient("127.0.0.1", port, timeout=30) as client:
                for i in range(lane, len(messages), connections):
                    answers[i] = await client.send(messages[i])

        await asyncio.gather(*(sender(lane) for lane in range(connections)))
        return answers

    return asyncio.run(run())


def ack_of(answer: bytes) -> Message:
    message = parse(answer, "utf-8")
    assert message.msh.value(9) == "ACK"
    return message


def ack_code(answer: bytes) -> str:
    msa = ack_of(answer).first("MSA")
    assert msa is not None
    return msa.value(1)


def inbox_rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(inbox).order_by(inbox.c.id)))


class Receiver:
    """A LIS on a real socket; ``script`` picks the answer per received control id."""

    def __init__(self, script: Callable[[str, int], str | None]) -> None:
        self.script = script
        self.received: list[str] = []
        self.payloads: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.server = MLLPServer(self.handle, port=0)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, payload: bytes, _peer: str) -> bytes | None:
        message = parse(payload)
        self.received.append(message.control_id)
        self.payloads.append(payload)
        code = self.script(message.control_id, self.received.count(message.control_id))
        if code is None:
            raise ConnectionError("drop the connection without an answer")
        return build_ack(message, code, control_id="L1").encode()

    def __enter__(self) -> Receiver:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"mllp://127.0.0.1:{self.server.port}"
