"""An asyncio MLLP listener: frames in, the handler's answer framed out.  Bytes only.

One task per connection; a connection's messages are answered in order (a sender waits for the
ACK before it sends the next message).  Whatever goes wrong with one connection (broken
framing, an oversized block, a peer that vanishes, a handler that raises) closes that
connection only: the listener keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable

from adapters.logsafe import describe
from adapters.mllp.framing import DEFAULT_MAX_FRAME, FramingError, frame, read_frame

log = logging.getLogger("adapters.mllp")

# payload, peer address → bytes to send back (None: send nothing)
Handler = Callable[[bytes, str], Awaitable[bytes | None]]
# Called when the handler itself fails: payload, peer → the answer (a reject ACK).
Fallback = Callable[[bytes, str], bytes | None]


def _keepalive(sock: socket.socket | None) -> None:
    """Probe an idle connection after 5 minutes, give up on it after ~6 (Linux options)."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 300)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class MLLPServer:
    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 2575,
        fallback: Fallback | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        # Senders keep MLLP connections open for hours between messages: no idle limit by
        # default.  TCP keepalive (set on every connection) finds peers that vanished.
        idle_timeout: float | None = None,
        tls: ssl.SSLContext | None = None,
        # Told the seconds from a frame fully received to its answer written (ACK latency).
        on_answered: Callable[[float], None] | None = None,
    ) -> None:
        self.handler = handler
        self.on_answered = on_answered
        self.fallback = fallback
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.tls = tls
        self._server: asyncio.base_events.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()
        # Connections with a message in hand (read, not yet answered): stop() lets them finish.
        self._busy: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_client,
            self.host,
            self.port,
            ssl=self.tls,
            limit=self.max_frame + 1024,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def stop(self, grace: float = 30.0) -> None:
        """Stop accepting, then let open connections finish the message in hand.

        A connection waiting for its next frame is closed at once (the sender resends whatever
        it had not had an ACK for); one whose message is being stored gets up to ``grace``
        seconds to write the ACK, then is closed.  Whatever was stored and not acknowledged
        is recognised as a resend later, never stored twice.
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._clients - self._busy):
            task.cancel()
        busy = list(self._busy)
        if busy:
            _, late = await asyncio.wait(busy, timeout=grace)
            for task in late:
                task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            # After the connections: from Python 3.12 wait_closed also waits for them.
            await self._server.wait_closed()

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        _keepalive(writer.get_extra_info("socket"))
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        try:
            while not self._stopping:
                payload = await asyncio.wait_for(
                    read_frame(reader, self.max_frame), self.idle_timeout
                )
                if payload is None:
                    return
                received = time.perf_counter()
                if task is not None:
                    self._busy.add(task)
                try:
                    answer = await self._answer(payload, peer)
                    if answer is not None:
                        writer.write(frame(answer))
                        if self.on_answered is not None:
                            self.on_answered(time.perf_counter() - received)
                        await writer.drain()
                finally:
                    if task is not None:
                        self._busy.discard(task)
        except FramingError as exc:
            log.warning("mllp %s: %s; closing the connection", peer, exc)
        except TimeoutError:
            log.info("mllp %s: idle for %ss; closing", peer, self.idle_timeout)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def _answer(self, payload: bytes, peer: str) -> bytes | None:
        try:
            return await self.handler(payload, peer)
        except Exception as exc:
            log.error("mllp %s: handler failed: %s", peer, describe(exc))
            return self.fallback(payload, peer) if self.fallback else None
