"""A blocking MLLP send for worker threads: connect, send one block, read the answer block."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

from adapters.mllp.framing import END_BLOCK, START_BLOCK, FramingError, frame


def parse_destination(url: str) -> tuple[str, int]:
    """``mllp://host:port`` (or ``mllps://`` for TLS) → (host, port)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mllp", "mllps") or not parts.hostname or not parts.port:
        raise ValueError(f"{url!r} is not an mllp://host:port address")
    return parts.hostname, parts.port


def send_once(
    url: str,
    payload: bytes,
    *,
    timeout: float = 30.0,
    tls: ssl.SSLContext | None = None,
    max_answer: int = 1024 * 1024,
) -> bytes:
    """Deliver one message and return the peer's answer payload (raises OSError/FramingError)."""
    host, port = parse_destination(url)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock: socket.socket = raw
        if url.startswith("mllps://"):
            context = tls or ssl.create_default_context()
            sock = context.wrap_socket(raw, server_hostname=host)
        sock.sendall(frame(payload))
        buffer = b""
        while END_BLOCK not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise FramingError("the peer closed the connection without answering")
            buffer += chunk
            if len(buffer) > max_answer:
                raise FramingError("the answer is larger than any ACK should be")
        start = buffer.find(START_BLOCK)
        if start == -1:
            raise FramingError("the answer is not an MLLP block")
        return buffer[start + 1 : buffer.index(END_BLOCK, start)]
