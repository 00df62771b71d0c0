"""Sending over real sockets, and reading ACKs back."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from adapters.hl7v2.parse import Message, parse
from adapters.mllp.client import MLLPClient
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
