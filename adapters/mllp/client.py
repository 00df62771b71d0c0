"""A small MLLP client: send a message, wait for the framed answer.  Bytes only.

Used by the tests and benchmarks as a real sender, and by the outbound delivery later.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from types import TracebackType

from adapters.mllp.framing import FramingError, frame, read_frame


class MLLPClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.timeout, self.tls = host, port, timeout, tls
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.tls), self.timeout
        )

    async def send(self, message: bytes) -> bytes:
        """Send one message and return the answer's payload."""
        if self._writer is None or self._reader is None:
            await self.connect()
        assert self._writer is not None and self._reader is not None
        self._writer.write(frame(message))
        await self._writer.drain()
        answer = await asyncio.wait_for(read_frame(self._reader), self.timeout)
        if answer is None:
            raise FramingError("the peer closed the connection without answering")
        return answer

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = self._reader = None

    async def __aenter__(self) -> MLLPClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
